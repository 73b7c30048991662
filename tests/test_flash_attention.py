"""The Pallas flash-attention kernel against kernels.reference (interpret mode on CPU).

Forward and gradients over causal/dense, segment ids, local windows and lengths
that are not block multiples; the tiny GPT trains identically with it; its
compiled memory grows linearly where the reference's grows quadratically; and
forward and backward lower for TPU on this host.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kernels import flash_attention as fa
from kernels import ops, reference
from lineage.models import gpt


def rel_err(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return np.abs(got - want).max() / np.abs(want).max()


def inputs(shape, dtype, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  q, k, v, cotangent = (jax.random.normal(key, shape, jnp.float32).astype(dtype) for key in keys)
  return q, k, v, cotangent


def packed_segments(batch, length, seed, sort=True):
  """Document ids per position: contiguous runs (packing), or scattered ids when sort=False."""
  ids = np.random.default_rng(seed).integers(0, 4, (batch, length))
  return jnp.asarray(np.sort(ids, axis=1) if sort else ids, jnp.int32)


def out_and_grads(attend, q, k, v, cotangent):
  out, vjp = jax.vjp(attend, q, k, v)
  return (out, *vjp(cotangent))


# (batch, seq, heads, head_dim), causal, local_window, segments, block_q, block_k
CASES = [
    ((2, 64, 2, 16), True, None, None, 32, 32),  # whole blocks
    ((1, 130, 2, 32), True, None, None, 64, 32),  # 130 is no multiple of either block
    ((2, 40, 1, 16), False, None, None, 32, 32),
    ((2, 70, 2, 16), True, 9, None, 32, 32),  # window narrower than a block: skips blocks
    ((1, 100, 2, 16), False, 17, "packed", 32, 64),
    ((2, 90, 1, 32), True, None, "packed", 64, 32),
    ((1, 96, 2, 16), True, 33, "packed", 32, 64),
    ((2, 50, 2, 16), False, None, "scattered", 32, 32),
]


# Every case in fp32; bf16 only where the length is ragged, to keep the file fast.
DTYPED_CASES = ([(*case, jnp.float32, 2e-6) for case in CASES] +
                [(*case, jnp.bfloat16, 2e-2) for case in CASES if case[0][1] % case[5]])


@pytest.mark.parametrize("shape,causal,window,segments,block_q,block_k,dtype,tolerance",
                         DTYPED_CASES)
def test_forward_and_gradients_match_reference(shape, causal, window, segments, block_q, block_k,
                                               dtype, tolerance):
  q, k, v, cotangent = inputs(shape, dtype)
  segment_ids = None if segments is None else packed_segments(shape[0], shape[1], 1,
                                                              sort=segments == "packed")
  mask_args = dict(causal=causal, segment_ids=segment_ids, local_window=window)
  pallas = jax.jit(lambda *a: out_and_grads(
      lambda q, k, v: fa.flash_attention(q, k, v, block_q=block_q, block_k=block_k, **mask_args),
      *a))
  xla = jax.jit(lambda *a: out_and_grads(
      lambda q, k, v: reference.attention_reference(q, k, v, **mask_args), *a))
  for name, got, want in zip(("out", "dq", "dk", "dv"), pallas(q, k, v, cotangent),
                             xla(q, k, v, cotangent)):
    assert got.dtype == dtype
    assert rel_err(got, want) < tolerance, name


def padded_ids(batch, length, seed):
  """Each row real up to a random length (id 1, at least one token), then padding (id 0)."""
  lengths = np.random.default_rng(seed).integers(1, length + 1, batch)
  return jnp.asarray(np.arange(length)[None] < lengths[:, None], jnp.int32)


# (batch, query length, key length, heads, head_dim), segments, block_q, block_k
CROSS_CASES = [
    ((2, 37, 70, 2, 16), "padded", 32, 32),  # no length a block multiple, padding both sides
    ((1, 90, 20, 2, 16), "padded", 64, 32),  # more queries than keys
    ((2, 24, 50, 1, 16), None, 32, 64),
    ((2, 45, 66, 2, 16), "packed", 32, 32),  # ids that differ per sentence pair
]


@pytest.mark.parametrize("shape,segments,block_q,block_k", CROSS_CASES)
def test_cross_attention_forward_and_gradients_match_reference(shape, segments, block_q,
                                                               block_k):
  batch, q_len, kv_len, heads, dim = shape
  q, _, _, cotangent = inputs((batch, q_len, heads, dim), jnp.float32, seed=5)
  _, k, v, _ = inputs((batch, kv_len, heads, dim), jnp.float32, seed=6)
  mask_args = dict(causal=False)
  if segments == "padded":
    mask_args.update(q_segment_ids=padded_ids(batch, q_len, 7),
                     kv_segment_ids=padded_ids(batch, kv_len, 8))
  elif segments == "packed":
    mask_args.update(q_segment_ids=packed_segments(batch, q_len, 7),
                     kv_segment_ids=packed_segments(batch, kv_len, 8))
  pallas = jax.jit(lambda *a: out_and_grads(
      lambda q, k, v: fa.flash_attention(q, k, v, block_q=block_q, block_k=block_k, **mask_args),
      *a))
  xla = jax.jit(lambda *a: out_and_grads(
      lambda q, k, v: reference.attention_reference(q, k, v, **mask_args), *a))
  for name, got, want in zip(("out", "dq", "dk", "dv"), pallas(q, k, v, cotangent),
                             xla(q, k, v, cotangent)):
    assert got.shape == want.shape, name
    assert rel_err(got, want) < 2e-6, name


@pytest.mark.parametrize("causal", [True, False])
def test_window_at_least_the_length_is_dense(causal):
  q, k, v, _ = inputs((2, 45, 2, 16), jnp.float32, seed=2)
  attend = lambda window: fa.flash_attention(q, k, v, causal=causal, local_window=window,
                                             block_q=32, block_k=32)
  dense = attend(None)
  for window in (45, 100):
    np.testing.assert_array_equal(attend(window), dense)
  assert np.abs(attend(44) - dense).max() > 1e-3


@pytest.mark.parametrize("causal,window", [(True, None), (True, 5), (True, 40), (False, 5),
                                           (False, 40), (False, None)])
def test_block_ranges_are_exactly_the_blocks_with_a_visible_key(causal, window):
  """Skipping is both safe (no visible key left out) and complete (no fully masked block run)."""
  block_q, block_k, length = 16, 8, 64
  cfg = fa._Config(causal, window, block_q, block_k, True)
  pos = np.arange(length)
  allowed = np.asarray(reference.attention_mask(pos[None], pos[None], causal=causal,
                                                local_window=window))[0]
  num_q, num_k = length // block_q, length // block_k
  visible = allowed.reshape(num_q, block_q, num_k, block_k).any(axis=(1, 3))
  for i in range(num_q):
    lo, hi = (int(x) for x in fa._kv_blocks(i, cfg, num_k))
    assert [lo <= j < hi for j in range(num_k)] == visible[i].tolist()
  for j in range(num_k):
    lo, hi = (int(x) for x in fa._q_blocks(j, cfg, num_q))
    assert [lo <= i < hi for i in range(num_q)] == visible[:, j].tolist()


def test_ops_dispatches_pallas():
  q, k, v, _ = inputs((1, 24, 2, 8), jnp.float32, seed=3)
  segment_ids = packed_segments(1, 24, 3)
  got = ops.attention(q, k, v, segment_ids=segment_ids, local_window=5, implementation="pallas")
  want = ops.attention(q, k, v, segment_ids=segment_ids, local_window=5, implementation="xla")
  assert rel_err(got, want) < 2e-6


@pytest.mark.slow
def test_tiny_gpt_trains_identically_with_pallas_and_xla():
  def losses(impl):
    cfg = gpt.GPTConfig(vocab_size=64, context=64, num_layers=2, num_heads=2, embed_dim=32,
                        mlp_dim=64, dropout=0.0, local_window=16, attention_impl=impl)
    model = gpt.GPT(cfg)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 64, (4, 65)), jnp.int32)
    segment_ids = packed_segments(4, 64, 4)
    params = model.init(jax.random.PRNGKey(0), tokens[:, :-1])["params"]
    tx = optax.adamw(3e-3)

    @jax.jit
    def step(params, opt_state):
      def loss_fn(params):
        logits = model.apply({"params": params}, tokens[:, :-1], segment_ids=segment_ids)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    opt_state, out = tx.init(params), []
    for _ in range(30):
      params, opt_state, loss = step(params, opt_state)
      out.append(float(loss))
    return np.array(out)

  pallas, xla = losses("pallas"), losses("xla")
  assert xla[-1] < xla[0] - 0.5  # it learns, so the comparison covers moving weights
  np.testing.assert_allclose(pallas, xla, rtol=0, atol=1e-4)


def temp_bytes(attend, length):
  spec = jax.ShapeDtypeStruct((1, length, 1, 64), jnp.float32)
  grads = jax.grad(lambda q, k, v: attend(q, k, v).sum(), argnums=(0, 1, 2))
  return jax.jit(grads).lower(spec, spec, spec).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_memory_grows_linearly_where_the_reference_grows_quadratically():
  """Forward+backward temporaries of the compiled program at 1k, 2k and 4k tokens.

  On CPU this is the interpret-mode program: XLA's loop over the grid, holding
  one block's tiles at a time, so it measures the algorithm's footprint (the
  TPU/GPU on-chip buffers are not visible here).
  """
  lengths = (1024, 2048, 4096)
  pallas = [temp_bytes(fa.flash_attention, n) for n in lengths]
  xla = [temp_bytes(reference.attention_reference, n) for n in lengths]
  for (p0, p1), (x0, x1) in zip(itertools.pairwise(pallas), itertools.pairwise(xla)):
    assert p1 / p0 < 2.5, pallas
    assert x1 / x0 > 3.0, xla
  # A 4k x 4k fp32 score matrix alone is 64 MiB; the flash program stays far below it.
  assert pallas[-1] < 4096 * 4096 * 4 / 4 < xla[-1]


@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_forward_and_backward_lower_for_tpu(segments, cross):
  """Mosaic lowering (block shapes, layouts, primitives) on this host; compiling needs a TPU.
  Cross-attention: 256 queries over 640 keys, dense, with ids of their own."""
  q_len, kv_len = (256, 640) if cross else (384, 384)

  def loss(q, k, v, q_ids, kv_ids):
    q_ids, kv_ids = (q_ids, kv_ids) if segments else (None, None)
    masks = (dict(causal=False, q_segment_ids=q_ids, kv_segment_ids=kv_ids) if cross
             else dict(segment_ids=q_ids, local_window=200))
    out = fa.flash_attention(q, k, v, interpret=False, **masks)
    return out.astype(jnp.float32).sum()

  spec = lambda length: jax.ShapeDtypeStruct((2, length, 2, 128), jnp.bfloat16)
  ids = lambda length: jax.ShapeDtypeStruct((2, length), jnp.int32)
  exported = jax.export.export(jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))),
                               platforms=["tpu"])(
      spec(q_len), spec(kv_len), spec(kv_len), ids(q_len), ids(kv_len))
  assert exported.mlir_module().count("tpu_custom_call") == 3  # forward, dq, dk/dv kernels
