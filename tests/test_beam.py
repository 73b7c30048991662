"""lineage.decode.beam: beam 1 is greedy decoding, a beam wide enough to hold every candidate
finds the exhaustive optimum under the length penalty, and the search compiles once per shape."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage import decode
from lineage.decode import beam as beam_lib
from lineage.models import gpt


def perturbed_params(cfg, seed, scale):
  """Weights moved well off their init, so the model's distributions are far from uniform."""
  boxed = gpt.GPT(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
  leaves, tree = jax.tree.flatten(nn.unbox(boxed))
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


GREEDY_CFG = gpt.GPTConfig(vocab_size=64, context=32, num_layers=2, num_heads=2, embed_dim=32,
                           mlp_dim=64, dropout=0.0)
PROMPTS = [[1, 2, 3], [5], [7, 8, 9, 10, 11], [20, 21]]


@pytest.mark.slow
def test_beam_one_is_greedy_decoding():
  params = perturbed_params(GREEDY_CFG, 2, 0.5)
  apply_fn, init_cache = gpt.decoding(GREEDY_CFG)
  greedy = decode.Generator(apply_fn, init_cache, GREEDY_CFG.context)
  beams = decode.BeamSearch(apply_fn, init_cache, GREEDY_CFG.context)
  limits = [12, 12, 5, 12]
  free = greedy.generate(params, PROMPTS, limits, sampling=decode.Sampling(temperature=0))
  eos = free[0][4]  # row 0 stops at its first, others later or never
  want = greedy.generate(params, PROMPTS, limits, sampling=decode.Sampling(temperature=0),
                         stop_tokens=(eos,))
  assert len(want[0]) == 4 and {len(w) == n for w, n in zip(want, limits)} == {True, False}
  for alpha in (0.6, 2.0):  # greedy whatever the length penalty
    got, _ = beams.search(params, PROMPTS, limits, eos_id=eos, beam_size=1, alpha=alpha)
    assert got == want


V, EOS = 4, 3
TINY_CFG = gpt.GPTConfig(vocab_size=V, context=8, num_layers=1, num_heads=2, embed_dim=16,
                         mlp_dim=32, dropout=0.0)
TINY_PROMPTS, TINY_LIMITS = [[1], [2, 0, 1]], [3, 2]


def every_output(params, prompt, limit):
  """{output: (log-probability, length)} over every output: the stop-ended ones of up to
  `limit` tokens (the stop token counted in the length, not in the output), and the stop-free
  ones of exactly `limit` tokens."""
  full = np.array([prompt + list(s) for s in itertools.product(range(V), repeat=limit)])
  logp = jax.jit(lambda p, x: jax.nn.log_softmax(gpt.GPT(TINY_CFG).apply({"params": p}, x)))
  logp = np.asarray(logp(params, full))[:, len(prompt) - 1:-1]  # [row, t]: p(token t | before)
  outputs = {}
  for row, seq in enumerate(full[:, len(prompt):].tolist()):
    for n in range(1, limit + 1):
      if EOS in seq[:n - 1] or (n < limit and seq[n - 1] != EOS):
        continue
      out = tuple(seq[:n - 1] if seq[n - 1] == EOS else seq[:n])
      outputs[out] = (sum(logp[row, t, seq[t]] for t in range(n)), n)
  return outputs


@pytest.mark.slow
def test_a_beam_holding_every_candidate_finds_the_exhaustive_best():
  """Beam 36 >= (V - 1)^(L - 1) * V, the candidates of the last of L = 3 steps: every candidate
  ranks within the beam, and fewer than 36 hypotheses finish before the last step, so the
  search sees every output. A beam of 2 must score its own answer right and no higher."""
  params = perturbed_params(TINY_CFG, 3, 0.3)
  search = decode.BeamSearch(*gpt.decoding(TINY_CFG), TINY_CFG.context)
  outputs = [every_output(params, p, n) for p, n in zip(TINY_PROMPTS, TINY_LIMITS)]
  answers = set()
  for alpha in (0.0, 0.6, 3.0):
    wide, wide_scores = search.search(params, TINY_PROMPTS, TINY_LIMITS, eos_id=EOS,
                                      beam_size=36, alpha=alpha)
    narrow, narrow_scores = search.search(params, TINY_PROMPTS, TINY_LIMITS, eos_id=EOS,
                                          beam_size=2, alpha=alpha)
    for i in range(len(TINY_PROMPTS)):
      scores = {out: logp / beam_lib.length_penalty(n, alpha)
                for out, (logp, n) in outputs[i].items()}
      best = max(scores, key=scores.get)
      assert sorted(scores.values())[-2] < scores[best] - 1e-4  # a unique optimum
      assert tuple(wide[i]) == best
      np.testing.assert_allclose(wide_scores[i], scores[best], rtol=1e-5)
      np.testing.assert_allclose(narrow_scores[i], scores[tuple(narrow[i])], rtol=1e-5)
      answers.add((i, best))
  assert len(answers) > len(TINY_PROMPTS)  # the length penalty changed some answer


@pytest.mark.slow
def test_compiles_once_per_shape_whatever_the_params_alpha_stop_token_or_limits():
  search = decode.BeamSearch(*gpt.decoding(TINY_CFG), TINY_CFG.context)
  search.search(perturbed_params(TINY_CFG, 3, 1.0), TINY_PROMPTS, 3, eos_id=EOS, beam_size=3,
                bucket=4)
  size = beam_lib._search._cache_size()
  search.search(perturbed_params(TINY_CFG, 4, 1.0), TINY_PROMPTS, 3, eos_id=1, beam_size=3,
                alpha=1.0, bucket=4)
  got, scores = search.search(perturbed_params(TINY_CFG, 4, 1.0), TINY_PROMPTS, [2, 0],
                              eos_id=1, beam_size=3, bucket=4)  # limits within the bucket
  assert beam_lib._search._cache_size() == size
  assert len(got[0]) <= 2 and got[1] == [] and scores[1] == 0.0


def test_bad_arguments_are_errors():
  search = decode.BeamSearch(*gpt.decoding(TINY_CFG), TINY_CFG.context)
  with pytest.raises(ValueError, match="beam_size"):
    search.search(None, TINY_PROMPTS, 2, eos_id=EOS, beam_size=0)
  with pytest.raises(ValueError, match="context"):
    search.search(None, TINY_PROMPTS, 6, eos_id=EOS)
  with pytest.raises(ValueError, match="start_cache"):
    decode.BeamSearch(search.apply_fn, None, 8).search(None, TINY_PROMPTS, 2, eos_id=EOS)
