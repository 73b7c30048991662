"""Byte streams for truncated backpropagation through time (the 2017 byte mLSTM).

An RNN trained on chunks carries its state from one batch to the next, so row r
of every batch must continue row r of the batch before. Each epoch shuffles the
documents (a pure function of seed and epoch), concatenates them and cuts the
result into `batch_size` equal segments; row r reads segment r of epoch 0, then
segment r of epoch 1, and so on, `seq_len` bytes a batch. The iterator state is
the batch count alone, so a resumed run reads exactly what an uninterrupted one
would. Documents are concatenated as given: put any separator the model should
see (e.g. lineage.eval.probe.preprocess's "\\n " prefix) into them.
"""

from typing import Sequence

import numpy as np


def _as_byte_arrays(documents):
  """uint8 arrays of the non-empty documents; a str among them is an error, not a guess."""
  arrays = []
  for i, doc in enumerate(documents):
    if not isinstance(doc, (bytes, bytearray)):
      raise TypeError(f"document {i} is a {type(doc).__name__}, not bytes; encode text first, "
                      "e.g. text.encode('utf-8')")
    if doc:
      arrays.append(np.frombuffer(bytes(doc), np.uint8))
  return arrays


def _check_rows(batch_size, process_index, process_count):
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} must be a positive multiple of the "
                     f"{process_count} processes")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is outside 0..{process_count - 1}")
  per_process = batch_size // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def _windows(segments, start, seq_len):
  """{"inputs", "targets"} int32 [rows, seq_len] from the rows of `segments` at `start`."""
  window = segments[:, start:start + seq_len + 1].astype(np.int32)
  return {"inputs": window[:, :-1], "targets": window[:, 1:]}


class ByteStreams:
  """Endless training batches {"inputs", "targets": int32 [rows, seq_len]} of continuing rows.

  `batch_size` is the global batch; this process yields its rows
  [process_index * batch_size / process_count, ...), the rows that
  lineage.train.loop.device_batch expects from it.
  """

  def __init__(self, documents: Sequence[bytes], batch_size, seq_len, seed=0, process_index=0,
               process_count=1):
    self._documents = _as_byte_arrays(documents)
    self._rows = _check_rows(batch_size, process_index, process_count)
    if seq_len < 1:
      raise ValueError(f"seq_len={seq_len} must be at least 1")
    total = sum(len(d) for d in self._documents)
    self.segment_len = total // batch_size
    if self.segment_len < seq_len + 1:
      raise ValueError(f"the documents hold {total} bytes, too few for {batch_size} streams of "
                       f"at least seq_len + 1 = {seq_len + 1} bytes; give more text or lower "
                       "the batch size or the sequence length")
    self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
    self.step = 0
    self._epochs = {}

  def _segments(self, epoch):
    """[rows, segment_len] uint8: this process's rows of the epoch's shuffled concatenation."""
    if epoch not in self._epochs:
      order = np.random.default_rng((self.seed, epoch)).permutation(len(self._documents))
      stream = np.concatenate([self._documents[i] for i in order])
      segments = stream[:self.segment_len * self.batch_size].reshape(self.batch_size, -1)
      self._epochs = {e: s for e, s in self._epochs.items() if e == epoch - 1}
      self._epochs[epoch] = segments[self._rows]
    return self._epochs[epoch]

  def __iter__(self):
    return self

  def __next__(self):
    start = self.step * self.seq_len
    first, last = start // self.segment_len, (start + self.seq_len) // self.segment_len
    # A window crossing an epoch boundary reads on into the next epoch's segment.
    segments = np.concatenate([self._segments(e) for e in range(first, last + 1)], axis=1)
    self.step += 1
    return _windows(segments, start - first * self.segment_len, self.seq_len)

  def get_state(self):
    return {"step": self.step}

  def set_state(self, state):
    self.step = int(state["step"])


def eval_streams(documents: Sequence[bytes], batch_size, seq_len, max_batches=None,
                 process_index=0, process_count=1):
  """One pass over the documents in their order, cut into `batch_size` continuing rows.

  Returns a list of {"inputs", "targets"} batches (this process's rows), at most
  `max_batches` of them (None or 0: all); the bytes that do not fill a whole batch at the
  end of each row are left out.
  """
  arrays = _as_byte_arrays(documents)
  rows = _check_rows(batch_size, process_index, process_count)
  if seq_len < 1:
    raise ValueError(f"seq_len={seq_len} must be at least 1")
  total = sum(len(d) for d in arrays)
  segment_len = total // batch_size
  count = (segment_len - 1) // seq_len if segment_len else 0
  if max_batches:
    count = min(count, max_batches)
  if count < 1:
    raise ValueError(f"the evaluation documents hold {total} bytes, too few for one batch of "
                     f"{batch_size} rows x {seq_len + 1} bytes; give more text or lower the "
                     "batch size or the sequence length")
  segments = np.concatenate(arrays)[:segment_len * batch_size].reshape(batch_size, -1)[rows]
  return [_windows(segments, b * seq_len, seq_len) for b in range(count)]
