"""The mLSTM against a plain numpy implementation of the paper's equations, weight norm included."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lineage.models import mlstm
from lineage.train import optim

CFG = mlstm.MLSTMConfig(vocab_size=256, embed_dim=8, hidden_dim=16)


def _params(seed=0, cfg=CFG):
  """Initialised parameters with the norms g moved off ||V||, so that weight norm matters."""
  params = nn.unbox(mlstm.init_params(cfg, jax.random.PRNGKey(seed)))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(np.asarray, params)
  for name in ("gx", "gh", "gmx", "gmh"):
    params[name] = params[name] * rng.uniform(0.5, 1.5, params[name].shape).astype(np.float32)
  params["b"] = rng.normal(0, 0.3, params["b"].shape).astype(np.float32)
  params["head"]["bias"] = rng.normal(0, 0.3, params["head"]["bias"].shape).astype(np.float32)
  return params


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_mlstm(params, tokens, mask=None, clamp=None):
  """The equations written out, one step at a time, in float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  norm = lambda v, g: g * v / np.sqrt((v ** 2).sum(axis=0, keepdims=True))
  wx, wh = norm(p["wx"], p["gx"]), norm(p["wh"], p["gh"])
  wmx, wmh = norm(p["wmx"], p["gmx"]), norm(p["wmh"], p["gmh"])
  batch, length = tokens.shape
  hidden = wmh.shape[0]
  h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
  mask = np.ones((batch, length), bool) if mask is None else mask
  logits, cells = [], []
  for t in range(length):
    x = p["embed"]["embedding"][tokens[:, t]]
    m = (x @ wmx) * (h @ wmh)
    z = x @ wx + m @ wh + p["b"]
    i, f, o, u = np.split(z, 4, axis=1)
    new_c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(u)
    if clamp is not None:
      new_c[:, clamp[0]] = clamp[1]
    new_h = _sigmoid(o) * np.tanh(new_c)
    keep = mask[:, t:t + 1]
    h, c = np.where(keep, new_h, h), np.where(keep, new_c, c)
    logits.append(h @ p["head"]["kernel"] + p["head"]["bias"])
    cells.append(c)
  return np.stack(logits, 1), np.stack(cells, 1), (h, c)


def _tokens(shape, seed=1):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.int32)


@pytest.mark.slow
def test_matches_numpy_equations():
  params, tokens = _params(), _tokens((3, 11))
  logits, (h, c) = mlstm.MLSTM(CFG).apply({"params": params}, tokens)
  want_logits, want_cells, (want_h, want_c) = numpy_mlstm(params, tokens)
  np.testing.assert_allclose(logits, want_logits, atol=2e-5)
  np.testing.assert_allclose(h, want_h, atol=2e-5)
  np.testing.assert_allclose(c, want_c, atol=2e-5)
  _, cells, _ = mlstm.MLSTM(CFG).apply({"params": params}, tokens, method=mlstm.MLSTM.states)
  np.testing.assert_allclose(cells, want_cells, atol=2e-5)


def test_mask_freezes_state_like_numpy():
  params, tokens = _params(), _tokens((2, 9))
  mask = np.array([[1, 1, 0, 0, 1, 1, 1, 0, 0], [1] * 5 + [0] * 4], bool)
  logits, (_, c) = mlstm.MLSTM(CFG).apply({"params": params}, tokens, mask=mask)
  want_logits, want_cells, (_, want_c) = numpy_mlstm(params, tokens, mask)
  np.testing.assert_allclose(logits, want_logits, atol=2e-5)
  np.testing.assert_allclose(c, want_c, atol=2e-5)
  np.testing.assert_array_equal(want_cells[1, 4], want_cells[1, 8])  # frozen over padding


def test_weight_norm_initial_g_is_column_norm_and_scale_invariant():
  params = jax.tree.map(np.asarray, nn.unbox(mlstm.init_params(CFG, jax.random.PRNGKey(3))))
  for name in ("x", "h", "mx", "mh"):
    np.testing.assert_allclose(params[f"g{name}"], np.linalg.norm(params[f"w{name}"], axis=0),
                               rtol=1e-6)
  tokens = _tokens((2, 6))
  before, _ = mlstm.MLSTM(CFG).apply({"params": params}, tokens)
  scaled = {**params, "wh": params["wh"] * 7.0, "wmx": params["wmx"] * 0.1}
  after, _ = mlstm.MLSTM(CFG).apply({"params": scaled}, tokens)
  np.testing.assert_allclose(after, before, atol=1e-5)
  doubled_g = {**params, "gh": params["gh"] * 2.0}
  changed, _ = mlstm.MLSTM(CFG).apply({"params": doubled_g}, tokens)
  assert np.abs(np.asarray(changed) - np.asarray(before)).max() > 1e-3


def test_carry_continues_across_chunks():
  params, tokens = _params(), _tokens((2, 12))
  model = mlstm.MLSTM(CFG)
  whole, whole_carry = model.apply({"params": params}, tokens)
  first, carry = model.apply({"params": params}, tokens[:, :5])
  second, carry = model.apply({"params": params}, tokens[:, 5:], carry=carry)
  np.testing.assert_allclose(np.concatenate([first, second], 1), whole, atol=1e-5)
  np.testing.assert_allclose(carry[1], whole_carry[1], atol=1e-5)


def test_clamp_fixes_the_unit_like_numpy():
  params, tokens = _params(), _tokens((2, 7))
  logits, _ = mlstm.MLSTM(CFG).apply({"params": params}, tokens, clamp=(5, 0.75))
  _, cells, _ = mlstm.MLSTM(CFG).apply({"params": params}, tokens, clamp=(5, 0.75),
                                       method=mlstm.MLSTM.states)
  want_logits, want_cells, _ = numpy_mlstm(params, tokens, clamp=(5, 0.75))
  np.testing.assert_allclose(logits, want_logits, atol=2e-5)
  np.testing.assert_allclose(cells, want_cells, atol=2e-5)
  assert np.all(np.asarray(cells)[:, :, 5] == np.float32(0.75))


def test_time_loop_is_one_scan_and_params_stay_float32():
  cfg = mlstm.MLSTMConfig(embed_dim=8, hidden_dim=16, dtype="bfloat16")
  params = nn.unbox(mlstm.init_params(cfg, jax.random.PRNGKey(0)))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  jaxpr = jax.make_jaxpr(lambda p, t: mlstm.MLSTM(cfg).apply({"params": p}, t))(
      params, jnp.zeros((2, 40), jnp.int32))
  assert [e.primitive.name for e in jaxpr.jaxpr.eqns].count("scan") == 1
  logits, (h, c) = mlstm.MLSTM(cfg).apply({"params": params}, _tokens((2, 5)))
  assert logits.dtype == h.dtype == c.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()


def test_features_are_final_cells_and_ignore_right_padding():
  params = _params()
  seqs = [b"\n good product ", b"", b"x" * 150, b"\n bad ", b"\xff\xfe"]
  feats = mlstm.features(CFG, params, seqs, batch_size=2)
  assert feats.shape == (5, CFG.hidden_dim) and feats.dtype == np.float32
  for seq, row in zip(seqs, feats):
    if not seq:
      np.testing.assert_array_equal(row, 0.0)
      continue
    _, _, (_, want_c) = numpy_mlstm(params, np.frombuffer(seq, np.uint8)[None].astype(np.int32))
    np.testing.assert_allclose(row, want_c[0], atol=5e-5)
  np.testing.assert_allclose(mlstm.features(CFG, params, seqs, batch_size=8), feats, atol=1e-6)


def test_features_reject_text():
  with pytest.raises(TypeError, match="preprocess"):
    mlstm.features(CFG, _params(), ["a string"])


def test_unit_trace_is_the_cell_after_each_byte():
  params = _params()
  seq = "\n café ".encode()
  trace = mlstm.unit_trace(CFG, params, seq, 3)
  _, cells, _ = numpy_mlstm(params, np.frombuffer(seq, np.uint8)[None].astype(np.int32))
  assert trace.shape == (len(seq),)
  np.testing.assert_allclose(trace, cells[0, :, 3], atol=2e-5)
  with pytest.raises(ValueError, match="outside"):
    mlstm.unit_trace(CFG, params, seq, CFG.hidden_dim)


@pytest.mark.slow
def test_sample_is_deterministic_and_clamp_changes_it():
  params = _params()
  rng = jax.random.PRNGKey(7)
  out = mlstm.sample(CFG, params, b"\n ", 30, rng)
  assert isinstance(out, bytes) and len(out) == 30
  assert mlstm.sample(CFG, params, b"\n ", 30, rng) == out
  high = mlstm.sample(CFG, params, b"\n ", 30, rng, clamp=(0, 5.0))
  low = mlstm.sample(CFG, params, b"\n ", 30, rng, clamp=(0, -5.0))
  assert high != low
  with pytest.raises(ValueError, match="non-empty prompt"):
    mlstm.sample(CFG, params, b"", 5, rng)
  with pytest.raises(ValueError, match="temperature"):
    mlstm.sample(CFG, params, b"a", 5, rng, temperature=0.0)


def test_greedy_like_sample_follows_the_model():
  """At a tiny temperature sampling is argmax decoding, which numpy can replay."""
  params = _params()
  out = mlstm.sample(CFG, params, b"ab", 6, jax.random.PRNGKey(0), temperature=1e-4)
  seq = list(b"ab")
  for _ in range(6):
    logits, _, _ = numpy_mlstm(params, np.array([seq], np.int32))
    seq.append(int(logits[0, -1].argmax()))
  assert list(out) == seq[2:]


def test_stateful_loss_sums_tokens_and_stops_gradient_at_the_carry():
  params = _params()
  loss_fn = mlstm.lm_loss_fn(CFG)
  tokens = _tokens((2, 9))
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  carry = mlstm.init_carry(CFG, 2)
  (loss_sum, (aux, new_carry)) = loss_fn(params, batch, jax.random.PRNGKey(0), False, carry)
  assert float(aux["weight"]) == 16
  want_logits, _, (_, want_c) = numpy_mlstm(params, batch["inputs"])
  shifted = want_logits - want_logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  want = -np.take_along_axis(log_probs, batch["targets"][..., None], -1).sum()
  np.testing.assert_allclose(float(loss_sum), want, rtol=1e-5)
  np.testing.assert_allclose(new_carry[1], want_c, atol=2e-5)
  carry_grad = jax.grad(lambda c: loss_fn(params, batch, None, False, c)[0])(new_carry)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(carry_grad))


def test_chrono_gate_biases_give_a_spread_of_memory_lengths():
  b = np.asarray(nn.unbox(mlstm.init_params(CFG, jax.random.PRNGKey(0)))["b"])
  hidden = CFG.hidden_dim
  input_bias, forget_bias, rest = b[:hidden], b[hidden:2 * hidden], b[2 * hidden:]
  assert np.all(forget_bias >= 0) and np.all(forget_bias <= np.log(CFG.max_timescale))
  assert forget_bias.std() > 0.3  # a spread of time scales, not one
  np.testing.assert_array_equal(input_bias, -forget_bias)
  np.testing.assert_array_equal(rest, 0.0)


def test_max_timescale_bounds_the_initial_memories():
  short = dataclasses.replace(CFG, max_timescale=8.0)
  forget_bias = np.asarray(nn.unbox(mlstm.init_params(short, jax.random.PRNGKey(0)))["b"])[
      CFG.hidden_dim:2 * CFG.hidden_dim]
  assert forget_bias.max() <= np.log(7.0) + 1e-6 and forget_bias.min() >= 0.0
  with pytest.raises(ValueError, match="max_timescale must be above 2"):
    mlstm.init_params(dataclasses.replace(CFG, max_timescale=2.0), jax.random.PRNGKey(0))


def test_weight_decay_shrinks_only_the_weight_norm_gains():
  # Weight norm makes W independent of ||V||, so decay must act on the gains g to do anything.
  params = _params()
  mask = mlstm.decay_mask(params)
  assert sorted(k for k, v in mask.items() if v is True) == ["gh", "gmh", "gmx", "gx"]
  assert not any(jax.tree.leaves({k: v for k, v in mask.items() if not k.startswith("g")}))
  lr, decay = 0.1, 0.2
  train_cfg = ml_collections.ConfigDict(dict(
      lr=lr, warmup_steps=0, schedule="constant", steps=10, min_lr_ratio=0.0, b1=0.9,
      b2=0.999, eps=1e-8, weight_decay=decay, grad_clip=1.0, mu_dtype=""))
  tx, _ = optim.make_optimizer(train_cfg, optim.ParamGroups.from_decay_mask(mlstm.decay_mask))
  zeros = jax.tree.map(jnp.zeros_like, params)
  new = jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(
      params, zeros)
  for (path, old), got in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                              jax.tree.leaves(new)):
    name = jax.tree_util.keystr(path)
    want = old * (1 - lr * decay) if path[-1].key in mlstm.WEIGHT_NORM_GAINS else old
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
