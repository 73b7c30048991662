"""lineage.models.transformer: the paper's parameter counts, padding and packing that change no
real position, cached decoding equal to teacher forcing, and beam search over the model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.models import transformer as tr

CFG = dataclasses.replace(tr.PRESETS["tiny"], vocab_size=32, dropout=0.1)
BOS, EOS = 1, 2


def tokens(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).integers(3, CFG.vocab_size, shape), jnp.int32)


@pytest.fixture(scope="module")
def params():
  init = jax.jit(tr.Transformer(CFG).init)
  return init(jax.random.PRNGKey(0), tokens((1, 5), 0), tokens((1, 4), 1))["params"]


@jax.jit
def logits_of(params, source, target, source_ids=None, target_ids=None, source_pos=None,
              target_pos=None):
  return tr.Transformer(CFG).apply({"params": params}, source, target, source_ids, target_ids,
                                   source_pos, target_pos)


@pytest.mark.parametrize("preset,paper", [("base", 65e6), ("big", 213e6)])
def test_parameter_counts_are_the_papers(preset, paper):
  """One tied [vocab, d] embedding, and per layer the attention, feed-forward and LayerNorm
  weights; shapes only (jax.eval_shape), so nothing is allocated."""
  cfg = tr.PRESETS[preset]
  shapes = jax.eval_shape(lambda: tr.Transformer(cfg).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 3), jnp.int32)))
  d, f, layers = cfg.embed_dim, cfg.mlp_dim, cfg.num_layers
  attention, ffn, norm = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
  want = (cfg.vocab_size * d + layers * (attention + ffn + 2 * norm)
          + layers * (2 * attention + ffn + 3 * norm))
  assert tr.count_params(shapes["params"]) == want
  assert abs(want - paper) / paper < 0.04


def test_sinusoids_are_the_papers():
  pe = np.asarray(tr.sinusoids(jnp.array([0, 3, 17]), 8))
  for row, pos in enumerate((0, 3, 17)):
    for i in range(4):
      angle = pos / 10000 ** (2 * i / 8)
      np.testing.assert_allclose(pe[row, [2 * i, 2 * i + 1]], [np.sin(angle), np.cos(angle)],
                                 atol=1e-5)


@pytest.mark.slow
def test_padding_and_packing_change_no_real_position(params):
  """Row 0: one pair padded on both sides (the padding holds real-looking tokens); row 1: two
  pairs packed, positions restarting. Each real position's logits are those of its pair alone."""
  src_a, tgt_a, src_b, tgt_b, src_c, tgt_c = (tokens((1, n), seed) for seed, n in
                                              enumerate((5, 4, 3, 2, 4, 3), start=10))
  source = jnp.concatenate([jnp.concatenate([src_a, tokens((1, 2), 20)], 1),
                            jnp.concatenate([src_b, src_c], 1)])
  target = jnp.concatenate([jnp.concatenate([tgt_a, tokens((1, 1), 21)], 1),
                            jnp.concatenate([tgt_b, tgt_c], 1)])
  source_ids = jnp.array([[1] * 5 + [0] * 2, [1] * 3 + [2] * 4])
  target_ids = jnp.array([[1] * 4 + [0], [1] * 2 + [2] * 3])
  source_pos = jnp.array([list(range(7)), [0, 1, 2, 0, 1, 2, 3]])
  target_pos = jnp.array([list(range(5)), [0, 1, 0, 1, 2]])
  got = logits_of(params, source, target, source_ids, target_ids, source_pos, target_pos)
  alone = lambda s, t: logits_of(params, s, t)[0]
  np.testing.assert_allclose(got[0, :4], alone(src_a, tgt_a), atol=1e-5)
  np.testing.assert_allclose(got[1, :2], alone(src_b, tgt_b), atol=1e-5)
  np.testing.assert_allclose(got[1, 2:], alone(src_c, tgt_c), atol=1e-5)


@pytest.mark.slow
def test_dropout_acts_in_training_only(params):
  source, target = tokens((2, 6), 30), tokens((2, 5), 31)
  train = jax.jit(lambda rng: tr.Transformer(CFG).apply(
      {"params": params}, source, target, deterministic=False, rngs={"dropout": rng}))
  evaluation = logits_of(params, source, target)
  assert np.abs(train(jax.random.PRNGKey(0)) - evaluation).max() > 1e-3
  assert np.abs(train(jax.random.PRNGKey(0)) - train(jax.random.PRNGKey(1))).max() > 1e-3
  np.testing.assert_array_equal(train(jax.random.PRNGKey(0)), train(jax.random.PRNGKey(0)))


@pytest.mark.slow
def test_cached_decoding_equals_teacher_forcing(params):
  """A prefill of two target tokens, then one at a time, over padded sources."""
  source, target = tokens((2, 7), 40), tokens((2, 6), 41)
  source_ids = jnp.array([[1] * 7, [1] * 4 + [0] * 3])
  want = logits_of(params, source, target, source_ids)
  cache = tr.start_cache(CFG, params, source, source_ids, 6)
  apply_fn = jax.jit(tr.decoding(CFG))
  got = []
  for start, end in ((0, 2), (2, 3), (3, 4), (4, 5), (5, 6)):
    positions = jnp.broadcast_to(jnp.arange(start, end), (2, end - start))
    logits, cache = apply_fn(params, target[:, start:end], positions,
                             jnp.ones_like(positions), cache)
    got.append(logits)
  np.testing.assert_allclose(jnp.concatenate(got, axis=1), want, atol=1e-5)


def greedy_by_recomputation(params, source, limit, eos):
  """Greedy target ids, rerunning the whole model per token: shares no code with the cache.
  Sources are padded to 8 tokens and targets to 10 (causal: the tail is never seen), so
  that one executable serves every call."""
  padded = jnp.zeros((1, 8), jnp.int32).at[0, :len(source)].set(jnp.asarray(source))
  source_ids = (jnp.arange(8) < len(source)).astype(jnp.int32)[None]
  target = [BOS]
  while len(target) <= limit:
    buffer = jnp.zeros((1, 10), jnp.int32).at[0, :len(target)].set(jnp.asarray(target))
    logits = logits_of(params, padded, buffer, source_ids, jnp.ones((1, 10), jnp.int32))
    token = int(logits[0, len(target) - 1].argmax())
    if token == eos:
      break
    target.append(token)
  return target[1:]


@pytest.mark.slow
def test_translate_with_beam_one_is_greedy_and_wider_beams_keep_the_limits(params):
  sources = [tokens((4,), 50).tolist(), tokens((2,), 51).tolist(), tokens((6,), 52).tolist()]
  translate = lambda beam_size, eos: tr.translate(CFG, params, sources, bos_id=BOS, eos_id=eos,
                                                  beam_size=beam_size, extra_length=3, bucket=4)
  eos = translate(1, EOS)[1][0]  # the stop token is row 1's first greedy token
  greedy = translate(1, eos)
  assert greedy == [greedy_by_recomputation(params, s, len(s) + 3, eos) for s in sources]
  assert greedy[1] == [] and len(greedy[2]) == len(sources[2]) + 3
  beams = translate(4, eos)
  assert all(len(b) <= len(s) + 3 and eos not in b for b, s in zip(beams, sources))


@pytest.mark.slow
def test_pallas_attention_trains_like_xla():
  """Loss and gradients of a padded batch through the Pallas kernels (interpret mode on CPU):
  encoder self-attention, causal decoder self-attention and cross-attention, all with ids."""
  source, target = tokens((2, 9), 60), tokens((2, 6), 61)
  source_ids = jnp.array([[1] * 9, [1] * 5 + [0] * 4])
  target_ids = jnp.array([[1] * 6, [1] * 3 + [0] * 3])

  def loss_and_grads(impl):
    cfg = dataclasses.replace(CFG, num_layers=1, attention_impl=impl)
    model = tr.Transformer(cfg)
    params = model.init(jax.random.PRNGKey(1), source, target)["params"]

    def loss(params):
      logits = model.apply({"params": params}, source, target, source_ids, target_ids)
      logp = jnp.take_along_axis(jax.nn.log_softmax(logits), target[..., None], -1)[..., 0]
      return -(logp * target_ids).sum()
    return jax.jit(jax.value_and_grad(loss))(params)

  (xla_loss, xla_grads), (pallas_loss, pallas_grads) = loss_and_grads("xla"), loss_and_grads(
      "pallas")
  np.testing.assert_allclose(pallas_loss, xla_loss, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(pallas_grads), jax.tree.leaves(xla_grads)):
    np.testing.assert_allclose(got, want, atol=1e-5)
