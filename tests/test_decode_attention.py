"""The Pallas KV-cache attention against kernels.reference, alone and inside greedy decoding."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import decode_attention, reference
from lineage import sample
from lineage.models import gpt


def rel_err(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("dtype,tolerance", [(jnp.float32, 2e-6), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("new,local_window", [(1, None), (1, 5), (6, None), (6, 3)])
def test_matches_reference(new, local_window, dtype, tolerance):
  """37 slots in blocks of 8 (ragged); example 1 has invalid slots and one query that sees none."""
  batch, heads, slots, dim = 2, 3, 37, 16
  keys = jax.random.split(jax.random.PRNGKey(new), 3)
  q = jax.random.normal(keys[0], (batch, new, heads, dim)).astype(dtype)
  k_cache, v_cache = (jax.random.normal(key, (batch, heads, slots, dim)).astype(dtype)
                      for key in keys[1:])
  ends = np.array([30, 21])  # each example's queries fill the slots just before its end
  q_slots = jnp.asarray(ends[:, None] - new + np.arange(new)[None, :], jnp.int32)
  valid = np.arange(slots)[None, :] < ends[:, None]
  valid[1, :19] = False  # left padding: with 6 new queries, example 1's first sees no slot
  kv_valid = jnp.asarray(valid)
  got = decode_attention.decode_attention(q, k_cache, v_cache, q_slots=q_slots,
                                          kv_valid=kv_valid, local_window=local_window,
                                          block_s=8)
  want = reference.cached_attention_reference(q, k_cache, v_cache, q_slots=q_slots,
                                              kv_valid=kv_valid, local_window=local_window)
  assert got.dtype == dtype
  assert rel_err(got, want) < tolerance
  if new > 1:
    np.testing.assert_array_equal(got[1, 0], 0.0)


CFG = gpt.GPTConfig(vocab_size=64, context=48, num_layers=2, num_heads=2, embed_dim=32,
                    mlp_dim=64, dropout=0.0, local_window=4)
PROMPTS = [[1, 2, 3], [5], [7, 8, 9, 10, 11, 12, 13], [20, 21]]


def test_greedy_generation_equals_xla_at_every_step(monkeypatch):
  """Prefill (left-padded prompts) and each cached step give the reference's logits and tokens."""
  calls = []
  kernel = decode_attention.decode_attention
  monkeypatch.setattr(decode_attention, "decode_attention",
                      lambda *a, **kw: calls.append(a[0].shape) or kernel(*a, **kw))
  boxed = gpt.GPT(CFG).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  leaves, tree = jax.tree.flatten(nn.unbox(boxed))
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape)
                                     for p, k in zip(leaves, keys)])
  greedy = sample.SamplingConfig(greedy=True)
  decoders = [sample.Decoder(dataclasses.replace(CFG, attention_impl=impl), params, greedy)
              for impl in ("pallas", "xla")]
  tokens, segment_ids, positions = sample.left_pad(PROMPTS, 8)
  states = [d.prefill(params, tokens, segment_ids, positions, 20) for d in decoders]
  done = jnp.zeros((len(PROMPTS),), bool)
  rng = jax.random.PRNGKey(0)
  generated = []
  for _ in range(12):
    (pallas_logits, _, _), (xla_logits, _, _) = states
    assert rel_err(pallas_logits, xla_logits) < 1e-5
    steps = [d.step(params, logits, cache, last, rng, done)
             for d, (logits, cache, last) in zip(decoders, states)]
    np.testing.assert_array_equal(steps[0][0], steps[1][0])
    generated.append(np.asarray(steps[0][0]))
    states = [(logits, cache, last) for _, _, logits, cache, last in steps]
  assert all(len(set(t)) > 2 for t in np.stack(generated, 1).tolist())  # not one repeated token
  # Both layers ran the kernel, for the 8-token prefill and for the 1-token steps.
  assert {shape[1] for shape in calls} == {8, 1} and len(calls) == 4


@pytest.mark.parametrize("new", [1, 8])
def test_lowers_for_tpu(new):
  """Mosaic lowering of a bf16 decoding step and a prefill chunk; compiling needs a TPU."""
  attend = lambda q, k, v, q_slots, kv_valid: decode_attention.decode_attention(
      q, k, v, q_slots=q_slots, kv_valid=kv_valid, local_window=64, interpret=False)
  cache = jax.ShapeDtypeStruct((2, 4, 300, 128), jnp.bfloat16)
  exported = jax.export.export(jax.jit(attend), platforms=["tpu"])(
      jax.ShapeDtypeStruct((2, new, 4, 128), jnp.bfloat16), cache, cache,
      jax.ShapeDtypeStruct((2, new), jnp.int32), jax.ShapeDtypeStruct((2, 300), bool))
  assert exported.mlir_module().count("tpu_custom_call") == 1
