"""Generalised advantage estimation (Schulman et al. 2016) over the actions of token rows.

A row's actions are the positions its mask marks; positions outside the mask (the prompt,
padding, a user's turn between two assistant turns) are skipped, so the recursion runs from
one action to the previous action as if they were adjacent steps:
  delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = delta_t + gamma * lambda * A_{t+1},
with V and A zero after a row's last action, and returns A_t + V_t (the value targets).
"""

import jax
import jax.numpy as jnp


def gae(rewards, values, mask, gamma=1.0, lam=0.95):
  """(advantages, returns), each like `rewards` ([batch, steps]), zero outside the mask."""
  mask = mask.astype(rewards.dtype)

  def back(carry, xs):
    next_value, next_advantage = carry
    reward, value, m = xs
    delta = reward + gamma * next_value - value
    advantage = delta + gamma * lam * next_advantage
    carry = (jnp.where(m > 0, value, next_value), jnp.where(m > 0, advantage, next_advantage))
    return carry, advantage * m

  zeros = jnp.zeros(rewards.shape[0], rewards.dtype)
  _, advantages = jax.lax.scan(back, (zeros, zeros), (rewards.T, values.T, mask.T),
                               reverse=True)
  advantages = advantages.T
  return advantages, (advantages + values) * mask


def whiten(x, mask, eps=1e-8):
  """(x - mean) / std over the masked entries of the whole batch; zero outside the mask."""
  mask = mask.astype(x.dtype)
  count = jnp.maximum(mask.sum(), 1.0)
  mean = (x * mask).sum() / count
  var = (jnp.square(x - mean) * mask).sum() / count
  return (x - mean) * jax.lax.rsqrt(var + eps) * mask
