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


def check_attention_args(q, k, *, causal, segment_ids, q_segment_ids, kv_segment_ids,
                         local_window):
  """(query ids, key ids), each None or [batch, its length], after checking that the masks
  make sense for these shapes. `segment_ids` is self-attention's shorthand for both.

  Causal and banded masks compare query and key positions, which only mean the same
  thing when queries and keys are one sequence, so they need equal lengths.
  """
  if segment_ids is not None:
    if q_segment_ids is not None or kv_segment_ids is not None:
      raise ValueError("give segment_ids (self-attention) or q_segment_ids with "
                       "kv_segment_ids (cross-attention), not both")
    q_segment_ids = kv_segment_ids = segment_ids
  if (q_segment_ids is None) != (kv_segment_ids is None):
    raise ValueError("q_segment_ids and kv_segment_ids come together: for key padding alone "
                     "give the queries ids of 1 and the padded keys 0")
  if q.shape[1] != k.shape[1] and (causal or local_window is not None):
    raise ValueError(f"queries of length {q.shape[1]} and keys of length {k.shape[1]}: "
                     "causal and local_window masks need one sequence; cross-attention "
                     "takes causal=False")
  for name, ids, length in (("q_segment_ids", q_segment_ids, q.shape[1]),
                            ("kv_segment_ids", kv_segment_ids, k.shape[1])):
    if ids is not None and ids.shape != (q.shape[0], length):
      raise ValueError(f"{name} must be [batch, length] = {(q.shape[0], length)}, got "
                       f"{ids.shape}")
  return q_segment_ids, kv_segment_ids


def attention_reference(q, k, v, *, causal=True, segment_ids=None, q_segment_ids=None,
                        kv_segment_ids=None, local_window=None):
  """The "xla" implementation of kernels.ops.attention: self-attention, or cross-attention
  of queries over keys of another length (q_segment_ids against kv_segment_ids)."""
  q_seg, kv_seg = check_attention_args(q, k, causal=causal, segment_ids=segment_ids,
                                       q_segment_ids=q_segment_ids,
                                       kv_segment_ids=kv_segment_ids, local_window=local_window)
  batch = q.shape[0]
  q_pos = jnp.broadcast_to(jnp.arange(q.shape[1]), (batch, q.shape[1]))
  kv_pos = jnp.broadcast_to(jnp.arange(k.shape[1]), (batch, k.shape[1]))
  mask = attention_mask(q_pos, kv_pos, causal=causal, q_segment_ids=q_seg,
                        kv_segment_ids=kv_seg, local_window=local_window)
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
