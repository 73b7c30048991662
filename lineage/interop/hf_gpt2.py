"""Hugging Face GPT-2 checkpoints in and out: the released GPT-2 weights circulate in this form.

A checkpoint directory (`lineage.interop.hf_checkpoint`) is `config.json` plus
`model.safetensors`, as transformers' `save_pretrained` writes it. Our GPT already uses
GPT-2's parameter names and HF's Conv1D stores weights [in, out] like a linen Dense kernel,
so the mapping is a rename table with no transposes.
"""

import os

from lineage.interop import hf_checkpoint
from lineage.interop.hf_checkpoint import HFCheckpointError
from lineage.models import config as model_config_lib
from lineage.models import gpt

ARCHITECTURES = {"GPT2LMHeadModel", "GPT2Model"}
# Causal-mask buffers that older exports (the released gpt2 files among them) carry along.
FAMILY = hf_checkpoint.Family("GPT-2", "GPT2LMHeadModel", "wte.weight",
                              (".attn.bias", ".attn.masked_bias"))


# GPTConfig fields that fix what the weights compute; dropout, dtype and the like may differ.
ARCHITECTURE_FIELDS = ("vocab_size", "context", "num_layers", "num_heads", "embed_dim",
                       "head_dim", "mlp_dim", "pre_ln", "layer_norm_eps", "local_window")


def architecture_differences(run_model, source_model, source_name):
  """Lines like "model.num_layers: run has 4, hf has 2" for every architecture field that
  differs; both sides are GPTConfigs or dicts of GPTConfig fields."""
  run, other = (model_config_lib.from_config(gpt.GPTConfig, m, ignore_unknown=True)
                for m in (run_model, source_model))
  return [f"model.{name}: run has {getattr(run, name)}, {source_name} has {getattr(other, name)}"
          for name in ARCHITECTURE_FIELDS if getattr(run, name) != getattr(other, name)]


def import_for(run_cfg: gpt.GPTConfig, path):
  """The parameters of a Hugging Face directory for a run of `run_cfg`, whose architecture must
  be the directory's: weights of a model with another head count would load without a shape
  error and compute nonsense. This is the GPT task's `init_from=hf:PATH` importer."""
  hf_cfg, params = import_hf(path)
  differences = architecture_differences(run_cfg, hf_cfg, "hf")
  if differences:
    raise HFCheckpointError(
        f"init_from='hf:{path}' is a model of another architecture:\n  " +
        "\n  ".join(differences) + "\nSet the run's --config.model.* fields to the source's.")
  return params


def tensor_table(cfg: gpt.GPTConfig):
  """{HF tensor name: (our parameter path, shape)} for every tensor of a GPT-2 checkpoint."""
  d, v, p, m = cfg.embed_dim, cfg.vocab_size, cfg.context, cfg.mlp_dim
  table = {"wte.weight": ("wte/embedding", (v, d)), "wpe.weight": ("wpe/embedding", (p, d)),
           "ln_f.weight": ("ln_f/scale", (d,)), "ln_f.bias": ("ln_f/bias", (d,))}
  return {**table, **hf_checkpoint.block_tensors(d, m, cfg.num_layers)}


def config_from_hf(hf: dict, where="config.json") -> gpt.GPTConfig:
  """Our config for a transformers GPT2Config dict; anything GPT-2 cannot be is refused."""
  model_type, architectures = hf.get("model_type"), hf.get("architectures") or []
  if model_type != "gpt2" or not set(architectures) <= ARCHITECTURES:
    raise HFCheckpointError(
        f"{where} describes a {model_type!r} model (architectures {architectures}); only GPT-2 "
        "checkpoints (model_type \"gpt2\", GPT2LMHeadModel) can be imported")
  refusals = []
  activation = hf.get("activation_function", "gelu_new")
  if activation != "gelu_new":
    refusals.append(f"activation_function={activation!r} (our GPT uses gelu_new, tanh GELU)")
  if not hf.get("tie_word_embeddings", True):
    refusals.append("tie_word_embeddings=false (our GPT ties the LM head to wte)")
  for key, supported in [("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("add_cross_attention", False)]:
    if hf.get(key, supported) != supported:
      refusals.append(f"{key}={hf[key]} (only {supported} is supported)")
  if refusals:
    raise HFCheckpointError(f"{where}: this GPT-2 variant cannot be imported: " +
                            "; ".join(refusals))
  embed = hf["n_embd"]
  return gpt.GPTConfig(vocab_size=hf["vocab_size"], context=hf["n_positions"],
                       num_layers=hf["n_layer"], num_heads=hf["n_head"], embed_dim=embed,
                       mlp_dim=hf.get("n_inner") or 4 * embed,
                       dropout=hf.get("resid_pdrop", 0.1),
                       layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))


def config_to_hf(cfg: gpt.GPTConfig, eot_id=None) -> dict:
  """The transformers GPT2Config dict of a config GPT-2 can represent (else a clear error)."""
  problems = []
  if not cfg.pre_ln:
    problems.append("post-LN blocks (pre_ln=False, GPT-1)")
  if cfg.local_window:
    problems.append(f"locally banded layers (local_window={cfg.local_window}, GPT-3)")
  if cfg.attn_dim != cfg.embed_dim:
    problems.append(f"head_size={cfg.head_size} x num_heads={cfg.num_heads} != "
                    f"embed_dim={cfg.embed_dim}")
  if problems:
    raise HFCheckpointError("transformers' GPT-2 cannot represent this model: " +
                            "; ".join(problems) + ". Only GPT-2-shaped configs can be exported.")
  eot = cfg.vocab_size - 1 if eot_id is None else eot_id
  return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
          "vocab_size": cfg.vocab_size, "n_positions": cfg.context, "n_ctx": cfg.context,
          "n_embd": cfg.embed_dim, "n_layer": cfg.num_layers, "n_head": cfg.num_heads,
          "n_inner": cfg.mlp_dim, "activation_function": "gelu_new",
          "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
          "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02,
          "scale_attn_weights": True, "tie_word_embeddings": True, "use_cache": True,
          "bos_token_id": eot, "eos_token_id": eot, "dtype": "float32"}


def import_hf(path):
  """(GPTConfig, params) of a Hugging Face GPT-2 directory; params are float32 numpy arrays
  in the nested layout `GPT(cfg).init` gives (unboxed)."""
  cfg = config_from_hf(hf_checkpoint.read_config(path, FAMILY),
                       where=os.path.join(os.fspath(path), hf_checkpoint.CONFIG_FILE))
  return cfg, hf_checkpoint.import_params(path, tensor_table(cfg), FAMILY)


def export_hf(cfg: gpt.GPTConfig, params, out_dir, eot_id=None):
  """Writes `params` (boxed or not, any float dtype) as a directory that
  `transformers.GPT2LMHeadModel.from_pretrained(out_dir)` loads; returns out_dir."""
  return hf_checkpoint.export(params, tensor_table(cfg), config_to_hf(cfg, eot_id), out_dir,
                              FAMILY)
