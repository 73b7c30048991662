"""Captions as DALL-E reads them: a word tokenizer over a dataset's closed vocabulary, the
shapes' training captions, and their held-out prompts.

Words rather than bytes: every caption is a few words from a vocabulary of a few dozen, so a
word per token keeps the text part of the stream at 12 tokens instead of about 50 bytes. A
word outside the vocabulary is an error that lists the vocabulary, not a silent unknown token.
"""

import itertools

import numpy as np

from lineage.data import shapes
from lineage.data.builders import digits as digits_builder

# Every word a shapes caption can hold: the attributes, the prefixes CLIP's captions use, and
# "in the" before a position.
SHAPES_VOCAB = tuple(sorted(
    {w for names in shapes.ATTRIBUTES.values() for name in names for w in name.split()} |
    set("a photo of picture drawing there is in the".split())))
# Every word of the digits' caption templates and class names.
DIGITS_VOCAB = tuple(sorted({w for t in digits_builder.TEMPLATES for w in t.split() if w != "{}"}
                            | set(digits_builder.CLASS_NAMES)))


class WordTokenizer:
  """Lower-cased, whitespace-split words of `vocab` -> ids (a trailing period is dropped)."""

  def __init__(self, vocab):
    self.vocab = tuple(vocab)
    self.ids = {w: i for i, w in enumerate(self.vocab)}

  @property
  def vocab_size(self):
    return len(self.vocab)

  def encode(self, text):
    words = text.lower().strip().rstrip(".").split()
    unknown = [w for w in words if w not in self.ids]
    if unknown:
      raise ValueError(f"caption {text!r} has words outside the caption vocabulary: {unknown}; "
                       f"use only: {' '.join(self.vocab)}")
    return [self.ids[w] for w in words]

  def decode(self, ids):
    return " ".join(self.vocab[i] for i in ids)


def training_captions(labels, seed):
  """One caption per scene naming its colour and shape always, and each of its size and
  position with probability 1/2: the colour is what the held-out prompts ask for."""
  rng = np.random.default_rng([seed, 3])
  coins = rng.random((len(labels["shape"]), 2)) < 0.5
  return [shapes.caption(shapes.names(labels, i), "a ",
                         ("colour",) + tuple(a for a, c in zip(("size", "position"), coins[i]) if c))
          for i in range(len(labels["shape"]))]


def held_out_prompts(held_out=shapes.HELD_OUT):
  """Prompts for the held-out (shape, colour) pairs, at every size and position, with the
  pair each asks for: ([caption], [(shape index, colour index)])."""
  texts, targets = [], []
  for (shape, colour), size, position in itertools.product(
      sorted(shapes.check_held_out(held_out)), shapes.SIZES, shapes.POSITIONS):
    scene = {"shape": shape, "colour": colour, "size": size, "position": position}
    texts.append(shapes.caption(scene))
    targets.append((shapes.SHAPES.index(shape), shapes.COLOURS.index(colour)))
  return texts, np.asarray(targets, np.int32)
