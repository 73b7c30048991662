"""Supervised fine-tuning on demonstrations: the language-model loss on the response only.

A demonstration is a prompt and the response a labeller wrote for it; the model is trained
to continue the prompt with the response and an end-of-text token, and the prompt's tokens
carry no loss (predicting the user's request is not the job). Examples are packed into
fixed-length rows with segment ids and restarting positions, so attention never crosses two
examples and no row is mostly padding. The loss is `lineage.train.lm_loss` with the response
mask as its weights; the model is any GPT, started from a pre-trained one by `init_from`.
"""

import dataclasses

import numpy as np


def examples(demonstrations, eot_id):
  """(examples, how many were skipped): `example` of each (prompt, response) pair, leaving
  out those whose response is empty (a demonstration of nothing, most likely a data error)."""
  kept = [example(p, r, eot_id) for p, r in demonstrations if len(r)]
  return kept, len(demonstrations) - len(kept)


def example(prompt, response, eot_id):
  """(tokens, loss mask) of one demonstration: prompt, response, end of text; the mask
  covers the response and the end of text.

  The general form, which packing takes, is any token list with a mask (a dialogue trained
  on every assistant turn)."""
  if not len(prompt):
    raise ValueError("an empty prompt; start it with at least one token")
  tokens = list(prompt) + list(response) + [eot_id]
  mask = [0] * len(prompt) + [1] * (len(response) + 1)
  return tokens, mask


@dataclasses.dataclass
class Packed:
  """Rows of the LM loss's batch keys: inputs, targets, weights, positions, segment_ids,
  each [rows, seq_len] int32 (weights float32). skipped_empty: examples with no trained
  token left out."""
  arrays: dict
  skipped_empty: int = 0

  def __len__(self):
    return len(self.arrays["inputs"])


def pack(examples, seq_len):
  """Packs (tokens, mask) examples, in order, into rows of `seq_len` next-token pairs.

  An example of n tokens takes n - 1 pairs in a row (its first token predicts the second);
  a new row starts when it does not fit. Each example gets its own segment id within a row
  and positions from 0. An example whose mask is zero after its first token (nothing to
  learn) is skipped and counted; one longer than seq_len + 1 tokens is an error.
  """
  rows, row, skipped = [], [], 0
  used = 0
  for i, (tokens, mask) in enumerate(examples):
    if len(tokens) != len(mask):
      raise ValueError(f"example {i}: {len(tokens)} tokens but {len(mask)} mask entries")
    if not any(mask[1:]):
      skipped += 1
      continue
    pairs = len(tokens) - 1
    if pairs > seq_len:
      raise ValueError(f"example {i} has {len(tokens)} tokens, more than seq_len + 1 = "
                       f"{seq_len + 1}; raise --config.data.seq_len (within the context) or "
                       "shorten the example")
    if used + pairs > seq_len:
      rows.append(row)
      row, used = [], 0
    row.append((tokens, mask))
    used += pairs
  if row:
    rows.append(row)
  if not rows:
    raise ValueError("no example to train on: none has a trained token")
  shape = (len(rows), seq_len)
  arrays = {k: np.zeros(shape, np.int32) for k in ("inputs", "targets", "positions",
                                                   "segment_ids")}
  arrays["weights"] = np.zeros(shape, np.float32)
  for r, packed in enumerate(rows):
    start = 0
    for segment, (tokens, mask) in enumerate(packed, start=1):
      n = len(tokens) - 1
      span = slice(start, start + n)
      arrays["inputs"][r, span] = tokens[:-1]
      arrays["targets"][r, span] = tokens[1:]
      arrays["weights"][r, span] = mask[1:]
      arrays["positions"][r, span] = np.arange(n)
      arrays["segment_ids"][r, span] = segment
      start += n
  return Packed(arrays, skipped)


class EpochBatches:
  """Batches of packed rows, reshuffled every epoch from (seed, epoch); the state is the
  number of batches drawn, so a resumed run sees the same batches."""

  def __init__(self, arrays, batch_size, seed):
    rows = len(next(iter(arrays.values())))
    if rows < batch_size:
      raise ValueError(f"{rows} packed rows, fewer than one batch of {batch_size}; lower "
                       "--config.train.batch_size or give more examples")
    self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
    self.rows, self.per_epoch = rows, rows // batch_size
    self.drawn = 0

  def __iter__(self):
    return self

  def __next__(self):
    epoch, index = divmod(self.drawn, self.per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
    rows = order[index * self.batch_size:(index + 1) * self.batch_size]
    self.drawn += 1
    return {k: v[rows] for k, v in self.arrays.items()}

  def get_state(self):
    return {"drawn": self.drawn}

  def set_state(self, state):
    self.drawn = int(state["drawn"])
