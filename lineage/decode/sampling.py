"""How the next token is chosen from logits: greedy, temperature, top-k and top-p.

The settings split in two. `Sampling.flags` (greedy or not, whether each filter
is on) change the computation and are static; `Sampling.values` (temperature,
top_k, top_p) are traced arrays, so a chat's /temp or a sweep over top-p reuses
the compiled decoder.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Flags(NamedTuple):
  greedy: bool
  top_k: bool
  top_p: bool


@dataclasses.dataclass(frozen=True)
class Sampling:
  """temperature 0 is greedy (argmax), as in common sampling tools; top_k 0 and top_p 1.0
  turn those filters off."""
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    if not self.temperature >= 0:
      raise ValueError(f"temperature={self.temperature}: it must be >= 0 (0 is greedy)")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"top_p={self.top_p}: it must lie in (0, 1] (1.0 turns it off)")
    if self.top_k < 0 or int(self.top_k) != self.top_k:
      raise ValueError(f"top_k={self.top_k}: it must be an integer >= 0 (0 turns it off)")

  @property
  def flags(self) -> Flags:
    if self.temperature == 0:
      return Flags(True, False, False)
    return Flags(False, bool(self.top_k > 0), bool(self.top_p < 1))

  def values(self):
    """The traced settings. Greedy decoding reads none of them (its flags take the argmax),
    so a greedy Sampling passes temperature 1.0 in place of its 0, keeping the shapes."""
    return {"temperature": np.float32(self.temperature or 1.0), "top_k": np.int32(self.top_k),
            "top_p": np.float32(self.top_p)}


def filter_logits(logits, top_k=None, top_p=None):
  """Sets logits outside the top-k, then outside the top-p nucleus of what is left, to -inf.

  None turns a filter off; a value may be traced. Tokens tied with the last kept one are kept.
  """
  if top_k is None and top_p is None:
    return logits
  descending = -jnp.sort(-logits, axis=-1)
  threshold = jnp.full(logits.shape[:-1] + (1,), -jnp.inf, logits.dtype)
  if top_k is not None:
    kth = jnp.clip(top_k, 1, logits.shape[-1]) - 1
    threshold = jax.lax.dynamic_slice_in_dim(descending, kth, 1, axis=-1)
    descending = jnp.where(descending < threshold, -jnp.inf, descending)
  if top_p is not None:
    probs = jax.nn.softmax(descending, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each token
    kept = jnp.where(before < top_p, descending, jnp.inf)
    threshold = jnp.maximum(threshold, kept.min(axis=-1, keepdims=True))
  return jnp.where(logits < threshold, -jnp.inf, logits)


def next_token(logits, rng, flags: Flags, values):
  """int32 tokens [batch] drawn from logits [batch, vocab] (`values` from Sampling.values)."""
  if flags.greedy:
    return logits.argmax(-1).astype(jnp.int32)
  logits = filter_logits(logits / values["temperature"],
                         values["top_k"] if flags.top_k else None,
                         values["top_p"] if flags.top_p else None)
  return jax.random.categorical(rng, logits).astype(jnp.int32)
