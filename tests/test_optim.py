"""Schedules, the weight-decay mask and gradient clipping of lineage.train.optim."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lineage.models import gpt
from lineage.train import optim


def _train_cfg(**overrides):
  cfg = dict(steps=100, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1,
             b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0, grad_clip=0.0, mu_dtype="")
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


def _lrs(schedule, steps):
  return np.array([float(schedule(s)) for s in steps])


def test_cosine_warms_up_to_lr_then_decays_to_the_floor():
  schedule = optim.make_schedule(_train_cfg(lr=3e-3))
  np.testing.assert_allclose(_lrs(schedule, [0, 5, 10, 55, 100]),
                             [0.0, 1.5e-3, 3e-3, 3e-3 * (0.1 + 0.9 * 0.5), 3e-4], rtol=1e-5)
  after_warmup = _lrs(schedule, range(10, 101))
  assert np.all(np.diff(after_warmup) <= 0)


def test_linear_warms_up_then_decays_linearly_to_the_floor():
  schedule = optim.make_schedule(_train_cfg(schedule="linear", lr=2.0))
  np.testing.assert_allclose(_lrs(schedule, [0, 5, 10, 55, 100]), [0.0, 1.0, 2.0, 1.1, 0.2],
                             rtol=1e-5)


def test_constant_warms_up_then_stays_flat():
  schedule = optim.make_schedule(_train_cfg(schedule="constant", lr=0.5))
  np.testing.assert_allclose(_lrs(schedule, [0, 5, 10, 50, 100]), [0.0, 0.25, 0.5, 0.5, 0.5],
                             rtol=1e-6)


def test_noam_matches_the_formula_and_peaks_at_warmup():
  d, warmup = 512, 400  # the paper's lr is d_model**-0.5
  schedule = optim.make_schedule(_train_cfg(schedule="noam", lr=d ** -0.5, warmup_steps=warmup,
                                            steps=2000))
  steps = np.arange(1, 2001)
  expected = d ** -0.5 * np.minimum(steps ** -0.5, steps * warmup ** -1.5)
  lrs = np.asarray(jax.vmap(schedule)(jnp.asarray(steps)))
  np.testing.assert_allclose(lrs, expected, rtol=1e-5)
  assert steps[np.argmax(lrs)] == warmup


def test_unknown_schedule_is_a_value_error_naming_the_choices():
  with pytest.raises(ValueError, match="cosin.*cosine, linear, noam, constant"):
    optim.make_schedule(_train_cfg(schedule="cosin"))


@functools.cache
def _gpt_params():
  cfg = gpt.GPTConfig(vocab_size=17, context=8, num_layers=1, num_heads=2, embed_dim=8, mlp_dim=16)
  init = lambda rng: nn.unbox(gpt.GPT(cfg).init(rng, jnp.zeros((1, 8), jnp.int32))["params"])
  # Non-zero biases and LayerNorm parameters, so that decaying them would show.
  return jax.tree.map(lambda p: p + 0.5, jax.jit(init)(jax.random.PRNGKey(0)))


def test_default_groups_decay_matrices_only():
  labels = optim.ParamGroups().labels(_gpt_params())
  assert labels["wte"]["embedding"] == labels["h_0"]["mlp"]["c_fc"]["kernel"] == "decay"
  assert labels["h_0"]["mlp"]["c_fc"]["bias"] == "no_decay"
  assert labels["h_0"]["ln_1"]["scale"] == labels["ln_f"]["bias"] == "no_decay"


def test_weight_decay_shrinks_matrices_but_not_biases_or_layer_norm():
  lr, decay = 0.1, 0.2
  tx, _ = optim.make_optimizer(_train_cfg(lr=lr, warmup_steps=0, schedule="constant",
                                          weight_decay=decay, grad_clip=1.0))
  params = _gpt_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  new_params = jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(
      params, zeros)
  matrices = 0
  for (path, old), new in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                              jax.tree.leaves(new_params)):
    name = jax.tree_util.keystr(path)
    if old.ndim >= 2:
      matrices += 1
      np.testing.assert_allclose(new, old * (1 - lr * decay), rtol=1e-6, err_msg=name)
    else:
      np.testing.assert_array_equal(new, old, err_msg=name)
  assert matrices == 6  # wte, wpe, c_attn, attn c_proj, c_fc, mlp c_proj


@pytest.mark.parametrize("clip, scale", [(1.0, 0.1), (0.0, 1.0), (100.0, 1.0)])
def test_gradients_are_clipped_to_the_global_norm(clip, scale):
  # With eps far above the gradients, Adam's first update is lr * g / eps: linear in g,
  # so clipping (norm 10 down to 1) shows in the update's size.
  lr, eps = 1.0, 1e4
  tx, _ = optim.make_optimizer(_train_cfg(lr=lr, warmup_steps=0, schedule="constant", eps=eps,
                                          grad_clip=clip))
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
  grads = {"w": jnp.full((2, 2), 4.0), "b": jnp.full((2,), 6.0 / np.sqrt(2))}  # norm 10
  updates, _ = tx.update(grads, tx.init(params), params)
  for key in params:
    clipped = grads[key] * scale
    np.testing.assert_allclose(updates[key], -lr * clipped / (jnp.abs(clipped) + eps), rtol=1e-5)


def _one_step(tx, params, grads):
  return jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(params,
                                                                                      grads)


def test_groups_freeze_scale_the_rate_and_set_their_own_decay():
  """A frozen trunk stays put and its gradient does not count towards clipping; a head at
  lr_scale 10 moves ten times as far; a group's weight decay overrides train.weight_decay."""
  lr, eps = 0.1, 1e4  # Adam's first update is lr * g / eps: linear in g
  groups = optim.ParamGroups(
      label=lambda p: {"trunk": "frozen", "head": "head", "other": "plain"},
      groups={"frozen": optim.ParamGroup(frozen=True), "head": optim.ParamGroup(lr_scale=10.0),
              "plain": optim.ParamGroup(weight_decay=0.5)})
  tx, _ = optim.make_optimizer(_train_cfg(lr=lr, warmup_steps=0, schedule="constant", eps=eps,
                                          grad_clip=1.0, weight_decay=0.0), groups)
  params = {"trunk": jnp.ones(3), "head": jnp.ones(3), "other": jnp.ones(3)}
  grads = {"trunk": jnp.full(3, 100.0), "head": jnp.full(3, 0.1), "other": jnp.zeros(3)}
  new = _one_step(tx, params, grads)
  np.testing.assert_array_equal(new["trunk"], params["trunk"])
  # Unclipped (norm 0.17 < 1 without the frozen gradient): 1 - 10 * lr * 0.1 / (0.1 + eps).
  np.testing.assert_allclose(new["head"], 1 - 10 * lr * 0.1 / (0.1 + eps), rtol=1e-6)
  np.testing.assert_allclose(new["other"], 1 - lr * 0.5, rtol=1e-6)
  moments = [leaf for leaf in jax.tree.leaves(tx.init(params)) if leaf.shape == (3,)]
  assert len(moments) == 4  # Adam's mu and nu for head and other; none for the frozen trunk


def test_a_label_without_a_group_is_a_clear_error():
  groups = optim.ParamGroups(label=lambda p: jax.tree.map(lambda _: "head", p))
  with pytest.raises(ValueError, match=r"labelled \['head'\].*add a ParamGroup"):
    optim.make_optimizer(_train_cfg(), groups)[0].init({"w": jnp.ones(2)})
