"""The Hugging Face checkpoint directory that GPT-1's and GPT-2's interop share: `config.json` plus
`model.safetensors` (or its shards), tensors named `transformer.<name>`, as `save_pretrained`
writes it. Each family supplies its tensor table {HF name: (our parameter path, shape)} and its
config translation; this module reads, checks and writes. Only safetensors are read: a pickled
`pytorch_model.bin` can run code when loaded.
"""

import dataclasses
import json
import os

import flax.linen as nn
import flax.traverse_util as traverse_util
import jax
import numpy as np
from safetensors import numpy as safetensors_np

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
PREFIX = "transformer."


class HFCheckpointError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Family:
  """What differs between the families' directories: names for messages, the model class that
  converts other formats, the tied embedding's tensor and the buffers to skip."""
  name: str  # "GPT-2"
  model_class: str  # "GPT2LMHeadModel"
  embedding: str  # "wte.weight"
  buffer_suffixes: tuple


def block_tensors(d, m, num_layers):
  """{HF name: (our parameter path, shape)} of the transformer blocks, which GPT-1 and GPT-2
  name alike (width d, MLP width m): Conv1D weights are [in, out], like a linen Dense kernel."""
  layer_shapes = {"ln_1": {"scale": (d,), "bias": (d,)}, "ln_2": {"scale": (d,), "bias": (d,)},
                  "attn/c_attn": {"kernel": (d, 3 * d), "bias": (3 * d,)},
                  "attn/c_proj": {"kernel": (d, d), "bias": (d,)},
                  "mlp/c_fc": {"kernel": (d, m), "bias": (m,)},
                  "mlp/c_proj": {"kernel": (m, d), "bias": (d,)}}
  hf_leaf = {"scale": "weight", "kernel": "weight", "bias": "bias"}
  table = {}
  for i in range(num_layers):
    for module, leaves in layer_shapes.items():
      for leaf, shape in leaves.items():
        hf_name = f"h.{i}.{module.replace('/', '.')}.{hf_leaf[leaf]}"
        table[hf_name] = (f"h_{i}/{module}/{leaf}", shape)
  return table


def read_config(path, family):
  """The directory's config.json as a dict."""
  config_path = os.path.join(os.fspath(path), CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise HFCheckpointError(f"{path} has no {CONFIG_FILE}; give a Hugging Face {family.name} "
                            f"directory ({CONFIG_FILE} + {WEIGHTS_FILE}) as saved by "
                            "save_pretrained")
  with open(config_path) as f:
    return json.load(f)


def read_tensors(path, family):
  """Every tensor of the checkpoint by HF name without the `transformer.` prefix, without mask
  buffers and without an `lm_head.weight` that only repeats the tied embedding."""
  path = os.fspath(path)
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
        f"safetensors only. Convert it once with transformers: {family.model_class}."
        f"from_pretrained('{path}').save_pretrained('{path}')  (writes {WEIGHTS_FILE})")
  else:
    raise HFCheckpointError(f"{path} has no {WEIGHTS_FILE}; give a Hugging Face {family.name} "
                            f"directory ({CONFIG_FILE} + {WEIGHTS_FILE})")
  tensors = {}
  for file in files:
    for name, value in safetensors_np.load_file(file).items():
      tensors[name.removeprefix(PREFIX)] = value
  tensors = {k: v for k, v in tensors.items() if not k.endswith(family.buffer_suffixes)}
  head = tensors.pop("lm_head.weight", None)
  if head is not None and not np.array_equal(head, tensors.get(family.embedding)):
    raise HFCheckpointError(f"lm_head.weight differs from {family.embedding}: an untied LM head "
                            "cannot be imported into our GPT, whose output layer is wte")
  return tensors


def _natural_key(name):
  return [int(part) if part.isdigit() else part for part in name.split(".")]


def check_tensors(found: dict, table: dict, what: str, family):
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
    raise HFCheckpointError(f"{what} does not match its {family.name} config:\n" +
                            "\n".join(lines))


def import_params(path, table, family):
  """Our parameter tree (float32 numpy, as `init` nests it) from the directory's tensors."""
  tensors = read_tensors(path, family)
  check_tensors({k: v.shape for k, v in tensors.items()}, table, f"the checkpoint in {path}",
                family)
  flat = {table[name][0]: np.asarray(value, np.float32) for name, value in tensors.items()}
  return traverse_util.unflatten_dict(flat, sep="/")


def export(params, table, hf_config, out_dir, family):
  """Writes `params` (boxed or not, any float dtype) and `hf_config` as a directory that
  transformers' `from_pretrained` loads; returns out_dir."""
  flat = traverse_util.flatten_dict(jax.device_get(nn.unbox(params)), sep="/")
  by_path = {our: hf for hf, (our, _) in table.items()}
  found = {by_path.get(path, path): np.shape(value) for path, value in flat.items()}
  check_tensors(found, table, "the parameters to export", family)
  tensors = {PREFIX + by_path[path]: np.ascontiguousarray(value, np.float32)
             for path, value in flat.items()}
  os.makedirs(out_dir, exist_ok=True)
  safetensors_np.save_file(tensors, os.path.join(out_dir, WEIGHTS_FILE), metadata={"format": "pt"})
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  return out_dir
