"""The prefix gap: 0 for a model that forgets the mood, positive for one that carries it."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from lineage.data import reviews
from lineage.eval import mood_memory
from lineage.models import mlstm


def _oracle(remembers):
  """log p(word | prefix) of a model that spreads its mass evenly over all 48 opinion words, or
  (remembers) puts 90% of it on the 24 of the prefix's mood."""
  def word_logprob(prefixes, words):
    out = []
    for prefix, word in zip(prefixes, words):
      first = prefix.split(" is ")[1].split(".")[0]
      same = (first in reviews.POSITIVE_ADJECTIVES) == (word in reviews.POSITIVE_ADJECTIVES)
      out.append(np.log((0.9 if same else 0.1) / 24) if remembers else np.log(1 / 48))
    return np.array(out)
  return word_logprob


def test_prefix_gap_separates_memory_from_none():
  assert mood_memory.prefix_gap(_oracle(False), num_pairs=50) == pytest.approx(0.0)
  assert mood_memory.prefix_gap(_oracle(True), num_pairs=50) == pytest.approx(np.log(9.0))


def test_prefix_pairs_differ_only_in_the_mood():
  pairs = mood_memory.prefix_pairs(40, seed=3)
  assert pairs == mood_memory.prefix_pairs(40, seed=3)
  for i, (same, other, word) in enumerate(pairs):
    mood = reviews.POSITIVE_ADJECTIVES if i % 2 else reviews.NEGATIVE_ADJECTIVES
    assert word in mood and same.split(" is ")[1].split(".")[0] in mood
    assert other.split(" is ")[1].split(".")[0] not in mood
    assert same.split(" is ")[0] == other.split(" is ")[0] and same.endswith(" is ")
  with pytest.raises(ValueError, match="num_pairs must be positive"):
    mood_memory.prefix_pairs(0)
  with pytest.raises(ValueError, match="one log-probability per pair"):
    mood_memory.prefix_gap(lambda prefixes, words: np.zeros(3), num_pairs=4)


@pytest.mark.slow
def test_continuation_logprob_sums_the_continuation_bytes():
  cfg = mlstm.MLSTMConfig(hidden_dim=16, embed_dim=8)
  params = nn.unbox(mlstm.init_params(cfg, jax.random.PRNGKey(0)))
  prefixes, words = [b"\n The price is ", b"\n ab"], [b"superb", b"c"]
  got = mlstm.continuation_logprob(cfg, params, prefixes, words)
  for prefix, word, value in zip(prefixes, words, got):
    tokens = np.frombuffer(prefix + word, np.uint8).astype(np.int32)[None]
    logits, _ = mlstm.MLSTM(cfg).apply({"params": params}, tokens[:, :-1])
    logprobs = -optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])[0]
    assert value == pytest.approx(float(logprobs[len(prefix) - 1:].sum()), rel=1e-5)
  with pytest.raises(ValueError, match="non-empty prefix"):
    mlstm.continuation_logprob(cfg, params, [b""], [b"x"])
