"""Hugging Face GPT-2 checkpoints in and out: the released GPT-2 weights circulate in this form.

A checkpoint directory is `config.json` plus `model.safetensors`, as transformers'
`save_pretrained` writes it. Our GPT already uses GPT-2's parameter names and
HF's Conv1D stores weights [in, out] like a linen Dense kernel, so the mapping is
a rename table with no transposes. Only safetensors are read: a pickled
`pytorch_model.bin` can run code when loaded.
"""

import json
import os

import flax.linen as nn
import flax.traverse_util as traverse_util
import jax
import numpy as np
from safetensors import numpy as safetensors_np

from lineage.models import config as model_config_lib
from lineage.models import gpt

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
PREFIX = "transformer."
ARCHITECTURES = {"GPT2LMHeadModel", "GPT2Model"}
# Causal-mask buffers that older exports (the released gpt2 files among them) carry along.
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


# GPTConfig fields that fix what the weights compute; dropout, dtype and the like may differ.
ARCHITECTURE_FIELDS = ("vocab_size", "context", "num_layers", "num_heads", "embed_dim",
                       "head_dim", "mlp_dim", "pre_ln", "layer_norm_eps", "local_window")


class HFCheckpointError(ValueError):
  pass


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
        f"safetensors only. Convert it once with transformers: GPT2LMHeadModel.from_pretrained("
        f"'{path}').save_pretrained('{path}')  (writes {WEIGHTS_FILE})")
  else:
    raise HFCheckpointError(f"{path} has no {WEIGHTS_FILE}; give a Hugging Face GPT-2 directory "
                            f"({CONFIG_FILE} + {WEIGHTS_FILE})")
  tensors = {}
  for file in files:
    for name, value in safetensors_np.load_file(file).items():
      tensors[name[len(PREFIX):] if name.startswith(PREFIX) else name] = value
  return tensors


def _drop_redundant(tensors):
  """Without mask buffers and without an `lm_head.weight` that only repeats the tied wte."""
  tensors = {k: v for k, v in tensors.items() if not k.endswith(BUFFER_SUFFIXES)}
  head = tensors.pop("lm_head.weight", None)
  if head is not None and not np.array_equal(head, tensors.get("wte.weight")):
    raise HFCheckpointError("lm_head.weight differs from wte.weight: an untied LM head cannot be "
                            "imported into our GPT, whose output layer is wte")
  return tensors


def check_tensors(found: dict, table: dict, what: str):
  """One error naming every missing, misshapen or unexpected tensor, with both shapes."""
  lines = []
  for name in sorted(set(found) | set(table), key=_natural_key):
    if name not in found:
      lines.append(f"  {name}: missing (expected {list(table[name][1])})")
    elif name not in table:
      lines.append(f"  {name}: unexpected tensor of shape {list(found[name])}")
    elif tuple(found[name]) != tuple(table[name][1]):
      lines.append(f"  {name}: expected {list(table[name][1])}, found {list(found[name])}")
  if lines:
    raise HFCheckpointError(f"{what} does not match its GPT-2 config:\n" + "\n".join(lines))


def _natural_key(name):
  return [int(part) if part.isdigit() else part for part in name.split(".")]


def import_hf(path):
  """(GPTConfig, params) of a Hugging Face GPT-2 directory; params are float32 numpy arrays
  in the nested layout `GPT(cfg).init` gives (unboxed)."""
  path = os.fspath(path)
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise HFCheckpointError(f"{path} has no {CONFIG_FILE}; give a Hugging Face GPT-2 directory "
                            f"({CONFIG_FILE} + {WEIGHTS_FILE}) as saved by save_pretrained")
  with open(config_path) as f:
    cfg = config_from_hf(json.load(f), where=config_path)
  tensors = _drop_redundant(_read_tensors(path))
  table = tensor_table(cfg)
  check_tensors({k: v.shape for k, v in tensors.items()}, table, f"the checkpoint in {path}")
  flat = {table[name][0]: np.asarray(value, np.float32) for name, value in tensors.items()}
  return cfg, traverse_util.unflatten_dict(flat, sep="/")


def export_hf(cfg: gpt.GPTConfig, params, out_dir, eot_id=None):
  """Writes `params` (boxed or not, any float dtype) as a directory that
  `transformers.GPT2LMHeadModel.from_pretrained(out_dir)` loads; returns out_dir."""
  hf_config = config_to_hf(cfg, eot_id)
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
