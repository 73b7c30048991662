"""KL divergence between the policy and a reference from sampled tokens, and the coefficient
that weighs it in PPO's reward.

With tokens x sampled from the policy p and log r = log q(x) - log p(x) for the reference q,
KL(p || q) is estimated per token by (Schulman's note "Approximating KL divergence"):
  k1 = -log r            unbiased, high variance, can be negative: InstructGPT's penalty
  k2 = (log r)^2 / 2     biased, low variance
  k3 = (r - 1) - log r   unbiased and never negative
`AdaptiveKL` is Ziegler et al. (2019)'s proportional controller, which steers the measured
KL toward a target; `FixedKL` keeps the coefficient constant (0 turns the penalty off).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np


def k1(logp, logq):
  return logp - logq


def k2(logp, logq):
  return 0.5 * jnp.square(logq - logp)


def k3(logp, logq):
  log_ratio = logq - logp
  return jnp.expm1(log_ratio) - log_ratio


ESTIMATORS = {"k1": k1, "k2": k2, "k3": k3}


@dataclasses.dataclass
class FixedKL:
  """A constant coefficient; `update` leaves it."""
  value: float

  def update(self, kl, n_samples):
    del kl, n_samples
    return self.value


@dataclasses.dataclass
class AdaptiveKL:
  """beta <- beta * (1 + K * e), e = clip(KL / target - 1, -0.2, 0.2), K = n / horizon.

  `kl` is the measured KL of a batch of n samples (per sequence, in nats); the clip bounds
  how fast one noisy batch can move beta, and the horizon (in samples) sets how quickly the
  coefficient reacts overall.
  """
  value: float
  target: float
  horizon: float

  def __post_init__(self):
    if self.target <= 0 or self.horizon <= 0:
      raise ValueError(f"an adaptive KL controller needs target > 0 and horizon > 0; got "
                       f"target={self.target}, horizon={self.horizon}")

  def update(self, kl, n_samples):
    error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
    self.value = float(self.value * (1.0 + error * n_samples / self.horizon))
    return self.value


def controller(kind, init, target=0.0, horizon=0.0):
  """kind "adaptive" (init, target, horizon) or "fixed" (init)."""
  if kind == "adaptive":
    return AdaptiveKL(init, target, horizon)
  if kind == "fixed":
    return FixedKL(init)
  raise ValueError(f"unknown KL controller {kind!r}; choose adaptive or fixed")
