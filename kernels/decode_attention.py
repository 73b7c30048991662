"""Pallas attention of a few new queries over a KV cache, for prefill and decoding.

Same contract as kernels.reference.cached_attention_reference: q [b, t, h, d]
sits at cache slots q_slots [b, t] and attends causally (and within the local
window) to the valid slots of k_cache / v_cache [b, h, slots, d]. Each (example,
head) walks the cache in blocks of slots with an online softmax and stops at
its last query's slot, so a decoding step reads only the filled part of the
cache. Inference only: there is no backward pass.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels.flash_attention import (_INIT_MAX, _TRANS_B, _div, _round_up, online_softmax_step,
                                     resolve_interpret)


def _kernel(q_ref, k_ref, v_ref, slots_ref, valid_ref, o_ref, *, block_s, local_window, scale):
  q = q_ref[...]
  q_slots = slots_ref[...]  # [t, 1]
  num_q = q.shape[0]

  def body(j, carry):
    m, l, acc = carry
    start = pl.multiple_of(j * block_s, block_s)
    k = k_ref[pl.ds(start, block_s), :]
    v = v_ref[pl.ds(start, block_s), :]
    s = jax.lax.dot_general(q, k, _TRANS_B, preferred_element_type=jnp.float32) * scale
    kv_pos = start + jax.lax.broadcasted_iota(jnp.int32, s.shape, 1)
    mask = (valid_ref[:, pl.ds(start, block_s)] != 0) & (kv_pos <= q_slots)
    if local_window is not None:
      mask &= q_slots - kv_pos < local_window
    return online_softmax_step(m, l, acc, jnp.where(mask, s, -jnp.inf), v)

  # Blocks after the last query's slot are in its future; with a window, early ones are too old.
  hi = jnp.minimum(_div(jnp.max(q_slots), block_s) + 1, k_ref.shape[0] // block_s)
  lo = 0
  if local_window is not None:
    lo = _div(jnp.maximum(jnp.min(q_slots) - local_window + 1, 0), block_s)
  init = (jnp.full((num_q, 1), _INIT_MAX, jnp.float32), jnp.zeros((num_q, 1), jnp.float32),
          jnp.zeros(q.shape, jnp.float32))
  _, l, acc = jax.lax.fori_loop(lo, hi, body, init)
  o_ref[...] = (acc / jnp.where(l == 0.0, 1.0, l)).astype(o_ref.dtype)  # no valid key: zeros


def decode_attention(q, k_cache, v_cache, *, q_slots, kv_valid, local_window=None, block_s=128,
                     interpret=None):
  """softmax over the cache for queries at q_slots; interpret as in flash_attention."""
  interpret = resolve_interpret(interpret)
  batch, new, heads, dim = q.shape
  slots = k_cache.shape[2]
  block_s = min(block_s, _round_up(slots, 8))
  padded = _round_up(slots, block_s)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, padded - slots), (0, 0)))
  valid = jnp.pad(kv_valid.astype(jnp.int32), ((0, 0), (0, padded - slots)))[:, None, :]
  kernel = functools.partial(_kernel, block_s=block_s, local_window=local_window,
                             scale=dim ** -0.5)
  q_spec = pl.BlockSpec((None, None, new, dim), lambda b, h: (b, h, 0, 0))
  cache_spec = pl.BlockSpec((None, None, padded, dim), lambda b, h: (b, h, 0, 0))
  out = pl.pallas_call(
      kernel, grid=(batch, heads),
      in_specs=[q_spec, cache_spec, cache_spec,
                pl.BlockSpec((None, new, 1), lambda b, h: (b, 0, 0)),
                pl.BlockSpec((None, 1, padded), lambda b, h: (b, 0, 0))],
      out_specs=q_spec, out_shape=jax.ShapeDtypeStruct((batch, heads, new, dim), q.dtype),
      interpret=interpret,
  )(q.transpose(0, 2, 1, 3), pad(k_cache), pad(v_cache),
    q_slots.astype(jnp.int32)[:, :, None], valid)
  return out.transpose(0, 2, 1, 3)
