"""The mesh and its rules: a sharded step computes what one device computes."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from configs import gpt2 as gpt2_config
from lineage.milestones.gpt2 import task as gpt2_task
from lineage.train import loop, optim, sharding, step as step_lib


def _config(data, fsdp, tensor):
  cfg = gpt2_config.get_config("tiny")
  cfg.model.update(num_layers=2, embed_dim=64, mlp_dim=256, context=32)
  cfg.data.update(seq_len=32, num_docs=300)
  # No warmup: the first step's learning rate would be 0 and every update trivially equal.
  # Adam's first update is lr * g / (|g| + eps): with eps 1e-8 that is lr * sign(g), blind
  # to wrong gradient sizes and flipping on near-zero ones; eps 1 makes it follow g.
  cfg.train.update(batch_size=8, warmup_steps=0, lr=1.0, eps=1.0)
  cfg.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
  return cfg


@pytest.fixture(scope="module")
def sharded_and_single():
  """One train step on a data=2 x fsdp=2 x tensor=2 mesh and the same step on one device."""
  assert jax.device_count() == 8, "conftest forces 8 CPU devices"
  cfg = _config(2, 2, 2)
  parts = gpt2_task.build(cfg)
  trainer = loop.build_trainer(cfg, parts.task)
  state = trainer.init_state(jax.random.PRNGKey(cfg.train.seed))
  start = jax.device_get(state)
  batch = next(parts.task.train_data)
  with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    sharded, sharded_metrics = trainer.train_step(state, loop.device_batch(batch, trainer.mesh))

  one_device = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  tx, _ = optim.make_optimizer(cfg.train)
  single_step = jax.jit(step_lib.make_train_step(parts.task.loss_fn, tx))
  with jax.set_mesh(one_device), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    single, single_metrics = single_step(
        jax.device_put(start, sharding.replicated(one_device)),
        jax.device_put(batch, sharding.replicated(one_device)))
  return dict(start=start, sharded=sharded, sharded_metrics=sharded_metrics, single=single,
              single_metrics=single_metrics)


def test_sharded_step_matches_one_device(sharded_and_single):
  r = sharded_and_single
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(r["sharded_metrics"][key], r["single_metrics"][key], rtol=1e-5,
                               atol=1e-5)
  moved = jax.tree.map(lambda new, old: np.abs(np.asarray(new) - old).max(),
                       r["single"].params, r["start"].params)
  assert min(jax.tree.leaves(moved)) > 1e-4  # the step really updated every parameter
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                                       atol=1e-5),
               r["sharded"].params, r["single"].params)
  assert int(r["sharded"].step) == int(r["single"].step) == 1


def test_parameters_are_sharded_over_fsdp_and_tensor(sharded_and_single):
  kernel = sharded_and_single["sharded"].params["h_0"]["mlp"]["c_fc"]["kernel"]
  assert kernel.sharding.spec == P("fsdp", "tensor")
  assert kernel.shape == (64, 256)
  assert {s.data.shape for s in kernel.addressable_shards} == {(32, 128)}
  # The byte vocabulary (257) is not divisible by tensor=2: that dimension stays whole.
  wte = sharded_and_single["sharded"].params["wte"]["embedding"]
  assert wte.sharding.spec == P(None, "fsdp")
  assert {s.data.shape for s in wte.addressable_shards} == {(257, 32)}


def test_adam_moments_are_sharded_like_their_parameters(sharded_and_single):
  """In every parameter group (decayed matrices, undecayed biases) each moment is sharded like
  its parameter; a group leaves MaskedNodes where the other holds the moments."""
  state = sharded_and_single["sharded"]
  checked = 0
  for moment in ("mu", "nu"):
    for _, moments in optax.tree_utils.tree_get_all_with_path(state.opt_state, moment):
      masked = lambda x: isinstance(x, optax.MaskedNode)
      same = jax.tree.map(lambda m, p: None if masked(m) else
                          m.sharding.is_equivalent_to(p.sharding, p.ndim),
                          moments, state.params, is_leaf=masked)
      assert all(jax.tree.leaves(same)), moment
      checked += len(jax.tree.leaves(same))
  assert checked == 2 * len(jax.tree.leaves(state.params))
  decayed = optax.tree_utils.tree_get_all_with_path(state.opt_state, "mu")[0][1]
  mu_kernel = decayed["h_0"]["mlp"]["c_fc"]["kernel"]
  assert {s.data.shape for s in mu_kernel.addressable_shards} == {(32, 128)}


def test_mesh_that_does_not_fit_the_devices_is_a_clear_error():
  with pytest.raises(ValueError, match="needs 3 devices, but 8 are present"):
    sharding.make_mesh(3, 1, 1)
  with pytest.raises(ValueError, match="cannot be split into fsdp=3"):
    sharding.make_mesh(-1, 3, 1)


def test_batch_must_divide_over_the_data_axes():
  mesh = sharding.make_mesh(2, 2, 2)
  sharding.check_batch_divisible(8, mesh, micro_batches=2)
  with pytest.raises(ValueError, match="batch_size=6"):
    sharding.check_batch_divisible(6, mesh)
