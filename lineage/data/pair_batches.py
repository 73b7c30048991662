"""Translation batches built by token count, with length bucketing, as in the 2017
Transformer ("sentence pairs were batched together by approximate sequence length", about
25,000 source and 25,000 target tokens a batch).

A pair goes to the shortest bucket that holds both of its sides (the source with its end
token, the target with its start or end token). A bucket's batches hold as many rows as
keep rows x bucket length within `max_tokens`, rounded down to a multiple of
`row_multiple` (the data-parallel devices), so each bucket has one shape and the train step
compiles once per bucket. Each epoch shuffles the pairs within buckets and then all batches,
from (seed, epoch) alone: the state is (epoch, batch index), and a resumed run sees the
batches an uninterrupted run would.
"""

import numpy as np


class TokenBatches:
  """An endless iterator over training batches of (source ids, target ids) pairs.

  A batch holds, all [rows, bucket length] int32: `source` (ids, end token), `target_input`
  (start token, ids), `target` (ids, end token) and their segment ids `source_segment_ids`
  and `target_segment_ids` (1 real, 0 padding; rows past the last pair are all padding).
  Pairs longer than the longest bucket are left out; `dropped` counts them.
  """

  def __init__(self, pairs, *, max_tokens, bucket_lengths, bos_id, eos_id, seed, shuffle=True,
               row_multiple=1, process_index=0, process_count=1):
    self.bucket_lengths = sorted(bucket_lengths)
    self.bos_id, self.eos_id, self.seed, self.shuffle = bos_id, eos_id, seed, shuffle
    self.rows = {}
    for length in self.bucket_lengths:
      rows = max_tokens // length // row_multiple * row_multiple
      if rows == 0:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for {row_multiple} rows of "
                         f"the {length}-token bucket; raise max_tokens or lower the buckets")
      if rows % process_count:
        raise ValueError(f"{rows} rows of the {length}-token bucket do not split over "
                         f"{process_count} processes; make row_multiple a multiple of it")
      self.rows[length] = rows
    self.pairs = [(list(s), list(t)) for s, t in pairs]
    self.buckets = {length: [] for length in self.bucket_lengths}
    self.dropped = 0
    for i, (source, target) in enumerate(self.pairs):
      need = max(len(source), len(target)) + 1
      fits = [length for length in self.bucket_lengths if length >= need]
      if fits:
        self.buckets[fits[0]].append(i)
      else:
        self.dropped += 1
    if self.dropped == len(self.pairs):
      raise ValueError(f"none of the {len(self.pairs)} pairs fits the longest bucket of "
                       f"{self.bucket_lengths[-1]} tokens; raise the bucket lengths")
    self.process_index, self.process_count = process_index, process_count
    self.epoch, self.index = 0, 0
    self._plan = None

  def plan(self, epoch):
    """The epoch's batches as (bucket length, pair indices), in the order they come."""
    rng = np.random.default_rng((self.seed, epoch))
    batches = []
    for length in self.bucket_lengths:
      members = np.array(self.buckets[length], int)
      if self.shuffle:
        members = rng.permutation(members)
      rows = self.rows[length]
      batches += [(length, members[i:i + rows]) for i in range(0, len(members), rows)]
    if self.shuffle:
      batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches

  def batch(self, length, members):
    """This process's rows of the batch of pairs `members` padded to `length`."""
    rows = self.rows[length]
    out = {name: np.zeros((rows, length), np.int32) for name in (
        "source", "source_segment_ids", "target_input", "target", "target_segment_ids")}
    for row, i in enumerate(members):
      source, target = self.pairs[i]
      for name, ids in (("source", source + [self.eos_id]),
                        ("target_input", [self.bos_id] + target),
                        ("target", target + [self.eos_id])):
        out[name][row, :len(ids)] = ids
      out["source_segment_ids"][row, :len(source) + 1] = 1
      out["target_segment_ids"][row, :len(target) + 1] = 1
    per_process = rows // self.process_count
    mine = slice(self.process_index * per_process, (self.process_index + 1) * per_process)
    return {name: x[mine] for name, x in out.items()}

  def one_pass(self):
    """Every batch of epoch 0 once, for evaluation (build with shuffle=False for file order
    within buckets)."""
    for length, members in self.plan(0):
      yield self.batch(length, members)

  def __iter__(self):
    return self

  def __next__(self):
    if self._plan is None:
      self._plan = self.plan(self.epoch)
    length, members = self._plan[self.index]
    self.index += 1
    if self.index == len(self._plan):
      self.epoch, self.index, self._plan = self.epoch + 1, 0, None
    return self.batch(length, members)

  def get_state(self):
    return {"epoch": self.epoch, "index": self.index}

  def set_state(self, state):
    self.epoch, self.index, self._plan = int(state["epoch"]), int(state["index"]), None
