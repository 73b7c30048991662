"""Orbax checkpoints of the whole training state plus the data iterator position.

Each step directory holds `state` (params, optimizer state, step, rng; restored
straight into its device shardings) and `meta` (JSON: the data iterator state
and the parameter shapes). The shapes let a restore fail with a readable list
of mismatches instead of an opaque tensorstore error.
"""

import os

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  pass


def param_shapes(params):
  """{"h_0/attn/c_attn/kernel": [768, 2304], ...} for a (possibly abstract) param tree."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): list(leaf.shape)
          for path, leaf in flat}


def describe_mismatch(saved, expected):
  """Human-readable lines for every parameter whose name or shape differs."""
  lines = []
  for name in sorted(set(saved) | set(expected)):
    if name not in expected:
      lines.append(f"  {name}: in the checkpoint {saved[name]}, not in the model")
    elif name not in saved:
      lines.append(f"  {name}: in the model {expected[name]}, not in the checkpoint")
    elif saved[name] != expected[name]:
      lines.append(f"  {name}: checkpoint {saved[name]} vs model {expected[name]}")
  return lines


class Checkpoints:
  """A thin, typed layer over ocp.CheckpointManager for TrainState checkpoints."""

  def __init__(self, directory, max_to_keep=3, async_save=True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             enable_async_checkpointing=async_save))

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step, state, data_state=None):
    meta = {"data": data_state, "param_shapes": param_shapes(state.params)}
    self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def read_meta(self, step):
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, step, abstract_state):
    """Restores step `step` into the shapes and shardings of `abstract_state`.

    Returns (state, data_state). Raises CheckpointMismatchError when the
    checkpoint was written by a model of another shape.
    """
    meta = self.read_meta(step)
    mismatch = describe_mismatch(meta["param_shapes"], param_shapes(abstract_state.params))
    if mismatch:
      raise CheckpointMismatchError(
          f"the checkpoint at {self.directory} step {step} does not fit this model; "
          "offending parameters:\n" + "\n".join(mismatch) +
          "\nUse a fresh --workdir for a different model, or the config the run was started with.")
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except ValueError as e:
      if "tree structures do not match" not in str(e):
        raise
      raise CheckpointMismatchError(
          f"the checkpoint at {self.directory} step {step} holds an optimizer state of another "
          "structure (other parameter groups, or written before lineage's optimizer became "
          "per-group AdamW), so it cannot be resumed as is. Its parameters still load: start a "
          f"new run from them with --config.init_from={os.path.dirname(self.directory)}"
          f"@{step} and a fresh --workdir.\n{e}") from None
    return restored["state"], restored["meta"]["data"]

  def restore_partial(self, step, abstract_subtree):
    """Restores only the leaves of `abstract_subtree` (e.g. {"params": ...}) of the state."""
    args = ocp.args.PyTreeRestore(
        item=abstract_subtree, partial_restore=True,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_subtree))
    return self._manager.restore(step, args=ocp.args.Composite(state=args))["state"]

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree, shardings):
  """ShapeDtypeStructs carrying the target shardings, the restore target orbax expects."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
