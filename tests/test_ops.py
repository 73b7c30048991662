"""kernels.ops against a naive numpy loop over queries, the definition of attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import ops


def naive_attention(q, k, v, *, causal, segment_ids=None, local_window=None,
                    q_segment_ids=None, kv_segment_ids=None):
  """One query at a time in float64: softmax over the keys it may see, zeros if none."""
  q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
  batch, length, heads, dim = q.shape
  if segment_ids is not None:
    q_segment_ids = kv_segment_ids = segment_ids
  out = np.zeros_like(q)
  for b in range(batch):
    for i in range(length):
      keys = [j for j in range(k.shape[1])
              if (not causal or j <= i)
              and (local_window is None or abs(i - j) < local_window)
              and (q_segment_ids is None or q_segment_ids[b, i] == kv_segment_ids[b, j])]
      if not keys:
        continue
      for h in range(heads):
        scores = k[b, keys, h] @ q[b, i, h] / np.sqrt(dim)
        weights = np.exp(scores - scores.max())
        out[b, i, h] = weights / weights.sum() @ v[b, keys, h]
  return out


def random_qkv(shape, seed=0):
  return [jax.random.normal(key, shape, jnp.float32)
          for key in jax.random.split(jax.random.PRNGKey(seed), 3)]


SHAPES = [(1, 1, 1, 8), (2, 7, 4, 8), (3, 16, 2, 16)]


@pytest.fixture(autouse=True)
def full_float32_matmuls():
  """GPUs multiply float32 in TF32 by default, too coarse for the float64 loop's tolerances."""
  with jax.default_matmul_precision("highest"):
    yield


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("local_window", [None, 1, 3])
def test_xla_matches_naive(shape, causal, local_window):
  q, k, v = random_qkv(shape)
  got = ops.attention(q, k, v, causal=causal, local_window=local_window, implementation="xla")
  want = naive_attention(q, k, v, causal=causal, local_window=local_window)
  np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_segment_ids_keep_documents_apart(causal):
  q, k, v = random_qkv((2, 12, 3, 8), seed=1)
  segment_ids = np.array([[1] * 5 + [2] * 4 + [0] * 3, [1] * 2 + [2] * 2 + [3] * 8])
  got = ops.attention(q, k, v, causal=causal, segment_ids=jnp.asarray(segment_ids),
                      local_window=None if causal else 4, implementation="xla")
  want = naive_attention(q, k, v, causal=causal, segment_ids=segment_ids,
                         local_window=None if causal else 4)
  np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_window_at_least_the_length_is_dense(causal):
  q, k, v = random_qkv((2, 9, 2, 8), seed=2)
  dense = ops.attention(q, k, v, causal=causal, implementation="xla")
  for window in (9, 50):
    np.testing.assert_array_equal(
        ops.attention(q, k, v, causal=causal, local_window=window, implementation="xla"), dense)
  narrower = ops.attention(q, k, v, causal=causal, local_window=8, implementation="xla")
  assert np.abs(narrower - dense).max() > 1e-3


def padding_ids(lengths, length):
  """[batch, length] ids: 1 on each row's first `lengths[row]` positions, 0 on the padding."""
  return jnp.asarray(np.arange(length)[None] < np.asarray(lengths)[:, None], jnp.int32)


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_cross_attention_matches_naive(implementation):
  """Queries and keys of different lengths, both padded, and packed pairs of sentences."""
  q = random_qkv((3, 5, 2, 8), seed=6)[0]
  k, v = random_qkv((3, 11, 2, 8), seed=7)[:2]
  q_ids = padding_ids([5, 3, 1], 5).at[1, 2].set(2)  # row 1 packs two target sentences
  kv_ids = padding_ids([11, 6, 2], 11).at[1, 4:6].set(2)  # ... over their two sources
  got = ops.attention(q, k, v, causal=False, q_segment_ids=q_ids, kv_segment_ids=kv_ids,
                      implementation=implementation)
  want = naive_attention(q, k, v, causal=False, q_segment_ids=np.asarray(q_ids),
                         kv_segment_ids=np.asarray(kv_ids))
  np.testing.assert_allclose(got, want, atol=2e-5)
  unmasked = ops.attention(q, k, v, causal=False, implementation=implementation)
  np.testing.assert_allclose(unmasked, naive_attention(q, k, v, causal=False), atol=2e-5)


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_padded_keys_change_nothing(implementation):
  """A query over real keys plus padding (holding anything) equals it over the real keys."""
  q = random_qkv((1, 4, 2, 8), seed=8)[0]
  k, v = random_qkv((1, 6, 2, 8), seed=9)[:2]
  pad = lambda t: jnp.concatenate([t, jnp.full((1, 7, 2, 8), 1e3)], axis=1)
  got = ops.attention(q, pad(k), pad(v), causal=False, q_segment_ids=jnp.ones((1, 4), jnp.int32),
                      kv_segment_ids=padding_ids([6], 13), implementation=implementation)
  want = ops.attention(q, k, v, causal=False, implementation=implementation)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_mask_arguments_that_do_not_fit_are_errors():
  q = random_qkv((1, 4, 1, 8))[0]
  k, v = random_qkv((1, 6, 1, 8))[:2]
  ids4, ids6 = jnp.ones((1, 4), jnp.int32), jnp.ones((1, 6), jnp.int32)
  with pytest.raises(ValueError, match="causal=False"):
    ops.attention(q, k, v, implementation="xla")
  with pytest.raises(ValueError, match="causal=False"):
    ops.attention(q, k, v, causal=False, local_window=2, implementation="pallas")
  with pytest.raises(ValueError, match="come together"):
    ops.attention(q, k, v, causal=False, kv_segment_ids=ids6, implementation="xla")
  with pytest.raises(ValueError, match="not both"):
    ops.attention(q, q, q, segment_ids=ids4, q_segment_ids=ids4, kv_segment_ids=ids4)
  with pytest.raises(ValueError, match=r"kv_segment_ids must be \[batch, length\]"):
    ops.attention(q, k, v, causal=False, q_segment_ids=ids4, kv_segment_ids=ids4)


def test_auto_on_cpu_is_xla():
  q, k, v = random_qkv((2, 6, 2, 8), seed=3)
  xla = ops.attention(q, k, v, implementation="xla")
  np.testing.assert_array_equal(ops.attention(q, k, v), xla)


def test_auto_on_tpu_stays_on_xla_until_pallas_ran_there(monkeypatch):
  monkeypatch.setattr(ops.jax, "default_backend", lambda: "tpu")
  assert ops._resolve("auto", None, jnp.float32) == "xla"
  assert ops._resolve("auto", jnp.ones((1, 8), jnp.int32), jnp.bfloat16) == "xla"
  assert ops._resolve("pallas", None, jnp.bfloat16) == "pallas"


def test_pallas_on_gpu_is_a_clear_error(monkeypatch):
  """Pallas's GPU backend cannot lower the kernels, so say which implementations to use."""
  monkeypatch.setattr(ops.jax, "default_backend", lambda: "gpu")
  q, k, v = random_qkv((1, 8, 2, 16))
  with pytest.raises(NotImplementedError, match="cudnn"):
    ops.attention(q, k, v, implementation="pallas")
  with pytest.raises(NotImplementedError, match="cross-attention"):
    ops.attention(q, k[:, :5], v[:, :5], causal=False, implementation="pallas")
  with pytest.raises(NotImplementedError, match="cudnn"):
    ops.cached_attention(q, k, v, q_slots=jnp.zeros((1, 8), jnp.int32),
                         kv_valid=jnp.ones((1, 8), bool), implementation="pallas")


def test_auto_on_gpu_sends_only_half_precision_without_segments_to_cudnn(monkeypatch):
  """cuDNN rejects float32 and segment ids, so auto must keep those on xla."""
  backend = jax.default_backend()  # the real one: the patch below makes every backend a GPU
  monkeypatch.setattr(ops.jax, "default_backend", lambda: "gpu")
  q, k, v = random_qkv((1, 8, 2, 16), seed=3)
  xla = ops.attention(q, k, v, implementation="xla")
  np.testing.assert_array_equal(ops.attention(q, k, v), xla)
  segment_ids = jnp.ones((1, 8), jnp.int32)
  np.testing.assert_array_equal(ops.attention(q, k, v, segment_ids=segment_ids), xla)
  half = [t.astype(jnp.bfloat16) for t in (q, k, v)]
  if backend == "gpu":
    got = ops.attention(*half).astype(jnp.float32)
    np.testing.assert_array_equal(got, ops.attention(*half, implementation="cudnn")
                                  .astype(jnp.float32))
    np.testing.assert_allclose(got, naive_attention(*half, causal=True), atol=2e-2)
  else:  # auto chose cudnn, which this host cannot run
    with pytest.raises(RuntimeError, match="cuDNN"):
      ops.attention(*half)


@pytest.mark.slow
def test_fully_masked_rows_give_zeros_and_finite_gradients():
  q, k, v = random_qkv((2, 3, 2, 8), seed=4)
  kv_valid = jnp.array([[True, True, False], [False, False, False]])
  q_slots = jnp.broadcast_to(jnp.arange(3), (2, 3))

  def attend(q, k, v):
    heads_first = lambda t: t.transpose(0, 2, 1, 3)
    return ops.cached_attention(q, heads_first(k), heads_first(v), q_slots=q_slots,
                                kv_valid=kv_valid, implementation="xla")

  out = attend(q, k, v)
  np.testing.assert_array_equal(out[1], 0.0)
  np.testing.assert_array_equal(out[0, 0] == 0.0, False)
  grads = jax.grad(lambda *a: attend(*a).sum(), argnums=(0, 1, 2))(q, k, v)
  assert all(np.isfinite(g).all() for g in grads)


def test_unknown_implementation_names_the_valid_ones():
  q, k, v = random_qkv((1, 4, 1, 8))
  with pytest.raises(ValueError, match="auto, xla, pallas, cudnn"):
    ops.attention(q, k, v, implementation="flash")
  with pytest.raises(ValueError, match="auto, xla, pallas, cudnn"):
    ops.cached_attention(q, k, v, q_slots=jnp.zeros((1, 4), jnp.int32),
                         kv_valid=jnp.ones((1, 4), bool), implementation="flash")


def test_cudnn_is_right_on_gpu_and_an_error_elsewhere():
  q, k, v = (t.astype(jnp.bfloat16) for t in random_qkv((1, 8, 2, 16)))
  if jax.default_backend() == "gpu":
    got = ops.attention(q, k, v, local_window=3, implementation="cudnn")
    np.testing.assert_allclose(got.astype(jnp.float32), naive_attention(q, k, v, causal=True,
                                                                        local_window=3), atol=2e-2)
    cross = ops.attention(q[:, :3], k, v, causal=False, implementation="cudnn")
    np.testing.assert_allclose(cross.astype(jnp.float32),
                               naive_attention(q[:, :3], k, v, causal=False), atol=2e-2)
  else:
    with pytest.raises(RuntimeError, match="cuDNN"):
      ops.attention(q, k, v, implementation="cudnn")


def test_cudnn_refuses_segment_ids():
  q, k, v = random_qkv((1, 4, 1, 8))
  with pytest.raises(ValueError, match="segment_ids"):
    ops.attention(q, k, v, segment_ids=jnp.ones((1, 4), jnp.int32), implementation="cudnn")
  with pytest.raises(ValueError, match="segment_ids"):
    ops.attention(q, k, v, causal=False, q_segment_ids=jnp.ones((1, 4), jnp.int32),
                  kv_segment_ids=jnp.ones((1, 4), jnp.int32), implementation="cudnn")


# A GPU has no Pallas decode kernel: test_pallas_on_gpu_is_a_clear_error covers that case.
CACHED_IMPLEMENTATIONS = ["xla"] + (["pallas"] if jax.default_backend() != "gpu" else [])


@pytest.mark.parametrize("implementation", CACHED_IMPLEMENTATIONS)
@pytest.mark.parametrize("local_window", [None, 2])
def test_cached_attention_equals_attention_on_the_filled_prefix(local_window, implementation):
  batch, slots, filled, new = 2, 10, 7, 3
  q, k, v = random_qkv((batch, slots, 2, 8), seed=5)
  full = ops.attention(q[:, :filled], k[:, :filled], v[:, :filled], local_window=local_window,
                       implementation="xla")
  # Slots past the prefix hold garbage that kv_valid must hide.
  k_cache, v_cache = (t.transpose(0, 2, 1, 3) for t in (k.at[:, filled:].set(50.0),
                                                        v.at[:, filled:].set(1e3)))
  got = ops.cached_attention(
      q[:, filled - new:filled], k_cache, v_cache,
      q_slots=jnp.broadcast_to(jnp.arange(filled - new, filled), (batch, new)),
      kv_valid=jnp.broadcast_to(jnp.arange(slots) < filled, (batch, slots)),
      local_window=local_window, implementation=implementation)
  np.testing.assert_allclose(got, full[:, filled - new:], atol=1e-5)
