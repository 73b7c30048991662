"""Pure, jit-compiled train and eval steps over any loss function.

A loss function has the signature
    loss_fn(params, batch, rng, deterministic) -> (loss_sum, aux)
where `loss_sum` is the loss summed over the examples or tokens it covers and
`aux` is a dict of sums that must include "weight" (how many it covered). Sums,
not means, make gradient accumulation over micro-batches exact: the step adds
the micro-batch sums and divides once by the total weight.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 PRNG key; each step folds in its step number


def _split_micro_batches(batch, micro_batches):
  """[B, ...] -> [k, B/k, ...] taking every k-th row, so each device keeps its own rows."""
  def split(x):
    x = x.reshape(x.shape[0] // micro_batches, micro_batches, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def _normalise(sums):
  """Turn the summed aux metrics into means over the total weight."""
  weight = jnp.maximum(sums["weight"], 1e-9)
  metrics = {k: v / weight for k, v in sums.items() if k not in ("weight", "loss_sum")}
  metrics["loss"] = sums["loss_sum"] / weight
  return metrics


def make_train_step(loss_fn, tx, micro_batches=1, nan_at_step=-1):
  """Returns train_step(state, batch) -> (state, metrics), to be jitted by the caller.

  `nan_at_step` (a debugging aid) poisons the loss of that step with NaN so the
  loop's non-finite guard can be exercised end to end.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def one_micro_batch(params, batch, rng):
    (loss_sum, aux), grads = grad_fn(params, batch, rng, False)
    return grads, {"loss_sum": loss_sum, **aux}

  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    if micro_batches == 1:
      grads, sums = one_micro_batch(state.params, batch, rng)
    else:
      def accumulate(carry, xs):
        index, micro = xs
        grads, sums = one_micro_batch(state.params, micro, jax.random.fold_in(rng, index))
        return jax.tree.map(jnp.add, carry, (grads, sums)), None
      zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          one_micro_batch, state.params, jax.tree.map(lambda x: x[0], _split_micro_batches(
              batch, micro_batches)), rng))
      (grads, sums), _ = jax.lax.scan(
          accumulate, zeros, (jnp.arange(micro_batches), _split_micro_batches(batch, micro_batches)))
    weight = jnp.maximum(sums["weight"], 1e-9)
    grads = jax.tree.map(lambda g: g / weight, grads)
    if nan_at_step >= 0:
      poison = jnp.where(state.step + 1 == nan_at_step, jnp.nan, 0.0)
      sums = {**sums, "loss_sum": sums["loss_sum"] + poison}
      grads = jax.tree.map(lambda g: g + poison, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = _normalise(sums)
    metrics["grad_norm"] = optax.global_norm(grads)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return train_step


def make_eval_step(loss_fn):
  """Returns eval_step(params, batch) -> sums (loss_sum, weight and aux sums)."""
  def eval_step(params, batch):
    loss_sum, aux = loss_fn(params, batch, jax.random.PRNGKey(0), True)
    return {"loss_sum": loss_sum, **aux}
  return eval_step


def finish_eval(sums):
  """Means over an evaluation set from the eval steps' summed outputs."""
  return {k: float(v) for k, v in _normalise(sums).items()}
