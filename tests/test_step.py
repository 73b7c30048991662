"""The pure train step: exact gradient accumulation and the NaN debugging aid."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lineage.models import gpt
from lineage.train import lm_loss
from lineage.train import step as step_lib

BATCH, SEQ = 16, 16
MODEL = gpt.GPTConfig(vocab_size=32, context=SEQ, num_layers=2, num_heads=2, embed_dim=32,
                      mlp_dim=64, dropout=0.0)


@functools.cache
def _params():
  init = lambda rng: nn.unbox(gpt.GPT(MODEL).init(rng, jnp.zeros((1, SEQ), jnp.int32))["params"])
  return jax.jit(init)(jax.random.PRNGKey(0))


def _batch(masked):
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, MODEL.vocab_size, (BATCH, SEQ + 1)).astype(np.int32)
  # Row r keeps its first 4 * (r % 4) + 1 targets: the micro-batches (every 4th row) weigh
  # 1, 5, 9 and 13 tokens a row, so averaging per micro-batch would give another update.
  keep = 4 * (np.arange(BATCH) % 4) + 1 if masked else np.full(BATCH, SEQ)
  weights = (np.arange(SEQ)[None, :] < keep[:, None]).astype(np.float32)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": weights}


@functools.cache
def _jitted_step(micro_batches, nan_at_step):
  # Plain SGD with lr 1, so the update is the gradient itself and any accumulation error shows.
  return jax.jit(step_lib.make_train_step(lm_loss.lm_loss_fn(gpt.GPT(MODEL)), optax.sgd(1.0),
                                          micro_batches, nan_at_step))


def _run(micro_batches, batch, nan_at_step=-1, steps=1):
  params = _params()
  state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=optax.sgd(1.0).init(params), rng=jax.random.PRNGKey(1))
  history = []
  for _ in range(steps):
    state, metrics = _jitted_step(micro_batches, nan_at_step)(state, batch)
    history.append(jax.device_get(metrics))
  return state, history


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_four_micro_batches_make_the_same_update_as_one_batch(masked):
  batch = _batch(masked)
  whole, (whole_metrics,) = _run(1, batch)
  accumulated, (accumulated_metrics,) = _run(4, batch)
  moved = jax.tree.map(lambda new, old: np.abs(new - old).max(), whole.params, _params())
  assert min(jax.tree.leaves(moved)) > 1e-5  # every parameter got a gradient
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0),
               accumulated.params, whole.params)
  for key in ("loss", "accuracy", "grad_norm"):
    np.testing.assert_allclose(accumulated_metrics[key], whole_metrics[key], rtol=1e-5)
  # The loss is the mean over the scored targets only.
  logits = gpt.GPT(MODEL).apply({"params": _params()}, batch["inputs"])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  expected = (losses * batch["weights"]).sum() / batch["weights"].sum()
  np.testing.assert_allclose(accumulated_metrics["loss"], expected, rtol=1e-5)


@pytest.mark.slow
def test_nan_at_step_poisons_that_step_only():
  _, history = _run(1, _batch(masked=False), nan_at_step=3, steps=3)
  losses = [float(m["loss"]) for m in history]
  assert np.isfinite(losses[:2]).all()
  assert np.isnan(losses[2])
  assert np.isnan(float(history[2]["grad_norm"]))


def _tree_paths(tree):
  return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_stateless_train_state_keeps_its_tree_and_a_carry_joins_it():
  params = {"w": jnp.ones(2)}
  stateless = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=(),
                                  rng=jax.random.PRNGKey(0))
  # The tree orbax saves: exactly the four fields a checkpoint held before carries existed.
  assert _tree_paths(stateless) == [".step", ".params['w']", ".rng"]
  stateful = stateless.replace(carry=(jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32)))
  assert _tree_paths(stateful) == [".step", ".params['w']", ".rng", ".carry[0]", ".carry[1]"]
  for state in (stateless, stateful):
    rebuilt = jax.tree.map(lambda x: x + 1, state)
    assert type(rebuilt) is step_lib.TrainState
    assert (rebuilt.carry is None) == (state.carry is None)
    assert int(rebuilt.step) == 1


def test_a_carry_returned_in_another_form_is_a_clear_error():
  def loss_fn(params, batch, rng, deterministic, carry):
    new_carry = (carry[0] + params["w"]).astype(jnp.bfloat16)
    return new_carry.astype(jnp.float32).sum(), ({"weight": jnp.float32(1)}, (new_carry,))

  params = {"w": jnp.ones(3)}
  state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=optax.sgd(1.0).init(params), rng=jax.random.PRNGKey(0),
                              carry=(jnp.zeros((2, 3)),))
  step = step_lib.make_train_step(loss_fn, optax.sgd(1.0), stateful=True)
  with pytest.raises(ValueError, match=r"took a carry \('float32\[2, 3\]',\) but returned "
                                       r"\('bfloat16\[2, 3\]',\)"):
    jax.jit(step)(state, {"inputs": jnp.zeros((2, 4), jnp.int32)})
