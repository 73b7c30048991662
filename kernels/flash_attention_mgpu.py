"""Flash attention for Hopper GPUs, written for Pallas's Mosaic GPU backend.

Our TPU-shaped kernel (kernels.flash_attention) does not lower with Mosaic GPU,
whose matmuls are warpgroup MMAs (wgmma) on swizzled shared-memory tiles fed by
TMA copies, and jax's own Hopper kernel (jax.experimental.pallas.ops.gpu.
attention_mgpu) keeps its tiles in float16 only and has no causal backward. So
this module holds the same algorithm in Mosaic GPU's terms: one warpgroup per
tile of block_q queries (or block_kv keys), `plgpu.emit_pipeline` streaming the
other side's tiles from global to shared memory by TMA while the previous tile
is computed on, an online softmax in fp32 (base 2, the scale folded into the
exponent), and a backward in two kernels (dq per query tile, dk and dv per key
tile) that recompute the probabilities from the saved log-sum-exp. Causality
and the local window set each pipeline's (dynamic) start and length, so fully
masked tiles are never loaded. The kernels are written for Lane semantics
(registers with explicit layouts), which they request by name: jax 0.11 made
Warpgroup semantics the default.

The kernels run on CPU in jax's GPU interpreter (a simulator of shared memory,
TMA, barriers and wgmma), which is how tests/test_flash_attention_gpu.py checks
their numbers, and lower for CUDA on a CPU host through jax.export. Staying
interpretable costs some speed (see _matmul); FlashAttention-3's producer
warpgroup and ping-pong scheduling are not here either: both are what to try
if experiments/gpu_check.sh shows the kernel short of cuDNN.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from kernels import flash_attention

_LOG2E = math.log2(math.e)
_MASKED = -1e30  # finite: a tile a row cannot see gives exp2(0) terms that alpha=0 later erases
_SWIZZLE_BYTES = 128
SUPPORTED_DTYPES = (jnp.bfloat16, jnp.float16)


class _Config(NamedTuple):
  causal: bool
  local_window: int | None
  block_q: int
  block_kv: int
  max_concurrent_steps: int
  interpret: object  # None, or plgpu's InterpretGPUParams to run on CPU


def check_supported(q, k, v, *, segment_ids, block_q, block_kv):
  """Raises NotImplementedError, naming what to use instead, for inputs the kernel cannot take."""
  problems = []
  if not q.shape == k.shape == v.shape or q.ndim != 4:
    problems.append(f"q, k, v must share one [batch, seq, heads, head_dim] shape, got "
                    f"{q.shape}, {k.shape}, {v.shape}")
  if not q.dtype == k.dtype == v.dtype or q.dtype not in SUPPORTED_DTYPES:
    problems.append(f"dtype must be bfloat16 or float16 (wgmma operands), got "
                    f"{q.dtype}, {k.dtype}, {v.dtype}")
  head_dim_multiple = _SWIZZLE_BYTES // jnp.dtype(q.dtype).itemsize
  if q.shape[-1] % head_dim_multiple:
    problems.append(f"head_dim {q.shape[-1]} must be a multiple of {head_dim_multiple} "
                    "(one 128-byte swizzled row)")
  if block_q % 64 or block_kv % 64:
    problems.append(f"block_q {block_q} and block_kv {block_kv} must be multiples of 64 "
                    "(the rows of one warpgroup MMA)")
  elif q.ndim == 4 and q.shape[1] % math.lcm(block_q, block_kv):
    problems.append(f"sequence length {q.shape[1]} must be a multiple of block_q {block_q} "
                    f"and block_kv {block_kv}")
  if segment_ids is not None and segment_ids.shape != q.shape[:2]:
    problems.append(f"segment_ids must be [batch, seq] = {q.shape[:2]}, got {segment_ids.shape}")
  if problems:
    raise NotImplementedError(
        "the Mosaic GPU flash attention cannot take these inputs: " + "; ".join(problems)
        + ". Use implementation='cudnn' (bf16/fp16, no segment_ids) or 'xla'.")


def _tile_transforms(dtype):
  return (plgpu.TilingTransform((8, _SWIZZLE_BYTES // jnp.dtype(dtype).itemsize)),
          plgpu.SwizzleTransform(_SWIZZLE_BYTES))


def _kv_range(q_tile, cfg, num_kv_tiles):
  """[first, end) key tiles that some query of tile `q_tile` may see."""
  first_q = q_tile * cfg.block_q
  last_q = first_q + cfg.block_q - 1
  first, end = 0, num_kv_tiles
  if cfg.local_window is not None:
    first = lax.div(jnp.maximum(first_q - cfg.local_window + 1, 0), cfg.block_kv)
    if not cfg.causal:
      end = jnp.minimum(lax.div(last_q + cfg.local_window - 1, cfg.block_kv) + 1, num_kv_tiles)
  if cfg.causal:
    end = lax.div(last_q, cfg.block_kv) + 1
  return jnp.asarray(first, jnp.int32), jnp.asarray(end, jnp.int32)


def _q_range(kv_tile, cfg, num_q_tiles):
  """[first, end) query tiles with some query that sees a key of tile `kv_tile`."""
  first_kv = kv_tile * cfg.block_kv
  last_kv = first_kv + cfg.block_kv - 1
  first, end = 0, num_q_tiles
  if cfg.causal:
    first = lax.div(first_kv, cfg.block_q)
  if cfg.local_window is not None:
    end = jnp.minimum(lax.div(last_kv + cfg.local_window - 1, cfg.block_q) + 1, num_q_tiles)
    if not cfg.causal:
      first = lax.div(jnp.maximum(first_kv - cfg.local_window + 1, 0), cfg.block_q)
  return jnp.asarray(first, jnp.int32), jnp.asarray(end, jnp.int32)


def _visible(q_start, kv_start, shape, cfg, q_seg, kv_seg, *, q_axis):
  """Boolean tile in WGMMA layout, True where the query may see the key (None: all may).

  q_axis is 0 for [query, key] tiles (forward, dq) and 1 for [key, query] tiles (dk, dv).
  Segment ids arrive as 1-D vectors laid out along their own axis of the tile.
  """
  q_pos = q_start + plgpu.broadcasted_iota(jnp.int32, shape, q_axis, layout=plgpu.Layout.WGMMA)
  kv_pos = kv_start + plgpu.broadcasted_iota(jnp.int32, shape, 1 - q_axis,
                                             layout=plgpu.Layout.WGMMA)
  masks = []
  if cfg.causal:
    masks.append(q_pos >= kv_pos)
  if cfg.local_window is not None:
    masks.append(q_pos - kv_pos < cfg.local_window)
    if not cfg.causal:
      masks.append(kv_pos - q_pos < cfg.local_window)
  if q_seg is not None:
    masks.append(lax.broadcast_in_dim(q_seg, shape, [q_axis])
                 == lax.broadcast_in_dim(kv_seg, shape, [1 - q_axis]))
  return functools.reduce(jnp.logical_and, masks) if masks else None


def _mask_scores(scores, q_start, kv_start, cfg, q_seg, kv_seg, *, q_axis):
  """Sets the scores a query may not see to _MASKED."""
  visible = _visible(q_start, kv_start, scores.shape, cfg, q_seg, kv_seg, q_axis=q_axis)
  return scores if visible is None else jnp.where(visible, scores, _MASKED)


def _matmul(shape, lhs, rhs):
  """lhs @ rhs (shared-memory tiles) into fresh fp32 registers in WGMMA layout.

  Accumulators stay plain loop carries (`acc + _matmul(...)`) and register
  operands are staged through shared memory (`_stage`): jax's GPU interpreter
  runs neither pl.run_state nor register-operand wgmma, and the tests need it.
  """
  def run(acc_ref):
    plgpu.wgmma(acc_ref, lhs, rhs)
    return acc_ref[...]
  return pl.run_scoped(run, plgpu.ACC(shape, jnp.float32))


def _stage(smem, x):
  """Stores registers into a shared-memory tile and fences them for the next wgmma."""
  smem[...] = x.astype(smem.dtype)
  plgpu.commit_smem()
  return smem


def _zeros(shape):
  return plgpu.layout_cast(jnp.zeros(shape, jnp.float32), plgpu.Layout.WGMMA)


def _rows(ref):
  """A [n] shared-memory vector laid out along the rows of a WGMMA tile."""
  return plgpu.layout_cast(ref[...], plgpu.Layout.WGMMA.reduce(1))


def _cols(ref):
  """A [n] shared-memory vector laid out along the columns of a WGMMA tile."""
  return plgpu.layout_cast(ref[...], plgpu.Layout.WGMMA.reduce(0))


def _load_tiles(copies):
  """TMA-copies (gmem, smem) pairs and waits for all of them."""
  def run(barriers):
    for i, (src, dst) in enumerate(copies):
      plgpu.copy_gmem_to_smem(src, dst, barriers.at[i])
    for i in range(len(copies)):
      plgpu.barrier_wait(barriers.at[i])
  pl.run_scoped(run, plgpu.Barrier(num_barriers=len(copies)))


def _store_tiles(copies):
  """Copies (smem, gmem) pairs out after making the register stores to smem visible to TMA."""
  plgpu.commit_smem()
  for src, dst in copies:
    plgpu.copy_smem_to_gmem(src, dst, commit_group=False)
  plgpu.commit_smem_to_gmem_group()
  plgpu.wait_smem_to_gmem(0)


def _seq_spec(block, first, width=None, transforms=()):
  """Pipeline BlockSpec over [block(, width)] tiles of a [seq(, width)] ref, from tile `first`."""
  if width is None:
    return plgpu.BlockSpec(block_shape=(block,), index_map=lambda i: (first + i,))
  return plgpu.BlockSpec(block_shape=(block, width), index_map=lambda i: (first + i, 0),
                         transforms=transforms)


def _kv_stream(cfg, first, batch, head, head_dim, dtype, k_ref, v_ref, seg_ref):
  """Pipeline specs and operands for the key tiles [first, ...) of one (batch, head)."""
  specs = [_seq_spec(cfg.block_kv, first, head_dim, _tile_transforms(dtype))] * 2
  operands = [k_ref.at[batch, :, head], v_ref.at[batch, :, head]]
  if seg_ref is not None:
    specs.append(_seq_spec(cfg.block_kv, first))
    operands.append(seg_ref.at[batch])
  return specs, operands


def _split_step_refs(refs, has_segments):
  """(segment tile or None, carry) from a pipeline step's trailing arguments."""
  return (refs[0], refs[1]) if has_segments else (None, refs[0])


def _forward_kernel(cfg, q_ref, k_ref, v_ref, seg_ref, out_ref, lse_ref,
                    q_smem, p_smem, lse_smem, seg_smem):
  batch, head, q_tile = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("q")
  head_dim = q_ref.shape[-1]
  q_start = q_tile * cfg.block_q
  rows = pl.ds(q_start, cfg.block_q)
  has_segments = seg_ref is not None
  _load_tiles([(q_ref.at[batch, rows, head], q_smem)]
              + ([(seg_ref.at[batch, rows], seg_smem)] if has_segments else []))
  q_seg = _rows(seg_smem) if has_segments else None
  scale = head_dim ** -0.5 * _LOG2E
  first, end = _kv_range(q_tile, cfg, k_ref.shape[1] // cfg.block_kv)

  def step(indices, k_smem, v_smem, *rest):
    kv_seg_smem, (acc, m, l) = _split_step_refs(rest, has_segments)
    kv_start = (first + indices[0]) * cfg.block_kv
    kv_seg = _cols(kv_seg_smem) if has_segments else None
    scores = _matmul(p_smem.shape, q_smem, plgpu.transpose_ref(k_smem, (1, 0))) * scale
    scores = _mask_scores(scores, q_start, kv_start, cfg, q_seg, kv_seg, q_axis=0)
    m_new = jnp.maximum(m, scores.max(axis=1))
    alpha = jnp.exp2(m - m_new)
    p = jnp.exp2(scores - lax.broadcast_in_dim(m_new, scores.shape, [0]))
    l = l * alpha + p.sum(axis=1)
    acc = acc * lax.broadcast_in_dim(alpha, acc.shape, [0])
    acc = acc + _matmul(acc.shape, _stage(p_smem, p), v_smem)
    return acc, m_new, l

  row_layout = plgpu.Layout.WGMMA.reduce(1)
  init = (_zeros((cfg.block_q, head_dim)),
          plgpu.layout_cast(jnp.full((cfg.block_q,), -jnp.inf, jnp.float32), row_layout),
          plgpu.layout_cast(jnp.zeros((cfg.block_q,), jnp.float32), row_layout))
  specs, operands = _kv_stream(cfg, first, batch, head, head_dim, q_ref.dtype, k_ref, v_ref,
                               seg_ref)
  acc, m, l = plgpu.emit_pipeline(step, grid=(end - first,), in_specs=specs,
                                  max_concurrent_steps=cfg.max_concurrent_steps,
                                  init_carry=init)(*operands)
  q_smem[...] = (acc / lax.broadcast_in_dim(l, acc.shape, [0])).astype(q_smem.dtype)
  lse_smem[...] = m + jnp.log2(l)  # base 2, in units of the scaled scores
  _store_tiles([(q_smem, out_ref.at[batch, rows, head]),
                (lse_smem, lse_ref.at[batch, head, rows])])


def _dq_kernel(cfg, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, seg_ref, dq_ref,
               q_smem, do_smem, ds_smem, lse_smem, delta_smem, seg_smem):
  batch, head, q_tile = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("q")
  head_dim = q_ref.shape[-1]
  q_start = q_tile * cfg.block_q
  rows = pl.ds(q_start, cfg.block_q)
  has_segments = seg_ref is not None
  _load_tiles([(q_ref.at[batch, rows, head], q_smem), (do_ref.at[batch, rows, head], do_smem),
               (lse_ref.at[batch, head, rows], lse_smem),
               (delta_ref.at[batch, head, rows], delta_smem)]
              + ([(seg_ref.at[batch, rows], seg_smem)] if has_segments else []))
  lse, delta = _rows(lse_smem), _rows(delta_smem)
  q_seg = _rows(seg_smem) if has_segments else None
  scale = head_dim ** -0.5
  first, end = _kv_range(q_tile, cfg, k_ref.shape[1] // cfg.block_kv)
  shape = ds_smem.shape

  def step(indices, k_smem, v_smem, *rest):
    kv_seg_smem, dq = _split_step_refs(rest, has_segments)
    kv_start = (first + indices[0]) * cfg.block_kv
    kv_seg = _cols(kv_seg_smem) if has_segments else None
    scores = _matmul(shape, q_smem, plgpu.transpose_ref(k_smem, (1, 0))) * (scale * _LOG2E)
    scores = _mask_scores(scores, q_start, kv_start, cfg, q_seg, kv_seg, q_axis=0)
    p = jnp.exp2(scores - lax.broadcast_in_dim(lse, shape, [0]))
    dp = _matmul(shape, do_smem, plgpu.transpose_ref(v_smem, (1, 0)))
    ds = p * (dp - lax.broadcast_in_dim(delta, shape, [0]))
    return dq + _matmul(dq.shape, _stage(ds_smem, ds), k_smem)

  specs, operands = _kv_stream(cfg, first, batch, head, head_dim, q_ref.dtype, k_ref, v_ref,
                               seg_ref)
  dq = plgpu.emit_pipeline(step, grid=(end - first,), in_specs=specs,
                           max_concurrent_steps=cfg.max_concurrent_steps,
                           init_carry=_zeros((cfg.block_q, head_dim)))(*operands)
  q_smem[...] = (dq * scale).astype(q_smem.dtype)
  _store_tiles([(q_smem, dq_ref.at[batch, rows, head])])


def _dkv_kernel(cfg, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, seg_ref, dk_ref, dv_ref,
                k_smem, v_smem, ds_smem, seg_smem):
  batch, head, kv_tile = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("kv")
  head_dim = q_ref.shape[-1]
  kv_start = kv_tile * cfg.block_kv
  rows = pl.ds(kv_start, cfg.block_kv)
  has_segments = seg_ref is not None
  _load_tiles([(k_ref.at[batch, rows, head], k_smem), (v_ref.at[batch, rows, head], v_smem)]
              + ([(seg_ref.at[batch, rows], seg_smem)] if has_segments else []))
  kv_seg = _rows(seg_smem) if has_segments else None
  scale = head_dim ** -0.5
  first, end = _q_range(kv_tile, cfg, q_ref.shape[1] // cfg.block_q)
  shape = ds_smem.shape  # [key, query]: the transposed scores

  def step(indices, q_smem, do_smem, lse_smem, delta_smem, *rest):
    q_seg_smem, (dk, dv) = _split_step_refs(rest, has_segments)
    q_start = (first + indices[0]) * cfg.block_q
    q_seg = _cols(q_seg_smem) if has_segments else None
    scores_t = _matmul(shape, k_smem, plgpu.transpose_ref(q_smem, (1, 0))) * (scale * _LOG2E)
    scores_t = _mask_scores(scores_t, q_start, kv_start, cfg, q_seg, kv_seg, q_axis=1)
    p_t = jnp.exp2(scores_t - lax.broadcast_in_dim(_cols(lse_smem), shape, [1]))
    dp_t = _matmul(shape, v_smem, plgpu.transpose_ref(do_smem, (1, 0)))
    ds_t = p_t * (dp_t - lax.broadcast_in_dim(_cols(delta_smem), shape, [1]))
    dv = dv + _matmul(dv.shape, _stage(ds_smem, p_t), do_smem)
    dk = dk + _matmul(dk.shape, _stage(ds_smem, ds_t), q_smem)
    return dk, dv

  tile = _tile_transforms(q_ref.dtype)
  specs = [_seq_spec(cfg.block_q, first, head_dim, tile)] * 2 + [_seq_spec(cfg.block_q, first)] * 2
  operands = [q_ref.at[batch, :, head], do_ref.at[batch, :, head],
              lse_ref.at[batch, head], delta_ref.at[batch, head]]
  if has_segments:
    specs.append(_seq_spec(cfg.block_q, first))
    operands.append(seg_ref.at[batch])
  zeros = _zeros((cfg.block_kv, head_dim))
  dk, dv = plgpu.emit_pipeline(step, grid=(end - first,), in_specs=specs,
                               max_concurrent_steps=cfg.max_concurrent_steps,
                               init_carry=(zeros, zeros))(*operands)
  k_smem[...] = (dk * scale).astype(k_smem.dtype)
  v_smem[...] = dv.astype(v_smem.dtype)
  _store_tiles([(k_smem, dk_ref.at[batch, rows, head]), (v_smem, dv_ref.at[batch, rows, head])])


def _tile_smem(rows, cols, dtype):
  return plgpu.SMEM((rows, cols), dtype, transforms=_tile_transforms(dtype))


def _launch(kernel, cfg, tiles_name, num_tiles, q, segment_ids, out_type, scratch, operands):
  """Runs `kernel` once per (head, tile, batch); segment ids (or None) come after `operands`."""
  batch, _, heads, _ = q.shape
  has_segments = segment_ids is not None
  block = cfg.block_q if tiles_name == "q" else cfg.block_kv
  segment_scratch = plgpu.SMEM((block,), jnp.int32) if has_segments else None

  def body(*refs):
    # Kernels take (inputs, segment ids, outputs, scratch, segment scratch), None when absent.
    *refs, seg_smem = refs if has_segments else (*refs, None)
    seg_ref = refs[len(operands)] if has_segments else None
    kernel(cfg, *refs[:len(operands)], seg_ref, *refs[len(operands) + has_segments:], seg_smem)

  return plgpu.kernel(body, out_type=out_type,
                      scratch_types=tuple(scratch) + ((segment_scratch,) if has_segments else ()),
                      grid=(heads, num_tiles, batch), grid_names=("heads", tiles_name, "batch"),
                      compiler_params=plgpu.CompilerParams(
                          approx_math=True, lowering_semantics=plgpu.LoweringSemantics.Lane),
                      interpret=cfg.interpret)(*operands,
                                               *((segment_ids,) if has_segments else ()))


def _forward(cfg, q, k, v, segment_ids):
  batch, length, heads, head_dim = q.shape
  out_type = (jax.ShapeDtypeStruct(q.shape, q.dtype),
              jax.ShapeDtypeStruct((batch, heads, length), jnp.float32))
  scratch = (_tile_smem(cfg.block_q, head_dim, q.dtype),
             _tile_smem(cfg.block_q, cfg.block_kv, q.dtype),
             plgpu.SMEM((cfg.block_q,), jnp.float32))
  return _launch(_forward_kernel, cfg, "q", length // cfg.block_q, q, segment_ids, out_type,
                 scratch, (q, k, v))


def _backward(cfg, q, k, v, segment_ids, out, lse, do):
  _, length, _, head_dim = q.shape
  # delta_i = sum_d dO_id O_id: the row term of softmax's Jacobian, shared by both kernels.
  delta = jnp.einsum("bthd,bthd->bht", out.astype(jnp.float32), do.astype(jnp.float32))
  operands = (q, k, v, do, lse, delta)
  grad_type = jax.ShapeDtypeStruct(q.shape, q.dtype)
  row_vector = plgpu.SMEM((cfg.block_q,), jnp.float32)
  dq = _launch(_dq_kernel, cfg, "q", length // cfg.block_q, q, segment_ids, grad_type,
               (_tile_smem(cfg.block_q, head_dim, q.dtype),
                _tile_smem(cfg.block_q, head_dim, q.dtype),
                _tile_smem(cfg.block_q, cfg.block_kv, q.dtype), row_vector, row_vector),
               operands)
  dk, dv = _launch(_dkv_kernel, cfg, "kv", length // cfg.block_kv, q, segment_ids,
                   (grad_type, grad_type),
                   (_tile_smem(cfg.block_kv, head_dim, q.dtype),
                    _tile_smem(cfg.block_kv, head_dim, q.dtype),
                    _tile_smem(cfg.block_kv, cfg.block_q, q.dtype)), operands)
  return dq, dk, dv


_flash = flash_attention.flash_custom_vjp(_forward, _backward)


def flash_attention_mgpu(q, k, v, *, causal=True, segment_ids=None, local_window=None,
                         block_q=64, block_kv=64, max_concurrent_steps=2, interpret=None):
  """Flash attention on Hopper, q/k/v [batch, seq, heads, head_dim] in bf16 or fp16.

  Same masks as kernels.reference.attention_reference. `interpret` takes
  plgpu's InterpretGPUParams to run the kernels on CPU (slow: for tests).
  """
  check_supported(q, k, v, segment_ids=segment_ids, block_q=block_q, block_kv=block_kv)
  if local_window is not None and local_window < 1:
    raise ValueError(f"local_window must be at least 1, got {local_window}")
  if max_concurrent_steps < 1:
    raise ValueError(f"max_concurrent_steps must be at least 1, got {max_concurrent_steps}")
  cfg = _Config(causal, local_window, block_q, block_kv, max_concurrent_steps, interpret)
  if segment_ids is not None:
    segment_ids = segment_ids.astype(jnp.int32)
  return _flash(cfg, q, k, v, segment_ids)
