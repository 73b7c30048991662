"""Flash attention in Pallas: blocked over queries and keys with an online softmax.

The [query, key] score matrix is never materialised: each query block walks the
key blocks it can see, keeping a running max, normaliser and output in fp32, so
memory grows linearly with the sequence. The backward pass recomputes the
scores from the saved log-sum-exp (jax.custom_vjp: grad cannot go through a
pallas_call), with one kernel for dq (per query block) and one for dk and dv
(per key block). Blocks that causality or the local window mask entirely are
skipped through the loop bounds. Queries and keys may differ in length
(cross-attention, non-causal), each with its own segment ids. Sequences are
padded to whole blocks inside and the padded keys masked. Layout [batch, seq,
heads, head_dim], as kernels.ops.attention; on CPU the kernels run in interpret
mode.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels import reference

_INIT_MAX = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite, so exp(m_old - m_new) never NaNs
_TRANS_B = (((1,), (1,)), ((), ()))  # x @ y.T without materialising y.T


class _Config(NamedTuple):
  causal: bool
  local_window: int | None
  block_q: int
  block_k: int
  interpret: bool


def online_softmax_step(m, l, acc, s, v):
  """Folds one block of masked scores `s` and values `v` into the running max `m`,
  normaliser `l` and unnormalised output `acc` (all fp32), rescaling what came before."""
  m_new = jnp.maximum(m, s.max(axis=1, keepdims=True))
  p = jnp.exp(s - m_new)
  alpha = jnp.exp(m - m_new)
  l = alpha * l + p.sum(axis=1, keepdims=True)
  acc = alpha * acc + jax.lax.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
  return m_new, l, acc


def _round_up(x, multiple):
  return -(-x // multiple) * multiple


def resolve_interpret(interpret):
  """None means interpret mode on CPU only; on GPU, a clear error rather than a lowering one."""
  backend = jax.default_backend()
  if interpret is None:
    interpret = backend == "cpu"
  if backend == "gpu" and not interpret:
    raise NotImplementedError(
        "the Pallas attention kernels do not lower with Pallas's Mosaic GPU backend yet; use "
        "implementation='cudnn' or 'xla' on GPU (or interpret=True to debug)")
  return interpret


def _mask(q_start, k_start, shape, cfg, kv_length, padded, q_seg, kv_seg):
  """[block_q, block_k] True where the query may attend to the key, or None if all may."""
  q_pos = q_start + jax.lax.broadcasted_iota(jnp.int32, shape, 0)
  k_pos = k_start + jax.lax.broadcasted_iota(jnp.int32, shape, 1)
  masks = []
  if padded:
    masks.append(k_pos < kv_length)
  if cfg.causal:
    masks.append(q_pos >= k_pos)
  if cfg.local_window is not None:
    masks.append(q_pos - k_pos < cfg.local_window)
    if not cfg.causal:
      masks.append(k_pos - q_pos < cfg.local_window)
  if q_seg is not None:
    masks.append(q_seg == kv_seg)  # [block_q, 1] == [1, block_k]
  return functools.reduce(jnp.logical_and, masks) if masks else None


def _div(x, n):
  """x // n for x >= 0: jnp's floor division lowers through sign, which needs a TPU to lower."""
  return jax.lax.div(x, jnp.int32(n))


def _kv_blocks(i, cfg, num_k):
  """[lo, hi): the key blocks query block i can see; the others are fully masked."""
  first_q, last_q = i * cfg.block_q, (i + 1) * cfg.block_q - 1
  lo, hi = 0, num_k
  if cfg.causal:
    hi = jnp.minimum(hi, _div(last_q, cfg.block_k) + 1)
  if cfg.local_window is not None:
    lo = _div(jnp.maximum(first_q - cfg.local_window + 1, 0), cfg.block_k)
    if not cfg.causal:
      hi = jnp.minimum(hi, _div(last_q + cfg.local_window - 1, cfg.block_k) + 1)
  return lo, hi


def _q_blocks(j, cfg, num_q):
  """[lo, hi): the query blocks that can see key block j."""
  first_k, last_k = j * cfg.block_k, (j + 1) * cfg.block_k - 1
  lo, hi = 0, num_q
  if cfg.causal:
    lo = _div(first_k, cfg.block_q)
  if cfg.local_window is not None:
    hi = jnp.minimum(hi, _div(last_k + cfg.local_window - 1, cfg.block_q) + 1)
    if not cfg.causal:
      lo = _div(jnp.maximum(first_k - cfg.local_window + 1, 0), cfg.block_q)
  return lo, hi


def _split_refs(refs, has_segments, num_outputs):
  """(inputs, q segment ref, kv segment ref, outputs) from a kernel's refs."""
  inputs, outputs = refs[:len(refs) - num_outputs], refs[len(refs) - num_outputs:]
  if has_segments:
    return inputs[:-2], inputs[-2], inputs[-1], outputs
  return inputs, None, None, outputs


def _fwd_kernel(*refs, cfg, kv_length, padded, scale, has_segments):
  (q_ref, k_ref, v_ref), qs_ref, ks_ref, (o_ref, lse_ref) = _split_refs(refs, has_segments, 2)
  block_q, block_k = cfg.block_q, cfg.block_k
  i = pl.program_id(2)
  q = q_ref[...]
  q_seg = None if qs_ref is None else qs_ref[...]

  def body(j, carry):
    m, l, acc = carry
    start = pl.multiple_of(j * block_k, block_k)
    k = k_ref[pl.ds(start, block_k), :]
    v = v_ref[pl.ds(start, block_k), :]
    s = jax.lax.dot_general(q, k, _TRANS_B, preferred_element_type=jnp.float32) * scale
    kv_seg = None if ks_ref is None else ks_ref[:, pl.ds(start, block_k)]
    mask = _mask(i * block_q, start, s.shape, cfg, kv_length, padded, q_seg, kv_seg)
    if mask is not None:
      s = jnp.where(mask, s, -jnp.inf)
    return online_softmax_step(m, l, acc, s, v)

  init = (jnp.full((block_q, 1), _INIT_MAX, jnp.float32), jnp.zeros((block_q, 1), jnp.float32),
          jnp.zeros(q.shape, jnp.float32))
  m, l, acc = jax.lax.fori_loop(*_kv_blocks(i, cfg, k_ref.shape[0] // block_k), body, init)
  empty = l == 0.0  # a query that sees no key gets zeros, as in the reference
  o_ref[...] = (acc / jnp.where(empty, 1.0, l)).astype(o_ref.dtype)
  # +inf makes exp(s - lse) zero in the backward pass for such rows.
  lse_ref[...] = jnp.where(empty, jnp.inf, m + jnp.log(l))


def _probs_and_dscores(q, k, v, do, lse, delta, mask, scale):
  """Softmax probabilities p and d(loss)/d(scores) of one [block_q, block_k] tile."""
  s = jax.lax.dot_general(q, k, _TRANS_B, preferred_element_type=jnp.float32) * scale
  if mask is not None:
    s = jnp.where(mask, s, -jnp.inf)
  p = jnp.exp(s - lse)
  dp = jax.lax.dot_general(do, v, _TRANS_B, preferred_element_type=jnp.float32)
  return p, p * (dp - delta)


def _dq_kernel(*refs, cfg, kv_length, padded, scale, has_segments):
  ins, qs_ref, ks_ref, (dq_ref,) = _split_refs(refs, has_segments, 1)
  q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = ins
  block_q, block_k = cfg.block_q, cfg.block_k
  i = pl.program_id(2)
  q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]
  q_seg = None if qs_ref is None else qs_ref[...]

  def body(j, dq):
    start = pl.multiple_of(j * block_k, block_k)
    k = k_ref[pl.ds(start, block_k), :]
    v = v_ref[pl.ds(start, block_k), :]
    kv_seg = None if ks_ref is None else ks_ref[:, pl.ds(start, block_k)]
    mask = _mask(i * block_q, start, (block_q, block_k), cfg, kv_length, padded, q_seg, kv_seg)
    _, ds = _probs_and_dscores(q, k, v, do, lse, delta, mask, scale)
    return dq + jax.lax.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

  dq = jax.lax.fori_loop(*_kv_blocks(i, cfg, k_ref.shape[0] // block_k), body,
                         jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _dkv_kernel(*refs, cfg, kv_length, padded, scale, has_segments):
  ins, qs_ref, ks_ref, (dk_ref, dv_ref) = _split_refs(refs, has_segments, 2)
  q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = ins
  block_q, block_k = cfg.block_q, cfg.block_k
  j = pl.program_id(2)
  k, v = k_ref[...], v_ref[...]
  kv_seg = None if ks_ref is None else ks_ref[...]

  def body(i, carry):
    dk, dv = carry
    start = pl.multiple_of(i * block_q, block_q)
    rows = pl.ds(start, block_q)
    q, do = q_ref[rows, :], do_ref[rows, :]
    q_seg = None if qs_ref is None else qs_ref[rows, :]
    mask = _mask(start, j * block_k, (block_q, block_k), cfg, kv_length, padded, q_seg, kv_seg)
    p, ds = _probs_and_dscores(q, k, v, do, lse_ref[rows, :], delta_ref[rows, :], mask, scale)
    dv += jax.lax.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
    dk += jax.lax.dot(ds.T.astype(q.dtype), q, preferred_element_type=jnp.float32)
    return dk, dv

  zeros = jnp.zeros(k.shape, jnp.float32)
  dk, dv = jax.lax.fori_loop(*_q_blocks(j, cfg, q_ref.shape[0] // block_q), body, (zeros, zeros))
  dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _heads_first(x, padded_length):
  """[b, t, h, d] -> [b, h, padded_length, d], zero-padded."""
  x = x.transpose(0, 2, 1, 3)
  return jnp.pad(x, ((0, 0), (0, 0), (0, padded_length - x.shape[2]), (0, 0)))


def _segment_inputs(segments, q_len, k_len):
  """Query ids as a [b, q_len, 1] column, key ids as a [b, 1, k_len] row: 2-D tiles for TPU.
  Padding gets id 0; padded keys are masked by position, padded query rows are dropped."""
  if segments is None:
    return []
  pad = lambda ids, n: jnp.pad(ids.astype(jnp.int32), ((0, 0), (0, n - ids.shape[1])))
  q_seg, kv_seg = segments
  return [pad(q_seg, q_len)[:, :, None], pad(kv_seg, k_len)[:, None, :]]


def _call(kernel, cfg, grid, in_specs, out_specs, out_shape, args, kv_length, padded, scale,
          has_segments):
  kernel = functools.partial(kernel, cfg=cfg, kv_length=kv_length, padded=padded, scale=scale,
                             has_segments=has_segments)
  return pl.pallas_call(kernel, grid=grid, in_specs=in_specs, out_specs=out_specs,
                        out_shape=out_shape, interpret=cfg.interpret)(*args)


def _geometry(cfg, q, k):
  """Shapes, the block-padded query and key lengths, and whether keys were padded."""
  batch, q_length, heads, dim = q.shape
  kv_length = k.shape[1]
  q_len, k_len = _round_up(q_length, cfg.block_q), _round_up(kv_length, cfg.block_k)
  return batch, q_length, kv_length, heads, dim, q_len, k_len, k_len != kv_length


def _forward(cfg, q, k, v, segments):
  """Output [b, t, h, d] and log-sum-exp [b, h, padded t, 1] (fp32); segments is None or
  (query ids, key ids)."""
  batch, q_length, kv_length, heads, dim, q_len, k_len, padded = _geometry(cfg, q, k)
  q_block = pl.BlockSpec((None, None, cfg.block_q, dim), lambda b, h, i: (b, h, i, 0))
  k_all = pl.BlockSpec((None, None, k_len, dim), lambda b, h, i: (b, h, 0, 0))
  row_block = pl.BlockSpec((None, None, cfg.block_q, 1), lambda b, h, i: (b, h, i, 0))
  in_specs = [q_block, k_all, k_all]
  if segments is not None:
    in_specs += [pl.BlockSpec((None, cfg.block_q, 1), lambda b, h, i: (b, i, 0)),
                 pl.BlockSpec((None, 1, k_len), lambda b, h, i: (b, 0, 0))]
  args = [_heads_first(q, q_len), _heads_first(k, k_len), _heads_first(v, k_len),
          *_segment_inputs(segments, q_len, k_len)]
  out_shape = [jax.ShapeDtypeStruct((batch, heads, q_len, dim), q.dtype),
               jax.ShapeDtypeStruct((batch, heads, q_len, 1), jnp.float32)]
  out, lse = _call(_fwd_kernel, cfg, (batch, heads, q_len // cfg.block_q), in_specs,
                   [q_block, row_block], out_shape, args, kv_length, padded, dim ** -0.5,
                   segments is not None)
  return out[:, :, :q_length].transpose(0, 2, 1, 3), lse


def _backward(cfg, q, k, v, segments, out, lse, do):
  batch, q_length, kv_length, heads, dim, q_len, k_len, padded = _geometry(cfg, q, k)
  # delta_i = sum_d dO_id O_id = sum_j P_ij dP_ij, the softmax's backward correction.
  delta = jnp.einsum("bthd,bthd->bht", do.astype(jnp.float32), out.astype(jnp.float32))
  delta = jnp.pad(delta, ((0, 0), (0, 0), (0, q_len - q_length)))[..., None]
  args = [_heads_first(q, q_len), _heads_first(k, k_len), _heads_first(v, k_len),
          _heads_first(do.astype(q.dtype), q_len), lse, delta,
          *_segment_inputs(segments, q_len, k_len)]
  has_segments = segments is not None
  common = (kv_length, padded, dim ** -0.5, has_segments)

  q_block = pl.BlockSpec((None, None, cfg.block_q, dim), lambda b, h, i: (b, h, i, 0))
  q_rows = pl.BlockSpec((None, None, cfg.block_q, 1), lambda b, h, i: (b, h, i, 0))
  k_all = pl.BlockSpec((None, None, k_len, dim), lambda b, h, i: (b, h, 0, 0))
  segs = [pl.BlockSpec((None, cfg.block_q, 1), lambda b, h, i: (b, i, 0)),
          pl.BlockSpec((None, 1, k_len), lambda b, h, i: (b, 0, 0))] if has_segments else []
  dq = _call(_dq_kernel, cfg, (batch, heads, q_len // cfg.block_q),
             [q_block, k_all, k_all, q_block, q_rows, q_rows, *segs], q_block,
             jax.ShapeDtypeStruct((batch, heads, q_len, dim), q.dtype), args, *common)

  k_block = pl.BlockSpec((None, None, cfg.block_k, dim), lambda b, h, j: (b, h, j, 0))
  q_all = pl.BlockSpec((None, None, q_len, dim), lambda b, h, j: (b, h, 0, 0))
  rows_all = pl.BlockSpec((None, None, q_len, 1), lambda b, h, j: (b, h, 0, 0))
  segs = [pl.BlockSpec((None, q_len, 1), lambda b, h, j: (b, 0, 0)),
          pl.BlockSpec((None, 1, cfg.block_k), lambda b, h, j: (b, 0, j))] if has_segments else []
  kv_shape = jax.ShapeDtypeStruct((batch, heads, k_len, dim), k.dtype)
  dk, dv = _call(_dkv_kernel, cfg, (batch, heads, k_len // cfg.block_k),
                 [q_all, k_block, k_block, q_all, rows_all, rows_all, *segs], [k_block, k_block],
                 [kv_shape, kv_shape], args, *common)
  back = lambda x, length: x[:, :, :length].transpose(0, 2, 1, 3)
  return back(dq, q_length), back(dk, kv_length), back(dv, kv_length)


def flash_custom_vjp(forward, backward):
  """Differentiable attention from flash kernels: forward(cfg, q, k, v, segment_ids) ->
  (out, lse) and backward(cfg, q, k, v, segment_ids, out, lse, do) -> (dq, dk, dv), where
  segment_ids is whatever the kernels take (None, an array, a pair of arrays). Only the
  output and the log-sum-exp are saved, so memory stays linear in sequence length. Shared
  by this module and the Mosaic GPU kernels."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
  def flash(cfg, q, k, v, segment_ids):
    return forward(cfg, q, k, v, segment_ids)[0]

  def flash_fwd(cfg, q, k, v, segment_ids):
    out, lse = forward(cfg, q, k, v, segment_ids)
    return out, (q, k, v, segment_ids, out, lse)

  def flash_bwd(cfg, residuals, do):
    return (*backward(cfg, *residuals, do), None)

  flash.defvjp(flash_fwd, flash_bwd)
  return flash


_flash = flash_custom_vjp(_forward, _backward)


def flash_attention(q, k, v, *, causal=True, segment_ids=None, q_segment_ids=None,
                    kv_segment_ids=None, local_window=None, block_q=128, block_k=128,
                    interpret=None):
  """Attention like kernels.reference.attention_reference (same arguments), in O(seq) memory.

  Blocks shrink to the (8-rounded) query or key length for short sequences; on
  TPU keep them multiples of 128. interpret=None means interpret mode on CPU only.
  """
  q_seg, kv_seg = reference.check_attention_args(
      q, k, causal=causal, segment_ids=segment_ids, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, local_window=local_window)
  cfg = _Config(causal, local_window, min(block_q, _round_up(q.shape[1], 8)),
                min(block_k, _round_up(k.shape[1], 8)), resolve_interpret(interpret))
  return _flash(cfg, q, k, v, None if q_seg is None else (q_seg, kv_seg))
