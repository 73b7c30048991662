"""Hugging Face GPT-1 (`OpenAIGPTLMHeadModel`) checkpoints in and out: the released GPT-1
weights circulate in this form (openai-community/openai-gpt).

transformers' OpenAIGPT is our GPT with `pre_ln=False`: post-LN blocks, learned positions, no
final LayerNorm, an LM head tied to the token embedding, Conv1D weights stored [in, out] like
a linen Dense kernel. Its `afn="gelu"` is the tanh approximation (`gelu_new`), which is ours.
So the mapping is a rename table (`tokens_embed` is our `wte`, `positions_embed` our `wpe`)
with no transposes. Only safetensors are read: a pickled `pytorch_model.bin` can run code.
"""

import dataclasses
import json
import os

import flax.linen as nn
import flax.traverse_util as traverse_util
import jax
import numpy as np
from safetensors import numpy as safetensors_np

from lineage.interop import hf_gpt2
from lineage.interop.hf_gpt2 import CONFIG_FILE, PREFIX, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from lineage.interop.hf_gpt2 import HFCheckpointError
from lineage.models import gpt

MODEL_TYPE = "openai-gpt"
ARCHITECTURES = {"OpenAIGPTLMHeadModel", "OpenAIGPTModel"}
# Buffers that some exports carry along: causal masks and position indices.
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", "position_ids")
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
  layer_shapes = {"ln_1": {"scale": (d,), "bias": (d,)}, "ln_2": {"scale": (d,), "bias": (d,)},
                  "attn/c_attn": {"kernel": (d, 3 * d), "bias": (3 * d,)},
                  "attn/c_proj": {"kernel": (d, d), "bias": (d,)},
                  "mlp/c_fc": {"kernel": (d, m), "bias": (m,)},
                  "mlp/c_proj": {"kernel": (m, d), "bias": (d,)}}
  hf_leaf = {"scale": "weight", "kernel": "weight", "bias": "bias"}
  for i in range(cfg.num_layers):
    for module, leaves in layer_shapes.items():
      for leaf, shape in leaves.items():
        hf_name = f"h.{i}.{module.replace('/', '.')}.{hf_leaf[leaf]}"
        table[hf_name] = (f"h_{i}/{module}/{leaf}", shape)
  return table


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


def _read_tensors(path):
  """Every tensor of the checkpoint, by HF name without the `transformer.` prefix."""
  single, index = os.path.join(path, WEIGHTS_FILE), os.path.join(path, WEIGHTS_INDEX_FILE)
  if os.path.isfile(single):
    files = [single]
  elif os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    files = [os.path.join(path, name) for name in shards]
  elif any(os.path.isfile(os.path.join(path, name))
           for name in ("pytorch_model.bin", "tf_model.h5")):
    raise HFCheckpointError(
        f"{path} holds only pickled (pytorch_model.bin) or TensorFlow weights; we read "
        f"safetensors only. Convert it once with transformers: OpenAIGPTLMHeadModel."
        f"from_pretrained('{path}').save_pretrained('{path}')  (writes {WEIGHTS_FILE})")
  else:
    raise HFCheckpointError(f"{path} has no {WEIGHTS_FILE}; give a Hugging Face GPT-1 directory "
                            f"({CONFIG_FILE} + {WEIGHTS_FILE})")
  tensors = {}
  for file in files:
    for name, value in safetensors_np.load_file(file).items():
      tensors[name.removeprefix(PREFIX)] = value
  tensors = {k: v for k, v in tensors.items() if not k.endswith(BUFFER_SUFFIXES)}
  head = tensors.pop("lm_head.weight", None)
  if head is not None and not np.array_equal(head, tensors.get("tokens_embed.weight")):
    raise HFCheckpointError("lm_head.weight differs from tokens_embed.weight: an untied LM head "
                            "cannot be imported into our GPT, whose output layer is wte")
  return tensors


def check_tensors(found: dict, table: dict, what: str):
  """One error naming every missing, misshapen or unexpected tensor, with both shapes."""
  lines = []
  natural = lambda name: [int(part) if part.isdigit() else part for part in name.split(".")]
  for name in sorted(set(found) | set(table), key=natural):
    if name not in found:
      lines.append(f"  {name}: missing (expected {list(table[name][1])})")
    elif name not in table:
      lines.append(f"  {name}: unexpected tensor of shape {list(found[name])}")
    elif tuple(found[name]) != tuple(table[name][1]):
      lines.append(f"  {name}: expected {list(table[name][1])}, found {list(found[name])}")
  if lines:
    raise HFCheckpointError(f"{what} does not match its GPT-1 config:\n" + "\n".join(lines))


def import_hf(path):
  """(GPTConfig, params) of a Hugging Face GPT-1 directory; params are float32 numpy arrays
  in the nested layout `GPT(cfg).init` gives (unboxed)."""
  path = os.fspath(path)
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise HFCheckpointError(f"{path} has no {CONFIG_FILE}; give a Hugging Face GPT-1 directory "
                            f"({CONFIG_FILE} + {WEIGHTS_FILE}) as saved by save_pretrained")
  with open(config_path) as f:
    cfg = config_from_hf(json.load(f), where=config_path)
  tensors = _read_tensors(path)
  table = tensor_table(cfg)
  check_tensors({k: v.shape for k, v in tensors.items()}, table, f"the checkpoint in {path}")
  flat = {table[name][0]: np.asarray(value, np.float32) for name, value in tensors.items()}
  return cfg, traverse_util.unflatten_dict(flat, sep="/")


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
  hf_config = config_to_hf(cfg)
  flat = traverse_util.flatten_dict(jax.device_get(nn.unbox(params)), sep="/")
  table = tensor_table(cfg)
  by_path = {our: hf for hf, (our, _) in table.items()}
  found = {by_path.get(path, path): np.shape(value) for path, value in flat.items()}
  check_tensors(found, table, "the parameters to export")
  tensors = {PREFIX + by_path[path]: np.ascontiguousarray(value, np.float32)
             for path, value in flat.items()}
  os.makedirs(out_dir, exist_ok=True)
  safetensors_np.save_file(tensors, os.path.join(out_dir, WEIGHTS_FILE), metadata={"format": "pt"})
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  return out_dir
