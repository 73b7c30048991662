"""Pure, jit-compiled train and eval steps over any loss function.

A loss function has the signature
    loss_fn(params, batch, rng, deterministic) -> (loss_sum, aux)
where `loss_sum` is the loss summed over the examples or tokens it covers and
`aux` is a dict of sums that must include "weight" (how many it covered). Sums,
not means, make gradient accumulation over micro-batches exact: the step adds
the micro-batch sums and divides once by the total weight.

A stateful loss function (an RNN trained by truncated backpropagation) also
takes and returns a carry, a pytree of arrays whose leading dimension is the
batch row:
    loss_fn(params, batch, rng, deterministic, carry) -> (loss_sum, (aux, new_carry))
The train state holds the carry from one step to the next. Gradients are taken
with respect to the parameters only, so they stop at the chunk boundary.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class TrainState:
  """step, params, opt_state, rng (raw uint32 PRNG key; each step folds in its step number)
  and, for stateful tasks, the carry.

  A pytree whose children leave `carry` out when it is None, so a stateless state has the
  same tree, and the same checkpoints, as before carries existed.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  carry: Any = None

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


def _flatten_with_keys(state):
  names = ("step", "params", "opt_state", "rng") + (() if state.carry is None else ("carry",))
  return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], None


jax.tree_util.register_pytree_with_keys(
    TrainState, _flatten_with_keys, lambda _, children: TrainState(*children))


def _split_micro_batches(batch, micro_batches):
  """[B, ...] -> [k, B/k, ...] taking every k-th row, so each device keeps its own rows."""
  def split(x):
    x = x.reshape(x.shape[0] // micro_batches, micro_batches, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def _merge_micro_batches(stacked):
  """The inverse of `_split_micro_batches`: [k, B/k, ...] -> [B, ...] in the original row order."""
  def merge(x):
    return jnp.swapaxes(x, 0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])
  return jax.tree.map(merge, stacked)


def _check_carry(carry, new_carry):
  """The state keeps and checkpoints the carry, so each step must return it in the same form."""
  describe = lambda tree: jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree)
  if jax.tree.structure(carry) != jax.tree.structure(new_carry) or (
      describe(carry) != describe(new_carry)):
    raise ValueError(f"the loss function took a carry {describe(carry)} but returned "
                     f"{describe(new_carry)}; return the new carry with the same structure, "
                     "shapes and dtypes (cast it back, e.g. to float32)")


def _normalise(sums):
  """Turn the summed aux metrics into means over the total weight."""
  weight = jnp.maximum(sums["weight"], 1e-9)
  metrics = {k: v / weight for k, v in sums.items() if k not in ("weight", "loss_sum")}
  metrics["loss"] = sums["loss_sum"] / weight
  return metrics


def make_train_step(loss_fn, tx, micro_batches=1, nan_at_step=-1, stateful=False):
  """Returns train_step(state, batch) -> (state, metrics), to be jitted by the caller.

  `stateful`: `loss_fn` takes and returns a carry (see the module docstring); the step
  reads it from `state.carry` and stores the new one there, split over micro-batches by
  rows like the batch. `nan_at_step` (a debugging aid) poisons the loss of that step with
  NaN so the loop's non-finite guard can be exercised end to end.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def one_micro_batch(params, batch, rng, carry):
    if stateful:
      (loss_sum, (aux, new_carry)), grads = grad_fn(params, batch, rng, False, carry)
      _check_carry(carry, new_carry)
    else:
      (loss_sum, aux), grads = grad_fn(params, batch, rng, False)
      new_carry = None
    return grads, {"loss_sum": loss_sum, **aux}, new_carry

  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    if micro_batches == 1:
      grads, sums, carry = one_micro_batch(state.params, batch, rng, state.carry)
    else:
      def accumulate(totals, xs):
        index, micro, micro_carry = xs
        grads, sums, new_carry = one_micro_batch(
            state.params, micro, jax.random.fold_in(rng, index), micro_carry)
        return jax.tree.map(jnp.add, totals, (grads, sums)), new_carry
      micro_inputs = (jnp.arange(micro_batches), _split_micro_batches(batch, micro_batches),
                      _split_micro_batches(state.carry, micro_batches))
      first = jax.tree.map(lambda x: x[0], micro_inputs)
      zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          lambda micro, micro_carry: one_micro_batch(state.params, micro, rng, micro_carry)[:2],
          first[1], first[2]))
      (grads, sums), carries = jax.lax.scan(accumulate, zeros, micro_inputs)
      carry = _merge_micro_batches(carries)
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
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              carry=carry)
    return new_state, metrics

  return train_step


def make_eval_step(loss_fn, stateful=False):
  """Returns eval_step(params, batch) -> sums (loss_sum, weight and aux sums), or for a
  stateful `loss_fn` eval_step(params, batch, carry) -> (sums, new_carry)."""
  if stateful:
    def stateful_eval_step(params, batch, carry):
      loss_sum, (aux, new_carry) = loss_fn(params, batch, jax.random.PRNGKey(0), True, carry)
      return {"loss_sum": loss_sum, **aux}, new_carry
    return stateful_eval_step

  def eval_step(params, batch):
    loss_sum, aux = loss_fn(params, batch, jax.random.PRNGKey(0), True)
    return {"loss_sum": loss_sum, **aux}
  return eval_step


def finish_eval(sums):
  """Means over an evaluation set from the eval steps' summed outputs."""
  return {k: float(v) for k, v in _normalise(sums).items()}
