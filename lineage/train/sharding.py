"""Device mesh and the rules that map logical parameter axes onto it.

Axes: "data" (pure data parallelism), "fsdp" (data parallelism that also shards
parameters and optimizer state along the model width) and "tensor" (Megatron
style: attention heads, MLP hidden units and the vocabulary are split).
"""

import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

LOGICAL_RULES = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("length", None),
    ("act_embed", None),
    ("norm", None),
)


def make_mesh(data=-1, fsdp=1, tensor=1, devices=None):
  """A ("data", "fsdp", "tensor") mesh; data=-1 takes all devices left over."""
  devices = jax.devices() if devices is None else devices
  if data == -1:
    if len(devices) % (fsdp * tensor):
      raise ValueError(f"{len(devices)} devices cannot be split into fsdp={fsdp} x "
                       f"tensor={tensor}; choose mesh sizes that divide the device count")
    data = len(devices) // (fsdp * tensor)
  if data * fsdp * tensor != len(devices):
    raise ValueError(f"mesh data={data} x fsdp={fsdp} x tensor={tensor} needs "
                     f"{data * fsdp * tensor} devices, but {len(devices)} are present; set "
                     "--config.mesh.data=-1 to use all devices for data parallelism")
  grid = np.asarray(devices).reshape(data, fsdp, tensor)
  return jax.sharding.Mesh(grid, MESH_AXES,
                           axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_shardings(boxed_tree, mesh):
  """NamedShardings for a tree of nn.Partitioned leaves (abstract or concrete).

  A dimension that its mesh axes do not divide (GPT-2's 50257-token vocabulary,
  the byte tokenizer's 257) stays whole: jit refuses uneven shardings, and
  replicating one dimension is better than refusing the mesh.
  """
  specs = nn.get_partition_spec(boxed_tree)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, LOGICAL_RULES)
  return jax.tree.map(lambda s, x: _divisible(s, x.shape), shardings, nn.unbox(boxed_tree))


def _divisible(named, shape):
  spec = tuple(named.spec) + (None,) * (len(shape) - len(named.spec))
  fitted = []
  for size, axes in zip(shape, spec):
    names = axes if isinstance(axes, tuple) else () if axes is None else (axes,)
    fitted.append(axes if size % math.prod(named.mesh.shape[a] for a in names) == 0 else None)
  return NamedSharding(named.mesh, P(*fitted))


def batch_sharding(mesh):
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh):
  return NamedSharding(mesh, P())


def check_batch_divisible(batch_size, mesh, micro_batches=1):
  shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
  if batch_size % (micro_batches * shards):
    raise ValueError(f"batch_size={batch_size} must be divisible by micro_batches={micro_batches}"
                     f" x data*fsdp={shards}; change --config.train.batch_size or the mesh")
