"""Emergent in-context learning in a small GPT: a fresh random mapping in every sequence.

Each sequence draws a few item symbols and gives each a label drawn at random for that
sequence alone, then lists (item, label) pairs, "x1 y1 x2 y2 ... xq": the label after
the query item is only predictable by finding that item earlier in the same sequence and
copying what followed it (an induction head, Olsson et al. 2022). Nothing can be learned
into the weights instead: every item carries every label equally often across sequences,
so with no demonstrations (K = 0) the best possible accuracy is chance, 1 / num_labels.
Chan et al. (2022) found in-context learning emerges from "bursty" data, where the few
classes of a sequence recur within it; here every sequence is bursty by construction, and
training draws between 1 and `ways` items per sequence, so that the short, easy mappings
teach the copy before the harder ones need it.

Evaluation uses mappings no training sequence contains: a mapping (its items and their
labels) is held out when its hash falls in one bucket of `heldout_every`; training
rejects those and evaluation draws only them. The last `heldout_items` item symbols never
occur in training at all, and are evaluated separately (new symbols, not only new
mappings).
"""

import dataclasses
import zlib

import numpy as np


@dataclasses.dataclass(frozen=True)
class Spec:
  """The task's vocabulary and sequence shape.

  Items are token ids [0, num_items), labels [num_items, num_items + num_labels). A
  training sequence holds `pairs` (item, label) pairs; an evaluation prompt K pairs and a
  query item, so `pairs` is at least max(K) + 1.
  """
  num_items: int = 64
  num_labels: int = 4
  ways: int = 4
  pairs: int = 17
  heldout_items: int = 16
  heldout_every: int = 8

  def __post_init__(self):
    if self.num_labels < 2:
      raise ValueError(f"icl.num_labels={self.num_labels}: at least 2 labels are needed for a "
                       "task chance can't solve")
    if self.ways < 1 or self.pairs < 2:
      raise ValueError(f"icl.ways={self.ways} and icl.pairs={self.pairs} must be >= 1 and >= 2")
    if not 0 <= self.heldout_items <= self.num_items - self.ways:
      raise ValueError(f"icl.heldout_items={self.heldout_items} must leave at least ways="
                       f"{self.ways} of the {self.num_items} items for training")
    if self.heldout_items and self.heldout_items < self.ways:
      raise ValueError(f"icl.heldout_items={self.heldout_items} is fewer than ways={self.ways}: "
                       "a held-out-symbol mapping draws `ways` of them (or set it to 0)")
    if self.heldout_every < 2:
      raise ValueError(f"icl.heldout_every={self.heldout_every} must be >= 2 (one bucket of "
                       "that many is held out)")

  @property
  def vocab_size(self):
    return self.num_items + self.num_labels

  @property
  def chance(self):
    return 1.0 / self.num_labels

  @property
  def train_items(self):
    return np.arange(self.num_items - self.heldout_items)

  @property
  def new_items(self):
    return np.arange(self.num_items - self.heldout_items, self.num_items)


def spec_from_config(icl_cfg) -> Spec:
  return Spec(num_items=icl_cfg.num_items, num_labels=icl_cfg.num_labels, ways=icl_cfg.ways,
              pairs=icl_cfg.pairs, heldout_items=icl_cfg.heldout_items,
              heldout_every=icl_cfg.heldout_every)


def is_heldout(items, labels, every):
  """Whether the mapping {item: label} is held out of training (its hash's bucket)."""
  order = np.argsort(items)
  key = np.stack([np.asarray(items)[order], np.asarray(labels)[order]]).astype(np.int32)
  return zlib.crc32(key.tobytes()) % every == 0


def draw_mapping(rng, spec, items, ways, heldout):
  """`ways` distinct items of `items` and a random label for each (as label token ids),
  redrawn until the mapping is held out (`heldout` True) or not (False)."""
  while True:
    chosen = rng.choice(items, ways, replace=False)
    labels = rng.integers(0, spec.num_labels, ways) + spec.num_items
    if is_heldout(chosen, labels - spec.num_items, spec.heldout_every) == heldout:
      return chosen, labels


def sequence(rng, items, labels, pairs):
  """`pairs` (item, label) pairs drawn from one mapping, flattened: [2 * pairs]."""
  which = rng.integers(0, len(items), pairs)
  out = np.empty(2 * pairs, np.int32)
  out[0::2], out[1::2] = items[which], labels[which]
  return out


def train_sequences(spec, seed, index, rows):
  """Batch `index` of the training stream: [rows, 2 * pairs] tokens, a function of
  (seed, index) alone so that a resumed run sees the same batches."""
  rng = np.random.default_rng([seed, index])
  out = np.empty((rows, 2 * spec.pairs), np.int32)
  for r in range(rows):
    ways = int(rng.integers(1, spec.ways + 1))
    items, labels = draw_mapping(rng, spec, spec.train_items, ways, heldout=False)
    out[r] = sequence(rng, items, labels, spec.pairs)
  return out


def lm_batch(tokens, spec):
  """Next-token inputs and targets, the loss only on the labels (an item is never
  predictable, a label after its item always could be)."""
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  weights = (targets >= spec.num_items).astype(np.float32)
  return {"inputs": inputs, "targets": targets, "weights": weights}


class TrainBatches:
  """The loop's training iterator: batch i is train_sequences(spec, seed, i); its state is
  the next index."""

  def __init__(self, spec, batch_size, seed):
    self.spec, self.batch_size, self.seed, self.index = spec, batch_size, seed, 0

  def __iter__(self):
    return self

  def __next__(self):
    tokens = train_sequences(self.spec, self.seed, self.index, self.batch_size)
    self.index += 1
    return lm_batch(tokens, self.spec)

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = int(state["index"])


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Prompts of K demonstrations and a query, right-padded to one width: tokens [n, width];
  the answer's logits are read at position 2K (the query item); answers are label ids."""
  shots: int
  tokens: np.ndarray
  answers: np.ndarray


def eval_set(spec, shots, examples, seed, new_symbols=False):
  """`examples` prompts with `shots` demonstrations each, from held-out mappings (of the
  training items, or of the never-seen items with `new_symbols`). Each prompt's query is
  one of its mapping's items, which the demonstrations may or may not show (at K = 0
  never): what a perfect in-context learner scores is the chance the query was shown,
  plus chance for the rest."""
  if shots + 1 > spec.pairs:
    raise ValueError(f"K={shots} needs {shots + 1} pairs per prompt, more than icl.pairs="
                     f"{spec.pairs} the model is trained on; raise icl.pairs or lower K")
  if new_symbols and not spec.heldout_items:
    raise ValueError("new-symbol evaluation needs icl.heldout_items > 0")
  rng = np.random.default_rng([seed, shots, int(new_symbols)])
  items_pool = spec.new_items if new_symbols else spec.train_items
  width = 2 * spec.pairs - 1
  tokens = np.zeros((examples, width), np.int32)
  answers = np.empty(examples, np.int32)
  for r in range(examples):
    items, labels = draw_mapping(rng, spec, items_pool, spec.ways, heldout=not new_symbols)
    seq = sequence(rng, items, labels, shots + 1)
    tokens[r, :2 * shots + 1] = seq[:-1]
    answers[r] = seq[-1]
  return EvalSet(shots, tokens, answers)


def ideal_accuracy(spec, shots):
  """A perfect in-context learner's expected accuracy at K: the query's item was among K
  uniform draws of `ways` items with probability 1 - (1 - 1/ways)^K."""
  seen = 1.0 - (1.0 - 1.0 / spec.ways) ** shots
  return seen + (1.0 - seen) * spec.chance
