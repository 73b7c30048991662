"""The Pallas KV-cache attention against kernels.reference, alone and inside greedy decoding."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import decode_attention, reference
from lineage import decode
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


@pytest.mark.slow
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
  tokens, segment_ids, positions = decode.left_pad(PROMPTS, 8)
  models = [gpt.GPT(dataclasses.replace(CFG, attention_impl=impl)) for impl in ("pallas", "xla")]
  applies = [jax.jit(functools.partial(m.apply, {"params": params})) for m in models]
  states = [apply(tokens, positions=positions, segment_ids=segment_ids,
                  cache=gpt.init_cache(CFG, len(PROMPTS), 20)) for apply in applies]
  last = positions[:, -1]
  generated = []
  for _ in range(12):
    (pallas_logits, _), (xla_logits, _) = states
    assert rel_err(pallas_logits[:, -1], xla_logits[:, -1]) < 1e-5
    next_tokens = [np.asarray(logits[:, -1].argmax(-1)) for logits, _ in states]
    np.testing.assert_array_equal(next_tokens[0], next_tokens[1])
    generated.append(next_tokens[0])
    last = last + 1
    states = [apply(jnp.asarray(next_tokens[0])[:, None], positions=last[:, None], cache=cache)
              for apply, (_, cache) in zip(applies, states)]
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
