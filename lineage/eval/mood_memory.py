"""Does a language model use the mood it has read? The prefix gap.

A sentiment unit matters to a language model only if the model uses it: after
"The price is superb." it should expect another positive opinion word more than
after "The price is dreadful.". The prefix gap is that difference: the mean, over
random pairs, of log p(word | same-mood prefix) - log p(word | other-mood prefix)
for the next sentence's opinion word, in nats. It is about 0 for a model that
forgets the mood at each sentence however well a probe reads its state, and
grows when the model carries the mood forward (the mechanism of Radford et al.
2017, and what lets a clamped unit steer samples).
"""

import numpy as np

from lineage.data import reviews

TEMPLATE = "\n The {aspect} is {adjective}. The {next_aspect} is "


def prefix_pairs(num_pairs, seed=0):
  """[(same_mood_prefix, other_mood_prefix, word)]: word has the mood of the first prefix."""
  if num_pairs <= 0:
    raise ValueError(f"num_pairs must be positive, got {num_pairs}")
  rng = np.random.default_rng(seed)
  moods = (reviews.NEGATIVE_ADJECTIVES, reviews.POSITIVE_ADJECTIVES)
  pairs = []
  for i in range(num_pairs):
    same, other = moods[i % 2], moods[1 - i % 2]
    aspect, next_aspect = (reviews.ASPECTS[k] for k in rng.integers(len(reviews.ASPECTS), size=2))
    prefix = lambda adjectives: TEMPLATE.format(
        aspect=aspect, next_aspect=next_aspect,
        adjective=adjectives[rng.integers(len(adjectives))])
    pairs.append((prefix(same), prefix(other), same[rng.integers(len(same))]))
  return pairs


def prefix_gap(word_logprob, num_pairs=200, seed=0):
  """Mean gap in nats. word_logprob(prefixes, words) -> log p(word | prefix) for each pair,
  the log-probabilities of all of the word's bytes summed."""
  pairs = prefix_pairs(num_pairs, seed)
  words = [w for _, _, w in pairs]
  same = np.asarray(word_logprob([p for p, _, _ in pairs], words), np.float64)
  other = np.asarray(word_logprob([p for _, p, _ in pairs], words), np.float64)
  if same.shape != (num_pairs,) or other.shape != (num_pairs,):
    raise ValueError(f"word_logprob must return one log-probability per pair ({num_pairs}), got "
                     f"shapes {same.shape} and {other.shape}")
  return float(np.mean(same - other))
