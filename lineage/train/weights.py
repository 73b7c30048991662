"""Parameters from checkpoints: a run's own (`restore_params`), or another source's to start
a new run from (`load_params`, behind `--config.init_from`).

SOURCE is `DIR` (the latest checkpoint of the run in DIR), `DIR@STEP`, or `KIND:PATH` for a
format the milestone's Task knows how to import (`Task.import_params`, e.g. GPT-2's
`hf:PATH`, a Hugging Face directory). Only parameters are taken, never optimizer state.
Parameters the source lacks (a new head, say) keep their fresh initialisation and the log
names them; a parameter whose shape differs is an error listing every offender.
"""

import os

import flax.linen as nn
import flax.traverse_util as traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp

from lineage.train import checkpoint as ckpt_lib
from lineage.train import metrics as metrics_lib
from lineage.train import sharding


def split_kind(source, importers):
  """'hf:PATH' -> ("hf", "PATH") when "hf" is a known import kind; else (None, source)."""
  kind, sep, path = source.partition(":")
  if sep and kind in importers:
    return kind, path
  if sep and kind.isalpha() and len(kind) > 1 and not os.path.exists(source):
    known = ", ".join(f"{k}:PATH" for k in importers) or "none for this milestone"
    raise ValueError(f"init_from={source!r}: unknown source kind {kind!r}; give DIR, DIR@STEP "
                     f"or an import kind ({known})")
  return None, source


def parse_source(source):
  """'DIR' or 'DIR@STEP' -> (checkpoints directory, step or None)."""
  path, _, step = source.partition("@")
  if step and not step.isdigit():
    raise ValueError(f"init_from={source!r}: the part after @ must be a step number")
  directory = os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    directory = path
  return directory, int(step) if step else None


def _check_shapes(source, saved, wanted, allow_fresh):
  """Raises on shape differences, and on parameters the source lacks unless allowed."""
  lines = ckpt_lib.describe_mismatch(saved, wanted)
  errors = [line for line in lines if "checkpoint [" in line or
            (not allow_fresh and "not in the checkpoint" in line)]
  if errors:
    raise ckpt_lib.CheckpointMismatchError(
        f"{source} does not fit the model; offending parameters:\n" + "\n".join(errors))


def _log_loaded(count, origin, saved, wanted):
  fresh = sorted(set(wanted) - set(saved))
  ignored = sorted(set(saved) - set(wanted))
  metrics_lib.console(f"initialised {count} parameters from {origin}" +
                      (f"; freshly initialised: {', '.join(fresh)}" if fresh else "") +
                      (f"; not used from the source: {', '.join(ignored)}" if ignored else ""))


def _read(source, directory, step, target, allow_fresh):
  """The parameters of `target` (a tree of arrays or ShapeDtypeStructs with shardings) that
  checkpoint `step` of `directory` holds, restored into their shardings: (flat dict, saved
  shapes, step)."""
  checkpoints = ckpt_lib.Checkpoints(directory)
  try:
    steps = checkpoints.all_steps()
    if not steps:
      raise FileNotFoundError(f"{source}: no checkpoint found in {directory}")
    step = steps[-1] if step is None else step
    if step not in steps:
      raise FileNotFoundError(f"{source}: step {step} is not in {directory}; "
                              f"available steps: {steps}")
    saved = checkpoints.read_meta(step)["param_shapes"]
    _check_shapes(source, saved, ckpt_lib.param_shapes(target), allow_fresh)
    flat = traverse_util.flatten_dict(target, sep="/")
    shared = {k: v for k, v in flat.items() if k in saved}
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {"params": traverse_util.unflatten_dict(shared, sep="/")})
    restored = checkpoints.restore_partial(step, abstract)
  finally:
    checkpoints.close()
  return traverse_util.flatten_dict(restored["params"], sep="/"), saved, step


def load_params(source, fresh_params, importers=None, allow_fresh=True):
  """`fresh_params` (concrete, sharded) with every parameter the source has replaced.

  importers: {kind: import_fn} from the Task; import_fn(path) -> a parameter tree (numpy),
  having checked that the source's architecture is the run's. With `allow_fresh=False`, a
  parameter the source lacks is an error.
  """
  importers = importers or {}
  kind, path = split_kind(source, importers)
  wanted = ckpt_lib.param_shapes(fresh_params)
  flat = traverse_util.flatten_dict(fresh_params, sep="/")
  if kind is not None:
    imported = traverse_util.flatten_dict(importers[kind](path), sep="/")
    saved = {k: list(np.shape(v)) for k, v in imported.items()}
    _check_shapes(f"init_from={source!r}", saved, wanted, allow_fresh)
    loaded = {k: v for k, v in imported.items() if k in flat}
    for name, value in loaded.items():
      target = flat[name]
      flat[name] = jax.device_put(np.asarray(value, target.dtype),
                                  getattr(target, "sharding", None))
    origin = f"{kind}:{path}"
  else:
    directory, step = parse_source(source)
    loaded, saved, step = _read(f"init_from={source!r}", directory, step, fresh_params,
                                allow_fresh)
    flat.update(loaded)
    origin = f"{directory} step {step}"
  _log_loaded(len(loaded), origin, saved, wanted)
  return traverse_util.unflatten_dict(flat, sep="/")


def abstract_params(cfg, task):
  """ShapeDtypeStructs of the task's parameters, sharded over the config's mesh."""
  boxed = jax.eval_shape(task.init_params, jax.random.PRNGKey(0))
  mesh = sharding.make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
  return ckpt_lib.abstract_like(nn.unbox(boxed), sharding.logical_shardings(boxed, mesh))


def restore_params(cfg, workdir, task, step=None):
  """The parameters of a run's checkpoint (the latest, or `step`), read without building
  the optimizer or any jitted step: what every mode that only needs weights uses."""
  directory = os.path.join(workdir, "checkpoints")
  hint = f"train first with --mode=train --workdir={workdir}"
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no trained checkpoint in {directory}; {hint}")
  try:
    flat, _, _ = _read(f"the run in {workdir}", directory, step, abstract_params(cfg, task),
                       allow_fresh=False)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{e}; {hint}") from None
  return traverse_util.unflatten_dict(flat, sep="/")
