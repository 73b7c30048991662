"""Plain-jnp attention: the reference every fused kernel is tested against.

It materialises the full [query, key] score matrix, so it is simple and always
available, but its memory grows with the square of the sequence length.
"""

import jax
import jax.numpy as jnp

_MASKED = -1e30  # finite, so fully masked rows give zeros instead of NaN


def attention_mask(q_pos, kv_pos, *, causal, q_segment_ids=None, kv_segment_ids=None,
                   kv_valid=None, local_window=None):
  """Boolean mask [batch, q, kv]: True where a query may attend to a key.

  Positions are slots in the key/value sequence (not token positions), so the
  same mask serves training (q_pos == kv_pos == arange) and cached decoding.
  """
  allowed = jnp.ones((q_pos.shape[0], q_pos.shape[1], kv_pos.shape[1]), bool)
  distance = q_pos[:, :, None] - kv_pos[:, None, :]
  if causal:
    allowed &= distance >= 0
  if local_window is not None:
    allowed &= distance < local_window
    if not causal:
      allowed &= distance > -local_window
  if q_segment_ids is not None:
    allowed &= q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
  if kv_valid is not None:
    allowed &= kv_valid[:, None, :]
  return allowed


def masked_attention(q, k, v, mask, kv_layout="bshd"):
  """softmax(q k^T / sqrt(d) + mask) v with fp32 softmax; q [b, t, h, d], k/v in `kv_layout`."""
  scale = q.shape[-1] ** -0.5
  scores = jnp.einsum(f"bthd,{kv_layout}->bhts", q, k, preferred_element_type=jnp.float32) * scale
  scores = jnp.where(mask[:, None, :, :], scores, _MASKED)
  weights = jax.nn.softmax(scores, axis=-1)
  weights = jnp.where(mask[:, None, :, :], weights, 0.0)  # rows with no key give 0, not uniform
  return jnp.einsum(f"bhts,{kv_layout}->bthd", weights.astype(v.dtype), v)


def attention_reference(q, k, v, *, causal=True, segment_ids=None, local_window=None):
  """Self-attention over one sequence: the "xla" implementation of kernels.ops.attention."""
  batch, length = q.shape[0], q.shape[1]
  pos = jnp.broadcast_to(jnp.arange(length), (batch, length))
  mask = attention_mask(pos, pos, causal=causal, q_segment_ids=segment_ids,
                        kv_segment_ids=segment_ids, local_window=local_window)
  return masked_attention(q, k, v, mask)


def cached_attention_reference(q, k_cache, v_cache, *, q_slots, kv_valid, local_window=None):
  """Queries at cache slots `q_slots` [b, t] attend causally to the filled cache slots.

  The cache is [b, h, slots, d], so the matmuls need no transpose of it per step.
  """
  batch, slots = k_cache.shape[0], k_cache.shape[2]
  kv_pos = jnp.broadcast_to(jnp.arange(slots), (batch, slots))
  mask = attention_mask(q_slots, kv_pos, causal=True, kv_valid=kv_valid,
                        local_window=local_window)
  return masked_attention(q, k_cache, v_cache, mask, kv_layout="bhsd")
