"""`--config.init_from`: start a run from another run's weights (checkpoint ablations).

SOURCE is `DIR` (the latest checkpoint of the run in DIR), `DIR@STEP`, or
`hf:PATH` (a Hugging Face GPT-2 directory, see lineage.interop.hf_gpt2). Only
parameters are taken, never optimizer state. Parameters the source lacks (a new
head, say) keep their fresh initialisation and the log names them; a parameter
whose shape differs is an error listing every offender. An `hf:` source
describes its own architecture, which must equal the run's: weights of a model
with another head count would load without a shape error and compute nonsense.
"""

import dataclasses
import json
import os

import flax.linen as nn
import flax.traverse_util as traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lineage.interop import hf_gpt2
from lineage.models import gpt
from lineage.train import checkpoint as ckpt_lib
from lineage.train import metrics as metrics_lib

HF_PREFIX = "hf:"
# GPTConfig fields that fix what the weights compute; dropout, dtype and the like may differ.
ARCHITECTURE_FIELDS = ("vocab_size", "context", "num_layers", "num_heads", "embed_dim",
                       "head_dim", "mlp_dim", "pre_ln", "layer_norm_eps", "local_window")


def parse_source(source):
  """'DIR' or 'DIR@STEP' -> (checkpoints directory, step or None)."""
  if source.startswith(HF_PREFIX):
    raise ValueError(f"init_from={source!r} is a Hugging Face source, not a run directory")
  path, _, step = source.partition("@")
  if step and not step.isdigit():
    raise ValueError(f"init_from={source!r}: the part after @ must be a step number")
  directory = os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    directory = path
  return directory, int(step) if step else None


def architecture_differences(run_model, source_model, source_name):
  """Lines like "model.num_layers: run has 4, hf has 2" for every architecture field that
  differs; both sides are GPTConfigs or dicts of GPTConfig fields."""
  run, other = _architecture(run_model), _architecture(source_model)
  return [f"model.{name}: run has {run[name]}, {source_name} has {other[name]}"
          for name in ARCHITECTURE_FIELDS if run[name] != other[name]]


def model_config(model) -> gpt.GPTConfig:
  """A GPTConfig from a config.model ConfigDict or dict (unknown keys ignored)."""
  if isinstance(model, gpt.GPTConfig):
    return model
  fields = {f.name for f in dataclasses.fields(gpt.GPTConfig)}
  return gpt.GPTConfig(**{k: v for k, v in dict(model).items() if k in fields})


def _architecture(model):
  model = model_config(model)
  return {name: getattr(model, name) for name in ARCHITECTURE_FIELDS}


def _check_shapes(source, saved, wanted, allow_fresh):
  """Raises on shape differences, and on parameters the source lacks unless allowed."""
  lines = ckpt_lib.describe_mismatch(saved, wanted)
  errors = [line for line in lines if "checkpoint [" in line or
            (not allow_fresh and "not in the checkpoint" in line)]
  if errors:
    raise ckpt_lib.CheckpointMismatchError(
        f"init_from={source!r} does not fit the model; offending parameters:\n" +
        "\n".join(errors))


def _log_loaded(count, origin, saved, wanted):
  fresh = sorted(set(wanted) - set(saved))
  ignored = sorted(set(saved) - set(wanted))
  metrics_lib.console(f"initialised {count} parameters from {origin}" +
                      (f"; freshly initialised: {', '.join(fresh)}" if fresh else "") +
                      (f"; not used from the source: {', '.join(ignored)}" if ignored else ""))


def load_params(source, fresh_params, run_model=None, allow_fresh=True):
  """`fresh_params` (concrete, sharded) with every parameter the source has replaced.

  `run_model` (the run's `config.model`) is checked against an `hf:` source's config.
  With `allow_fresh=False`, a parameter the source lacks is an error.
  """
  if source.startswith(HF_PREFIX):
    return _load_hf(source, fresh_params, run_model, allow_fresh)
  directory, step = parse_source(source)
  checkpoints = ckpt_lib.Checkpoints(directory)
  steps = checkpoints.all_steps()
  if not steps:
    raise FileNotFoundError(f"init_from={source!r}: no checkpoint found in {directory}")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise FileNotFoundError(f"init_from={source!r}: step {step} is not in {directory}; "
                            f"available steps: {steps}")
  saved = checkpoints.read_meta(step)["param_shapes"]
  wanted = ckpt_lib.param_shapes(fresh_params)
  _check_shapes(source, saved, wanted, allow_fresh)
  flat = traverse_util.flatten_dict(fresh_params, sep="/")
  shared = {k: v for k, v in flat.items() if k in saved}
  target = {"params": traverse_util.unflatten_dict(shared, sep="/")}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  restored = checkpoints.restore_partial(step, abstract)
  checkpoints.close()
  flat.update(traverse_util.flatten_dict(restored["params"], sep="/"))
  _log_loaded(len(shared), f"{directory} step {step}", saved, wanted)
  return traverse_util.unflatten_dict(flat, sep="/")


def _load_hf(source, fresh_params, run_model, allow_fresh):
  path = source[len(HF_PREFIX):]
  hf_cfg, hf_params = hf_gpt2.import_hf(path)
  if run_model is not None:
    differences = architecture_differences(run_model, hf_cfg, "hf")
    if differences:
      raise ckpt_lib.CheckpointMismatchError(
          f"init_from={source!r} is a model of another architecture:\n  " +
          "\n  ".join(differences) + "\nSet the run's --config.model.* fields to the source's.")
  saved = ckpt_lib.param_shapes(hf_params)
  wanted = ckpt_lib.param_shapes(fresh_params)
  _check_shapes(source, saved, wanted, allow_fresh)
  flat = traverse_util.flatten_dict(fresh_params, sep="/")
  loaded = {k: v for k, v in traverse_util.flatten_dict(hf_params, sep="/").items() if k in flat}
  for name, value in loaded.items():
    target = flat[name]
    flat[name] = jax.device_put(np.asarray(value, target.dtype), getattr(target, "sharding", None))
  _log_loaded(len(loaded), f"Hugging Face GPT-2 {path}", saved, wanted)
  return traverse_util.unflatten_dict(flat, sep="/")


def load_model(source, run_model, seed=0):
  """(GPTConfig, params) to sample from or export: an `hf:` source's own model (with the
  run's dtype and attention implementation), or the run's model (`run_model`, config.model)
  loaded from the checkpoint of run directory `source`, which must hold every parameter.

  A run directory's config.json must describe the same architecture as `run_model`.
  """
  run_cfg = model_config(run_model)
  if source.startswith(HF_PREFIX):
    hf_cfg, params = hf_gpt2.import_hf(source[len(HF_PREFIX):])
    model_cfg = dataclasses.replace(hf_cfg, dtype=run_cfg.dtype,
                                    attention_impl=run_cfg.attention_impl)
    return model_cfg, jax.tree.map(jnp.asarray, params)
  run_dir = source.partition("@")[0]
  config_path = os.path.join(run_dir, "config.json")
  if os.path.isfile(config_path):
    with open(config_path) as f:
      saved_model = json.load(f).get("model")
    differences = architecture_differences(run_cfg, saved_model, run_dir) if saved_model else []
    if differences:
      raise ckpt_lib.CheckpointMismatchError(
          f"{source} was trained with another model:\n  " + "\n  ".join(differences) +
          f"\nPass that run's --config.model.* flags (see {config_path}).")
  dummy = jnp.zeros((1, run_cfg.context), jnp.int32)
  init = jax.jit(lambda rng: nn.unbox(gpt.GPT(run_cfg).init(rng, dummy)["params"]))
  return run_cfg, load_params(source, init(jax.random.PRNGKey(seed)), allow_fresh=False)
