"""Hugging Face GPT-1 (`OpenAIGPTLMHeadModel`) checkpoints in and out: the released GPT-1
weights circulate in this form (openai-community/openai-gpt).

transformers' OpenAIGPT is our GPT with `pre_ln=False`: post-LN blocks, learned positions, no
final LayerNorm, an LM head tied to the token embedding, Conv1D weights stored [in, out] like
a linen Dense kernel. Its `afn="gelu"` is the tanh approximation (`gelu_new`), which is ours.
So the mapping is a rename table (`tokens_embed` is our `wte`, `positions_embed` our `wpe`)
with no transposes. Only safetensors are read: a pickled `pytorch_model.bin` can run code.
"""

import dataclasses
import os

import numpy as np

from lineage.interop import hf_checkpoint, hf_gpt2
from lineage.interop.hf_checkpoint import HFCheckpointError
from lineage.models import gpt

MODEL_TYPE = "openai-gpt"
ARCHITECTURES = {"OpenAIGPTLMHeadModel", "OpenAIGPTModel"}
# Buffers that some exports carry along: causal masks and position indices.
FAMILY = hf_checkpoint.Family("GPT-1", "OpenAIGPTLMHeadModel", "tokens_embed.weight",
                              (".attn.bias", ".attn.masked_bias", "position_ids"))
# transformers' OpenAIGPT maps "gelu" to gelu_new (tanh); its "relu", "silu" and "swish" are
# activations our GPT does not have.
ACTIVATION = "gelu"
# The standard deviation of GPT-1's fresh embeddings for tokens added at fine-tuning.
NEW_TOKEN_STD = 0.02


def tensor_table(cfg: gpt.GPTConfig):
  """{HF tensor name: (our parameter path, shape)} for every tensor of a GPT-1 checkpoint."""
  d, v, p, m = cfg.embed_dim, cfg.vocab_size, cfg.context, cfg.mlp_dim
  table = {"tokens_embed.weight": ("wte/embedding", (v, d)),
           "positions_embed.weight": ("wpe/embedding", (p, d))}
  return {**table, **hf_checkpoint.block_tensors(d, m, cfg.num_layers)}


def config_from_hf(hf: dict, where="config.json") -> gpt.GPTConfig:
  """Our config for a transformers OpenAIGPTConfig dict; anything else is refused."""
  model_type, architectures = hf.get("model_type"), hf.get("architectures") or []
  if model_type != MODEL_TYPE or not set(architectures) <= ARCHITECTURES:
    hint = " (a GPT-2 directory: use lineage.interop.hf_gpt2)" if model_type == "gpt2" else ""
    raise HFCheckpointError(
        f"{where} describes a {model_type!r} model (architectures {architectures}){hint}; only "
        f"GPT-1 checkpoints (model_type \"{MODEL_TYPE}\", OpenAIGPTLMHeadModel) can be imported")
  refusals = []
  activation = hf.get("afn", ACTIVATION)
  if activation != ACTIVATION:
    refusals.append(f"afn={activation!r} (our GPT uses transformers' OpenAIGPT \"gelu\", "
                    "which is the tanh GELU)")
  if not hf.get("tie_word_embeddings", True):
    refusals.append("tie_word_embeddings=false (our GPT ties the LM head to wte)")
  if refusals:
    raise HFCheckpointError(f"{where}: this GPT-1 variant cannot be imported: " +
                            "; ".join(refusals))
  embed = hf["n_embd"]
  return gpt.GPTConfig(vocab_size=hf["vocab_size"], context=hf["n_positions"],
                       num_layers=hf["n_layer"], num_heads=hf["n_head"], embed_dim=embed,
                       mlp_dim=4 * embed, dropout=hf.get("resid_pdrop", 0.1), pre_ln=False,
                       scaled_residual_init=False,
                       layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))


def config_to_hf(cfg: gpt.GPTConfig) -> dict:
  """The transformers OpenAIGPTConfig dict of a config GPT-1 can represent (else a clear
  error)."""
  problems = []
  if cfg.pre_ln:
    problems.append("pre-LN blocks with a final LayerNorm (pre_ln=True, GPT-2: use "
                    "lineage.interop.hf_gpt2)")
  if cfg.local_window:
    problems.append(f"locally banded layers (local_window={cfg.local_window}, GPT-3)")
  if cfg.attn_dim != cfg.embed_dim:
    problems.append(f"head_size={cfg.head_size} x num_heads={cfg.num_heads} != "
                    f"embed_dim={cfg.embed_dim}")
  if cfg.mlp_dim != 4 * cfg.embed_dim:
    problems.append(f"mlp_dim={cfg.mlp_dim} (its MLP is 4 x embed_dim = {4 * cfg.embed_dim})")
  if problems:
    raise HFCheckpointError("transformers' OpenAIGPT cannot represent this model: " +
                            "; ".join(problems) + ". Only GPT-1-shaped configs can be exported.")
  return {"model_type": MODEL_TYPE, "architectures": ["OpenAIGPTLMHeadModel"],
          "vocab_size": cfg.vocab_size, "n_positions": cfg.context, "n_embd": cfg.embed_dim,
          "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "afn": ACTIVATION,
          "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
          "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02,
          "tie_word_embeddings": True, "dtype": "float32"}


def import_hf(path):
  """(GPTConfig, params) of a Hugging Face GPT-1 directory; params are float32 numpy arrays
  in the nested layout `GPT(cfg).init` gives (unboxed)."""
  cfg = config_from_hf(hf_checkpoint.read_config(path, FAMILY),
                       where=os.path.join(os.fspath(path), hf_checkpoint.CONFIG_FILE))
  return cfg, hf_checkpoint.import_params(path, tensor_table(cfg), FAMILY)


def import_for(run_cfg: gpt.GPTConfig, path, seed=0):
  """The parameters of a Hugging Face GPT-1 directory for a run of `run_cfg`: the GPT task's
  `init_from=hf:PATH` importer.

  The run's architecture must be the directory's, except that its vocabulary may be larger:
  GPT-1's fine-tuning appends special tokens (`_start_`, `_delimiter_`, `_classify_`) after
  the released 40,478, whose embeddings start from N(0, 0.02) as in the paper's code, drawn
  here from `seed` so that a rerun starts from the same ones.
  """
  hf_cfg, params = import_hf(path)
  extra = run_cfg.vocab_size - hf_cfg.vocab_size
  compared = dataclasses.replace(hf_cfg, vocab_size=run_cfg.vocab_size) if extra > 0 else hf_cfg
  differences = hf_gpt2.architecture_differences(run_cfg, compared, "hf")
  if differences:
    raise HFCheckpointError(
        f"init_from='hf:{path}' is a model of another architecture:\n  " +
        "\n  ".join(differences) + "\nSet the run's --config.model.* fields to the source's "
        "(model.vocab_size may be larger, for tokens added after the source's vocabulary).")
  if extra > 0:
    wte = params["wte"]["embedding"]
    new_rows = np.random.default_rng(seed).normal(0.0, NEW_TOKEN_STD, (extra, wte.shape[1]))
    params["wte"]["embedding"] = np.concatenate([wte, new_rows.astype(np.float32)])
  return params


def export_hf(cfg: gpt.GPTConfig, params, out_dir):
  """Writes `params` (boxed or not, any float dtype) as a directory that
  `transformers.OpenAIGPTLMHeadModel.from_pretrained(out_dir)` loads; returns out_dir."""
  return hf_checkpoint.export(params, tensor_table(cfg), config_to_hf(cfg), out_dir, FAMILY)
