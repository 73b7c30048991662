"""Per-device training memory of a model on a mesh, worked out before any run.

Parameters and optimizer state: summed over the state's abstract leaves, each
shard's shape from its sharding on a `jax.sharding.AbstractMesh`. That needs no
devices, so it is exact for any mesh, 512 chips included.

Activations and temporaries: XLA's memory analysis of the train step compiled
with abstract inputs (ShapeDtypeStructs: nothing is allocated). Compiling needs
a real mesh, so this part is only available when there are as many local
devices as the mesh has (on CPU, `--xla_force_host_platform_device_count=N`).
The CPU compiler's buffer schedule differs from a GPU's or a TPU's, so treat
that figure as an estimate for accelerators.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lineage.train import loop, optim, sharding, step as step_lib


@dataclasses.dataclass
class Memory:
  """Bytes per device (jit shards evenly, so every device holds the same), and the number of
  parameters in the whole model."""
  num_params: int
  params: int
  optimizer: int
  temporaries: int = None  # None: not compiled
  compiled_arguments: int = None

  @property
  def total(self):
    return self.params + self.optimizer + (self.temporaries or 0)


def _abstract_mesh(data, fsdp, tensor):
  return jax.sharding.AbstractMesh(
      (data, fsdp, tensor), sharding.MESH_AXES,
      axis_types=(jax.sharding.AxisType.Auto,) * len(sharding.MESH_AXES))


def _per_device_bytes(tree, shardings):
  return sum(math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
             for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def _abstract_parts(task, train_cfg, mesh):
  """(optimizer, abstract TrainState, its shardings) on `mesh`, with no device work."""
  tx, _ = optim.make_optimizer(train_cfg, task.param_groups)
  rng = jax.random.PRNGKey(0)
  boxed = jax.eval_shape(task.init_params, rng)
  params = nn.unbox(boxed)
  state = step_lib.TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                              opt_state=jax.eval_shape(tx.init, params),
                              rng=jax.eval_shape(lambda: rng))
  with nn.logical_axis_rules(sharding.LOGICAL_RULES):
    shardings = loop.train_state_shardings(tx, boxed, mesh)
  return tx, state, shardings


def analyse(task, train_cfg, seq_len, data, fsdp, tensor, compile=False):
  """Memory of training the task's model with `train_cfg` (batch, micro-batches, optimizer) on
  a data x fsdp x tensor mesh; `compile` adds XLA's figures (needs data*fsdp*tensor devices)
  for a next-token batch of `seq_len` tokens per row."""
  _, state, shardings = _abstract_parts(task, train_cfg, _abstract_mesh(data, fsdp, tensor))
  result = Memory(num_params=sum(x.size for x in jax.tree.leaves(state.params)),
                  params=_per_device_bytes(state.params, shardings.params),
                  optimizer=_per_device_bytes(state.opt_state, shardings.opt_state))
  if compile:
    compiled = compile_train_step(task, train_cfg, seq_len, data, fsdp, tensor)
    analysis = compiled.memory_analysis()
    result.temporaries = analysis.temp_size_in_bytes
    result.compiled_arguments = analysis.argument_size_in_bytes
  return result


def compile_train_step(task, train_cfg, seq_len, data, fsdp, tensor):
  """The train step, as training builds it, compiled for abstract inputs on a device mesh."""
  mesh = sharding.make_mesh(data, fsdp, tensor, devices=jax.devices()[:data * fsdp * tensor])
  sharding.check_batch_divisible(train_cfg.batch_size, mesh, train_cfg.micro_batches)
  tx, state, shardings = _abstract_parts(task, train_cfg, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  tokens = jax.ShapeDtypeStruct((train_cfg.batch_size, seq_len), jnp.int32, sharding=batch_sharding)
  step = jax.jit(step_lib.make_train_step(task.loss_fn, tx, train_cfg.micro_batches),
                 in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
                 donate_argnums=0)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    return step.lower(state, {"inputs": tokens, "targets": tokens}).compile()
