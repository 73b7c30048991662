"""`--config.init_from`: start a run from another run's weights (checkpoint ablations).

SOURCE is `DIR` (the latest checkpoint of the run in DIR) or `DIR@STEP`. Only
parameters are taken, never optimizer state. Parameters the source lacks (a new
head, say) keep their fresh initialisation and the log names them; a parameter
whose shape differs is an error listing every offender.
"""

import os

import flax.traverse_util as traverse_util
import jax
import orbax.checkpoint as ocp

from lineage.train import checkpoint as ckpt_lib
from lineage.train import metrics as metrics_lib


def parse_source(source):
  """'DIR' or 'DIR@STEP' -> (checkpoints directory, step or None)."""
  if source.startswith("hf:"):
    raise ValueError(f"init_from={source!r}: Hugging Face import is not part of this build yet; "
                     "give another run's workdir as DIR or DIR@STEP")
  path, _, step = source.partition("@")
  if step and not step.isdigit():
    raise ValueError(f"init_from={source!r}: the part after @ must be a step number")
  directory = os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    directory = path
  return directory, int(step) if step else None


def load_params(source, fresh_params):
  """`fresh_params` (concrete, sharded) with every parameter the source has replaced."""
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
  shape_errors = [line for line in ckpt_lib.describe_mismatch(saved, wanted)
                  if "checkpoint [" in line]
  if shape_errors:
    raise ckpt_lib.CheckpointMismatchError(
        f"init_from={source!r} step {step} has parameters of other shapes:\n" +
        "\n".join(shape_errors))
  flat = traverse_util.flatten_dict(fresh_params, sep="/")
  shared = {k: v for k, v in flat.items() if k in saved}
  target = {"params": traverse_util.unflatten_dict(shared, sep="/")}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  restored = checkpoints.restore_partial(step, abstract)
  checkpoints.close()
  flat.update(traverse_util.flatten_dict(restored["params"], sep="/"))
  fresh = sorted(set(wanted) - set(saved))
  ignored = sorted(set(saved) - set(wanted))
  metrics_lib.console(f"initialised {len(shared)} parameters from {directory} step {step}" +
                      (f"; freshly initialised: {', '.join(fresh)}" if fresh else "") +
                      (f"; not used from the source: {', '.join(ignored)}" if ignored else ""))
  return traverse_util.unflatten_dict(flat, sep="/")
