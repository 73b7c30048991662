"""Sliding windows, unit conversions and the batched scorer against brute-force sums."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.eval import lm_metrics, scoring
from lineage.models import gpt

CFG = gpt.GPTConfig(vocab_size=97, context=32, num_layers=2, num_heads=2, embed_dim=32,
                    mlp_dim=64, dropout=0.0)


@pytest.fixture(scope="module")
def params():
  init = lambda rng: nn.unbox(gpt.GPT(CFG).init(rng, jnp.zeros((1, 4), jnp.int32))["params"])
  return jax.jit(init)(jax.random.PRNGKey(0))


@jax.jit
def _padded_logprobs(params, inputs):
  return jax.nn.log_softmax(gpt.GPT(CFG).apply({"params": params}, inputs), axis=-1)


def _next_logprobs(params, contexts, nexts):
  """log p(next | context) for each pair, contexts right-padded to one jitted shape."""
  inputs = np.zeros((len(contexts), CFG.context), np.int32)
  for row, context in enumerate(contexts):
    inputs[row, :len(context)] = context
  logp = _padded_logprobs(params, jnp.asarray(inputs))
  last = [len(c) - 1 for c in contexts]
  return np.asarray(logp[np.arange(len(contexts)), np.asarray(last), np.asarray(nexts)])


def _logprobs(params, tokens):
  """log p(tokens[i] | tokens[:i]) for i >= 1, from one causal pass."""
  inputs = np.zeros((1, CFG.context), np.int32)
  inputs[0, :len(tokens) - 1] = tokens[:-1]
  logp = _padded_logprobs(params, jnp.asarray(inputs))[0]
  return np.asarray(logp[np.arange(len(tokens) - 1), tokens[1:]])


@pytest.mark.parametrize("length, context, stride", [(50, 16, 5), (16, 16, 8), (9, 16, 4),
                                                     (40, 8, 8)])
def test_sliding_windows_score_each_token_once_with_its_context(length, context, stride):
  tokens = np.arange(length, dtype=np.int32)
  seen = []
  for number, request in enumerate(lm_metrics.sliding_windows(tokens, context, stride)):
    assert len(request.tokens) <= context + 1
    scored = request.tokens[-request.num_targets:]
    left_context = len(request.tokens) - request.num_targets - 1
    assert number == 0 or left_context >= context - stride
    assert request.tokens[0] == max(0, scored[-1] - context)  # All the context that fits.
    seen.extend(scored.tolist())
  assert seen == list(range(1, length))


def test_sliding_windows_reject_bad_stride():
  with pytest.raises(ValueError, match="stride"):
    lm_metrics.sliding_windows(np.arange(10), 8, 9)


def test_windowed_scores_equal_brute_force(params):
  """Each token's log-prob given exactly the context the windowing rule promises."""
  context, stride = 16, 6
  tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, 45).astype(np.int32)
  scorer = scoring.Scorer(CFG, params, batch_size=3, max_len=context)
  windowed = scorer.score(lm_metrics.sliding_windows(tokens, context, stride)).logprob.sum()
  contexts = []
  for i in range(1, len(tokens)):
    end = i if i <= context else min(len(tokens) - 1,
                                     context + math.ceil((i - context) / stride) * stride)
    contexts.append(tokens[max(0, end - context):i])
  brute = _next_logprobs(params, contexts, tokens[1:]).sum()
  np.testing.assert_allclose(windowed, brute, rtol=1e-5)


def test_batched_padded_requests_equal_single_ones(params):
  rng = np.random.default_rng(1)
  requests = [lm_metrics.Request(rng.integers(0, CFG.vocab_size, n).astype(np.int32), k)
              for n, k in [(5, 1), (40, 7), (20, 19), (33, 2), (2, 1)]]
  scorer = scoring.Scorer(CFG, params, batch_size=2)
  scores = scorer.score(requests).logprob
  for request, score in zip(requests, scores):
    kept = request.tokens[-(CFG.context + 1):]  # Longer requests keep their last context + 1.
    np.testing.assert_allclose(score, _logprobs(params, kept)[-request.num_targets:].sum(),
                               rtol=1e-5)


def test_greedy_flags(params):
  prompt = np.array([3, 14, 15, 92, 65], np.int32)
  greedy = prompt
  for _ in range(2):
    inputs = np.zeros((1, CFG.context), np.int32)
    inputs[0, :len(greedy)] = greedy
    next_token = _padded_logprobs(params, jnp.asarray(inputs))[0, len(greedy) - 1].argmax()
    greedy = np.append(greedy, np.int32(next_token))
  wrong = greedy.copy()
  wrong[-1] = (wrong[-1] + 1) % CFG.vocab_size
  scorer = scoring.Scorer(CFG, params, batch_size=4)
  scores = scorer.score([lm_metrics.Request(greedy, 2), lm_metrics.Request(wrong, 2)])
  assert scores.greedy.tolist() == [True, False]


def test_next_tokens_equal_brute_force_argmax_with_bans(params):
  rng = np.random.default_rng(0)
  prefixes = [rng.integers(0, CFG.vocab_size, n).astype(np.int32) for n in (3, 9, 1, 30, 5)]
  logp = np.stack([_padded_logprobs(params, jnp.asarray(np.pad(p, (0, CFG.context - len(p)))[None]))
                   [0, len(p) - 1] for p in prefixes])
  ranked = np.argsort(-logp, axis=-1)
  scorer = scoring.Scorer(CFG, params, batch_size=2)
  assert scorer.next_tokens(prefixes).tolist() == ranked[:, 0].tolist()
  # Banning each prefix's top k ids gives its (k+1)-th; other rows' bans do not leak across.
  banned = [ranked[i, :k].tolist() for i, k in enumerate((0, 1, 2, 5, 3))]
  assert scorer.next_tokens(prefixes, banned).tolist() == [
      ranked[i, k] for i, k in enumerate((0, 1, 2, 5, 3))]


def test_padded_vocabulary_is_masked(params):
  """With valid_vocab < vocab_size the padding ids get no probability mass."""
  tokens = np.array([1, 2, 3, 4], np.int32)
  scorer = scoring.Scorer(CFG, params, batch_size=1, valid_vocab=90)
  # Renormalising the unpadded model's probabilities over the first 90 ids gives the same.
  logp = _padded_logprobs(params, jnp.asarray(np.pad(tokens[:-1], (0, CFG.context - 3))[None]))
  expected = jax.nn.log_softmax(logp[0, 2, :90])[tokens[-1]]
  np.testing.assert_allclose(scorer.score([lm_metrics.Request(tokens, 1)]).logprob[0], expected,
                             rtol=1e-5)
  with pytest.raises(ValueError, match="tokenizer does not match"):
    scorer.score([lm_metrics.Request(np.array([1, 95], np.int32), 1)])


def test_request_and_scorer_reject_bad_input(params):
  with pytest.raises(ValueError, match="between 1 and"):
    lm_metrics.Request(np.array([1, 2], np.int32), 2)
  with pytest.raises(ValueError, match="exceeds the model's context"):
    scoring.Scorer(CFG, params, batch_size=1, max_len=64)


def test_unit_conversions_equal_brute_force_sums():
  probs = np.random.default_rng(2).uniform(0.01, 1.0, 37)
  nats = float(-np.log(probs).sum())
  assert lm_metrics.bits_per_unit(nats, 37) == pytest.approx(-np.log2(probs).mean())
  # Perplexity is the inverse geometric mean of the probabilities, per counted unit.
  assert lm_metrics.perplexity(nats, 37) == pytest.approx(np.prod(probs) ** (-1 / 37))
  # Per word: the same nats over fewer units (words are longer than tokens).
  assert lm_metrics.perplexity(nats, 20) == pytest.approx(math.exp(nats / 20))
  with pytest.raises(ValueError, match="positive count"):
    lm_metrics.perplexity(nats, 0)
  with pytest.raises(ValueError, match="positive count"):
    lm_metrics.bits_per_unit(nats, 0)


def test_word_count_adds_one_eos_per_line():
  lines = [" the cat sat ", "", " = a = "]
  assert lm_metrics.word_count(lines) == 3 + 1 + 0 + 1 + 3 + 1
  assert lm_metrics.word_count(lines, eos_per_line=False) == 6


@pytest.mark.slow
def test_post_ln_models_score_from_the_last_block():
  """GPT-1's blocks (no ln_f): the head reads the last block's output."""
  cfg = dataclasses.replace(CFG, pre_ln=False)
  model = gpt.GPT(cfg)
  params = jax.jit(lambda rng: nn.unbox(model.init(rng, jnp.zeros((1, 4), jnp.int32))["params"]))(
      jax.random.PRNGKey(3))
  tokens = np.array([5, 8, 13, 21, 34, 55], np.int32)
  logp = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(tokens[None, :-1]))[0])
  expected = logp[np.arange(5), tokens[1:]][-3:].sum()
  scores = scoring.Scorer(cfg, params, batch_size=1).score([lm_metrics.Request(tokens, 3)])
  np.testing.assert_allclose(scores.logprob[0], expected, rtol=1e-5)
