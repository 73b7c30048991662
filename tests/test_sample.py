"""KV-cache decoding against full recomputation, and the sampling filters on hand-made logits."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage import sample
from lineage.models import gpt

CFG = gpt.GPTConfig(vocab_size=64, context=48, num_layers=2, num_heads=4, embed_dim=32,
                    mlp_dim=128, dropout=0.0, local_window=4)
PROMPTS = [[1, 2, 3], [5], [7, 8, 9, 10, 11, 12, 13], [20, 21]]


@pytest.fixture(scope="module")
def params():
  """Weights moved well off their init, so greedy decoding does not repeat one token."""
  boxed = gpt.GPT(CFG).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  leaves, tree = jax.tree.flatten(nn.unbox(boxed))
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


NEW = 10


@pytest.fixture(scope="module")
def greedy(params):
  return sample.Decoder(CFG, params, sample.SamplingConfig(greedy=True))


@pytest.fixture(scope="module")
def greedy_tokens(greedy):
  return greedy.generate(PROMPTS, NEW)


@pytest.fixture(scope="module")
def sampler(params):
  return sample.Decoder(CFG, params, sample.SamplingConfig(temperature=1.5, top_k=20))


def test_greedy_kv_cache_equals_recomputation(params, greedy_tokens):
  model = gpt.GPT(CFG)
  want = [np.asarray(sample.greedy_by_recomputation(model, params, jnp.asarray([p]), NEW))[0]
          .tolist() for p in PROMPTS]
  assert greedy_tokens == want
  assert all(len(set(w)) > 3 for w in want)  # the check is not about a constant sequence


def test_batched_prompts_decode_as_each_alone(greedy, greedy_tokens):
  assert greedy_tokens == [greedy.generate([p], NEW)[0] for p in PROMPTS]


def test_no_recompilation_per_token_or_within_a_bucket(params):
  decoder = sample.Decoder(CFG, params, sample.SamplingConfig(greedy=True))
  decoder.generate([[1, 2, 3], [4]], 4)
  decoder.generate([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [4, 5]], 4)  # other lengths, same bucket
  assert decoder.generate_fused._cache_size() == 1
  assert len(list(decoder.stream([[1, 2, 3]], 9))) == 9
  assert decoder.prefill._cache_size() == 1
  assert decoder.step._cache_size() == 1


def test_stream_yields_the_tokens_of_generate(sampler):
  rng = jax.random.PRNGKey(3)
  generated = sampler.generate(PROMPTS, NEW, rng=rng)
  streamed = np.stack(list(sampler.stream(PROMPTS, NEW, rng=rng)), axis=1)
  assert [row.tolist() for row in streamed] == generated


def test_temperature_sampling_is_reproducible_per_rng(sampler):
  first = sampler.generate(PROMPTS, NEW, rng=jax.random.PRNGKey(7))
  assert sampler.generate(PROMPTS, NEW, rng=jax.random.PRNGKey(7)) == first
  assert sampler.generate(PROMPTS, NEW, rng=jax.random.PRNGKey(8)) != first


def _first_new_token_after_start(tokens):
  """(index, token): the first token after index 0 that has not occurred before it."""
  return next((j, t) for j, t in enumerate(tokens) if j and t not in tokens[:j])


def test_stop_tokens_end_a_sequence_and_are_excluded(params, greedy_tokens):
  index, stop = _first_new_token_after_start(greedy_tokens[0])
  want = [seq[:seq.index(stop)] if stop in seq else seq for seq in greedy_tokens]
  assert want[0] == greedy_tokens[0][:index] and any(len(w) == NEW for w in want)
  stopping = sample.Decoder(CFG, params, sample.SamplingConfig(greedy=True, stop_tokens=(stop,)))
  assert stopping.generate(PROMPTS, NEW) == want
  streamed = np.stack(list(stopping.stream(PROMPTS[:1], NEW)), axis=1)[0].tolist()
  assert streamed == want[0] + [-1]  # the stop token is marked, not yielded, then the stream ends


def test_top_k_1_is_greedy(params, greedy_tokens):
  top1 = sample.Decoder(CFG, params, sample.SamplingConfig(top_k=1, temperature=2.0))
  assert top1.generate(PROMPTS, NEW, rng=jax.random.PRNGKey(5)) == greedy_tokens


# Probabilities 0.1, 0.4, 0.05, 0.3, 0.15: in order, tokens 1, 3, 4, 0, 2.
PROBS = np.array([0.1, 0.4, 0.05, 0.3, 0.15])


@pytest.mark.parametrize("top_k,top_p,kept", [
    (2, 1.0, {1, 3}),
    (3, 1.0, {1, 3, 4}),
    (0, 0.3, {1}),
    (0, 0.5, {1, 3}),
    (0, 0.72, {1, 3, 4}),
    (0, 0.9, {0, 1, 3, 4}),
    (3, 0.5, {1, 3}),  # top-p applies to the renormalised top-k: 0.47, 0.35, 0.18
    (2, 0.9, {1, 3}),
])
def test_filters_keep_exactly_the_right_tokens(top_k, top_p, kept):
  logits = np.log(np.stack([PROBS, PROBS[::-1]]))
  filtered = np.asarray(sample.filter_logits(jnp.asarray(logits), top_k=top_k, top_p=top_p))
  for row, kept_row in ((0, kept), (1, {4 - t for t in kept})):
    mask = np.isin(np.arange(5), list(kept_row))
    np.testing.assert_array_equal(filtered[row, mask], logits[row, mask].astype(np.float32))
    assert np.all(filtered[row, ~mask] == -np.inf)


def test_sampling_draws_only_kept_tokens_in_proportion():
  logits = jnp.log(jnp.asarray(PROBS, jnp.float32))[None]
  sampling = sample.SamplingConfig(top_k=2)
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  draws = np.asarray(jax.vmap(lambda k: sample.next_token(logits, k, sampling))(keys))[:, 0]
  assert set(draws.tolist()) == {1, 3}
  assert abs((draws == 1).mean() - 0.4 / 0.7) < 0.03
  cold = sample.SamplingConfig(temperature=1e-3)
  assert int(sample.next_token(logits, jax.random.PRNGKey(1), cold)[0]) == 1


def test_left_pad_keeps_each_prompts_own_positions():
  tokens, real, positions = sample.left_pad([[1, 2], [3, 4, 5], []], 4, pad_id=9)
  np.testing.assert_array_equal(tokens, [[9, 9, 1, 2], [9, 3, 4, 5], [9, 9, 9, 9]])
  np.testing.assert_array_equal(real, [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]])
  np.testing.assert_array_equal(positions, [[0, 0, 0, 1], [0, 0, 1, 2], [0, 0, 0, 0]])


def test_prompt_plus_new_tokens_beyond_the_context_is_an_error(greedy):
  with pytest.raises(ValueError, match="exceeds the model's context of 48"):
    greedy.generate([[1] * 40, [2]], 9)
  with pytest.raises(ValueError, match="exceeds the model's context of 48"):
    next(greedy.stream([[1] * 48], 1))
  with pytest.raises(ValueError, match="empty"):
    greedy.generate([[]], 4)
  assert len(greedy.generate([[1] * 38], NEW)[0]) == NEW  # exactly the context is fine

