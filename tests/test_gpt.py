"""The GPT family against published sizes and a forward pass written out by hand in numpy."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lineage.models import gpt

TINY = gpt.GPTConfig(vocab_size=97, context=32, num_layers=2, num_heads=4, embed_dim=32,
                     mlp_dim=128, dropout=0.0)


def init(cfg, seed=0, length=8):
  return gpt.GPT(cfg).init(jax.random.PRNGKey(seed), jnp.zeros((1, length), jnp.int32))["params"]


def perturbed(params, seed=1, scale=0.2):
  """Unboxed params with every leaf moved off its initial value, so no weight is trivial."""
  params = nn.unbox(params)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
      tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def apply(cfg, params, tokens, **kw):
  return gpt.GPT(cfg).apply({"params": params}, jnp.asarray(tokens), **kw)


def tokens_of(batch, length, vocab, seed=0):
  return np.random.default_rng(seed).integers(0, vocab, (batch, length)).astype(np.int32)


# A forward pass written from the papers, in float64 numpy, sharing nothing with the model.

def _np(params):
  return jax.tree.map(lambda p: np.asarray(p, np.float64), nn.unbox(params))


def _layer_norm(x, p, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _dense(x, p):
  return x @ p["kernel"] + p["bias"]


def _attention(x, p, heads, window, segment_ids):
  length, dim = x.shape
  q, k, v = np.split(_dense(x, p["c_attn"]), 3, axis=-1)
  head_dim = q.shape[-1] // heads
  out = np.zeros_like(q)
  for i in range(length):
    keys = [j for j in range(i + 1) if (window is None or i - j < window)
            and (segment_ids is None or segment_ids[i] == segment_ids[j])]
    for h in range(heads):
      cols = slice(h * head_dim, (h + 1) * head_dim)
      scores = k[keys, cols] @ q[i, cols] / math.sqrt(head_dim)
      weights = np.exp(scores - scores.max())
      out[i, cols] = weights / weights.sum() @ v[keys, cols]
  return _dense(out, p["c_proj"])


def hand_hidden(cfg, params, tokens, positions=None, segment_ids=None):
  """Final hidden states [length, embed] of one sequence: GPT-2 pre-LN, or GPT-1 post-LN when
  not cfg.pre_ln."""
  p = _np(params)
  positions = np.arange(len(tokens)) if positions is None else positions
  x = p["wte"]["embedding"][tokens] + p["wpe"]["embedding"][positions]
  for i in range(cfg.num_layers):
    block = p[f"h_{i}"]
    window = cfg.local_window if cfg.local_window and i % 2 == 1 else None
    attend = lambda h: _attention(h, block["attn"], cfg.num_heads, window, segment_ids)
    mlp = lambda h: _dense(_gelu_tanh(_dense(h, block["mlp"]["c_fc"])), block["mlp"]["c_proj"])
    if cfg.pre_ln:
      x = x + attend(_layer_norm(x, block["ln_1"]))
      x = x + mlp(_layer_norm(x, block["ln_2"]))
    else:
      x = _layer_norm(x + attend(x), block["ln_1"])
      x = _layer_norm(x + mlp(x), block["ln_2"])
  if cfg.pre_ln:
    x = _layer_norm(x, p["ln_f"])
  return x


def hand_forward(cfg, params, tokens, positions=None, segment_ids=None):
  """Logits [length, vocab]: the hidden states through the tied embedding."""
  hidden = hand_hidden(cfg, params, tokens, positions, segment_ids)
  return hidden @ _np(params)["wte"]["embedding"].T


@pytest.mark.parametrize("name,count", [
    ("gpt1", 116_534_784),
    ("gpt2_117m", 124_439_808),
    ("gpt2_345m", 354_823_168),
    ("gpt2_762m", 774_030_080),
    ("gpt2_1542m", 1_557_611_200),
])
def test_preset_parameter_counts_match_the_published_ones(name, count):
  cfg = gpt.PRESETS[name]
  shapes = jax.eval_shape(lambda: init(cfg))
  assert gpt.count_params(shapes) == count
  positions = cfg.context * cfg.embed_dim
  assert gpt.count_params(shapes, include_positions=False) == count - positions
  attention_flops = 12 * cfg.num_layers * cfg.attn_dim * cfg.context
  assert gpt.flops_per_token(cfg, shapes) == 6 * (count - positions) + attention_flops


def test_every_parameter_has_logical_axis_names_of_its_rank():
  params = init(dataclasses.replace(TINY, local_window=4))
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert len(leaves) == 2 + 2 * 12 + 2
  for leaf in leaves:
    assert isinstance(leaf, nn.Partitioned)
    assert len(leaf.names) == leaf.value.ndim
    assert all(isinstance(n, str) for n in leaf.names)


def test_parameter_names_follow_gpt2():
  shapes = nn.unbox(jax.eval_shape(lambda: init(gpt.PRESETS["gpt2_117m"])))
  names = {"/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(shapes)}
  block = ["ln_1/scale", "ln_1/bias", "attn/c_attn/kernel", "attn/c_attn/bias",
           "attn/c_proj/kernel", "attn/c_proj/bias", "ln_2/scale", "ln_2/bias",
           "mlp/c_fc/kernel", "mlp/c_fc/bias", "mlp/c_proj/kernel", "mlp/c_proj/bias"]
  want = {"wte/embedding", "wpe/embedding", "ln_f/scale", "ln_f/bias"}
  want |= {f"h_{i}/{name}" for i in range(12) for name in block}
  assert names == want
  assert shapes["h_0"]["attn"]["c_attn"]["kernel"].shape == (768, 3 * 768)
  assert shapes["h_0"]["mlp"]["c_fc"]["kernel"].shape == (768, 3072)
  assert shapes["wte"]["embedding"].shape == (50257, 768)
  assert shapes["wpe"]["embedding"].shape == (1024, 768)


def test_gpt1_is_post_ln_without_final_layer_norm():
  shapes = nn.unbox(jax.eval_shape(lambda: init(gpt.PRESETS["gpt1"])))
  assert "ln_f" not in shapes
  assert shapes["wpe"]["embedding"].shape == (512, 768)


@pytest.mark.parametrize("scaled", [True, False])
def test_init_stds(scaled):
  cfg = gpt.GPTConfig(vocab_size=512, context=256, num_layers=4, num_heads=4, embed_dim=256,
                      mlp_dim=1024, scaled_residual_init=scaled)
  p = nn.unbox(init(cfg))
  residual = 0.02 / math.sqrt(2 * cfg.num_layers) if scaled else 0.02
  for i in range(cfg.num_layers):
    block = p[f"h_{i}"]
    np.testing.assert_allclose(block["attn"]["c_proj"]["kernel"].std(), residual, rtol=0.03)
    np.testing.assert_allclose(block["mlp"]["c_proj"]["kernel"].std(), residual, rtol=0.03)
    np.testing.assert_allclose(block["attn"]["c_attn"]["kernel"].std(), 0.02, rtol=0.03)
    np.testing.assert_allclose(block["mlp"]["c_fc"]["kernel"].std(), 0.02, rtol=0.03)
    np.testing.assert_array_equal(block["mlp"]["c_fc"]["bias"], 0.0)
    np.testing.assert_array_equal(block["ln_1"]["scale"], 1.0)
  np.testing.assert_allclose(p["wte"]["embedding"].std(), 0.02, rtol=0.03)
  np.testing.assert_allclose(p["wpe"]["embedding"].std(), 0.01, rtol=0.03)


def test_gpt2_forward_equals_hand_written():
  params = perturbed(init(TINY))
  tokens = tokens_of(2, 11, TINY.vocab_size)
  logits = apply(TINY, params, tokens)
  assert logits.shape == (2, 11, TINY.vocab_size) and logits.dtype == jnp.float32
  for row in range(2):
    np.testing.assert_allclose(logits[row], hand_forward(TINY, params, tokens[row]), atol=1e-5)


def test_gpt1_post_ln_forward_equals_hand_written():
  cfg = dataclasses.replace(TINY, pre_ln=False, scaled_residual_init=False)
  params = perturbed(init(cfg))
  assert "ln_f" not in params
  tokens = tokens_of(1, 10, cfg.vocab_size, seed=1)
  np.testing.assert_allclose(apply(cfg, params, tokens)[0], hand_forward(cfg, params, tokens[0]),
                             atol=1e-5)


@pytest.mark.parametrize("pre_ln", [True, False])
def test_hidden_states_are_what_the_lm_head_reads(pre_ln):
  """ln_f's output for GPT-2, the last block's for GPT-1; the logits are their tied projection."""
  cfg = dataclasses.replace(TINY, pre_ln=pre_ln)
  params = perturbed(init(cfg))
  tokens = tokens_of(2, 9, cfg.vocab_size, seed=7)
  hidden = apply(cfg, params, tokens, method="hidden_states")
  assert hidden.shape == (2, 9, cfg.embed_dim)
  for row in range(2):
    np.testing.assert_allclose(hidden[row], hand_hidden(cfg, params, tokens[row]), atol=1e-5)
  np.testing.assert_allclose(hidden @ params["wte"]["embedding"].T, apply(cfg, params, tokens),
                             atol=1e-5)
  cached, cache = apply(cfg, params, tokens, cache=gpt.init_cache(cfg, 2, 12),
                        method="hidden_states")
  np.testing.assert_allclose(cached, hidden, atol=1e-5)
  assert int(cache["index"]) == 9


@pytest.mark.slow
def test_decoding_callables_are_equal_per_config_and_run_the_model():
  """Equal configs give equal, equally hashed callables: lineage.decode's compile cache key."""
  apply_fn, init_cache = gpt.decoding(TINY)
  same = gpt.decoding(dataclasses.replace(TINY))
  assert (apply_fn, init_cache) == same and hash((apply_fn, init_cache)) == hash(same)
  assert apply_fn != gpt.decoding(dataclasses.replace(TINY, num_layers=1))[0]
  params = perturbed(init(TINY))
  tokens = tokens_of(2, 6, TINY.vocab_size, seed=8)
  positions = np.broadcast_to(np.arange(6), (2, 6))
  logits, cache = apply_fn(params, tokens, positions, np.ones((2, 6), np.int32), init_cache(2, 8))
  want, want_cache = apply(TINY, params, tokens, cache=gpt.init_cache(TINY, 2, 8))
  np.testing.assert_array_equal(logits, want)
  jax.tree.map(np.testing.assert_array_equal, cache, want_cache)


@pytest.mark.slow
def test_gpt3_odd_layers_attend_within_the_band():
  cfg = dataclasses.replace(TINY, local_window=3)
  assert [cfg.is_local_layer(i) for i in range(4)] == [False, True, False, True]
  params = perturbed(init(cfg))
  tokens = tokens_of(1, 12, cfg.vocab_size, seed=2)
  logits = apply(cfg, params, tokens)[0]
  np.testing.assert_allclose(logits, hand_forward(cfg, params, tokens[0]), atol=1e-5)
  dense = hand_forward(TINY, params, tokens[0])
  np.testing.assert_allclose(logits[:3], dense[:3], atol=1e-5)  # the band covers the whole past
  assert np.abs(logits[3:] - dense[3:]).max() > 1e-2


def test_a_single_local_layer_sees_only_its_window():
  """With layer 0's attention zeroed, only local layer 1 mixes tokens, so changes stay in band."""
  cfg = dataclasses.replace(TINY, local_window=3)
  params = perturbed(init(cfg))
  params["h_0"]["attn"]["c_proj"] = jax.tree.map(jnp.zeros_like, params["h_0"]["attn"]["c_proj"])
  tokens = tokens_of(1, 10, cfg.vocab_size, seed=3)
  changed = tokens.copy()
  changed[0, 2] = (changed[0, 2] + 1) % cfg.vocab_size
  diff = np.abs(apply(cfg, params, tokens) - apply(cfg, params, changed))[0].max(-1)
  assert (diff[2:5] > 1e-4).all()  # positions 2..4 have token 2 in their band of 3
  np.testing.assert_array_equal(diff[:2], 0.0)
  np.testing.assert_allclose(diff[5:], 0.0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("local_window", [0, 2])
def test_packed_documents_equal_each_document_alone(local_window):
  cfg = dataclasses.replace(TINY, local_window=local_window)
  params = perturbed(init(cfg))
  a, b = tokens_of(1, 7, cfg.vocab_size, seed=4)[0], tokens_of(1, 5, cfg.vocab_size, seed=5)[0]
  packed = np.concatenate([a, b])[None]
  positions = np.concatenate([np.arange(7), np.arange(5)])[None]
  segment_ids = np.array([[1] * 7 + [2] * 5])
  logits = apply(cfg, params, packed, positions=jnp.asarray(positions),
                 segment_ids=jnp.asarray(segment_ids))[0]
  np.testing.assert_allclose(logits[:7], apply(cfg, params, a[None])[0], atol=1e-5)
  np.testing.assert_allclose(logits[7:], apply(cfg, params, b[None])[0], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("local_window", [0, 3])
def test_kv_cache_prefill_then_steps_equal_the_full_forward(local_window):
  cfg = dataclasses.replace(TINY, local_window=local_window)
  params = perturbed(init(cfg))
  tokens = tokens_of(2, 12, cfg.vocab_size, seed=6)
  full = apply(cfg, params, tokens)
  step = jax.jit(lambda t, c: apply(cfg, params, t, cache=c))
  cache = gpt.init_cache(cfg, 2, 16)
  logits, cache = apply(cfg, params, tokens[:, :5], cache=cache)
  pieces = [logits]
  for i in range(5, 12):
    logits, cache = step(tokens[:, i:i + 1], cache)
    pieces.append(logits)
  assert int(cache["index"]) == 12
  np.testing.assert_array_equal(cache["valid"], np.broadcast_to(np.arange(16) < 12, (2, 16)))
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params_and_close_logits():
  cfg = dataclasses.replace(TINY, dtype="bfloat16")
  params = init(cfg)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(params)))
  params = perturbed(params, scale=0.05)
  tokens = tokens_of(2, 12, cfg.vocab_size, seed=7)
  low = apply(cfg, params, tokens)
  high = apply(TINY, params, tokens)
  assert low.dtype == jnp.float32
  error = np.abs(low - high).max() / np.abs(high).max()
  assert 1e-4 < error < 0.05  # bf16 arithmetic happened, and stayed close
  cache = gpt.init_cache(cfg, 2, 12)
  assert cache["layers"][0]["k"].dtype == jnp.bfloat16


@pytest.mark.slow
def test_dropout_only_when_not_deterministic():
  cfg = dataclasses.replace(TINY, dropout=0.5)
  params = init(cfg)
  tokens = tokens_of(2, 8, cfg.vocab_size, seed=8)
  run = lambda deterministic, seed: apply(cfg, params, tokens, deterministic=deterministic,
                                          rngs={"dropout": jax.random.PRNGKey(seed)})
  np.testing.assert_array_equal(run(True, 0), run(True, 1))
  np.testing.assert_array_equal(run(True, 0), apply(cfg, params, tokens))
  np.testing.assert_array_equal(run(False, 0), run(False, 0))
  assert np.abs(run(False, 0) - run(True, 0)).max() > 1e-3
  assert np.abs(run(False, 0) - run(False, 1)).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [True, False])
def test_remat_gives_the_same_loss_and_gradients(deterministic):
  tokens = tokens_of(2, 9, TINY.vocab_size, seed=9)
  base = dataclasses.replace(TINY, dropout=0.1)
  params = perturbed(init(base), scale=0.05)

  def loss(cfg):
    def fn(params):
      logits = apply(cfg, params, tokens[:, :-1], deterministic=deterministic,
                     rngs={"dropout": jax.random.PRNGKey(0)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
    return jax.value_and_grad(fn)

  remat = dataclasses.replace(base, remat=True)
  assert "remat" in str(jax.make_jaxpr(loss(remat))(params))
  assert "remat" not in str(jax.make_jaxpr(loss(base))(params))
  (l0, g0), (l1, g1) = loss(base)(params), loss(remat)(params)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g0)


def test_indivisible_heads_are_a_clear_error():
  with pytest.raises(ValueError, match="not divisible"):
    gpt.GPTConfig(embed_dim=100, num_heads=3)
  assert gpt.GPTConfig(embed_dim=100, num_heads=3, head_size=32).attn_dim == 96
