"""Packed language-model batches from a random-access source of documents, with grain.

`lm_pipeline` turns records (dicts holding text under `text_key`, e.g. what
`tfds.data_source` returns) into training batches:

1. records are sharded by JAX process (`records[process_index::process_count]`:
   disjoint, together all of them), then shuffled per epoch from the seed;
2. each document is tokenized and followed by the end-of-text token; bytes that
   are not valid UTF-8 become U+FFFD (`errors="replace"`), so a damaged record
   costs a few replacement tokens, never the run;
3. grain's ConcatThenSplit packs the token stream, in order, into rows of
   `seq_len + 1` tokens with per-row segment ids (1, 2, ... per document piece,
   0 for padding) and positions that restart at 0 for every piece. A document
   that does not fit in the rest of a row is split: its remainder opens the
   next row as a new piece at position 0 (absolute positions stay within the
   model's context), so no token is dropped and only padding at the very end
   of a finite stream is wasted;
4. a row becomes inputs = row[:-1] and targets = row[1:]; a target is scored
   (weight 1) only when it belongs to the same piece as its input token. So the
   end-of-text token is the last scored target of each document, the first
   token of the next document is not scored (nothing of its document precedes
   it), nor is the first token of a split-off remainder, nor padding;
5. rows are batched `batch_size // process_count` at a time; a short last batch
   of a finite stream is padded with empty rows (weight 0), keeping shapes
   static; with `worker_count > 0`, grain worker processes prefetch batches.

The iterator's state is grain's, encoded to plain JSON (tuples, bytes and
non-string keys are tagged), plus the settings it is only valid for, so a
resume with another seed, shape, shard or worker count fails loudly instead of
silently reading other data.
"""

import base64
import functools

import grain
from grain import experimental as grain_exp
import numpy as np

# Two reader threads overlap a disk-backed source's reads (ArrayRecord); grain's
# defaults (16 threads, 500 prefetched records) cost more in per-record
# bookkeeping than they save: 85k against 390k tokens/s on tinyshakespeare lines.
# `worker_count` is the knob for more throughput.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=32)


class _Tokenize:
  """Record -> {"tokens": int32 ids of its text followed by end-of-text}; picklable for workers."""

  def __init__(self, tokenizer, text_key):
    self.tokenizer, self.text_key = tokenizer, text_key

  def __call__(self, record):
    text = record[self.text_key]
    if isinstance(text, np.ndarray):  # a uint8 chunk of raw bytes (enwik8)
      text = text.tobytes()
    if isinstance(text, bytes):
      text = text.decode("utf-8", errors="replace")
    ids = self.tokenizer.encode(text)
    return {"tokens": np.asarray([*ids, self.tokenizer.eot_id], np.int32)}


def _packed_rows(records, tokenizer, seq_len, text_key):
  """MapDataset of records -> IterDataset of packed rows of seq_len + 1 tokens."""
  docs = records.map(_Tokenize(tokenizer, text_key)).to_iter_dataset(_READ_OPTIONS)
  return grain_exp.ConcatThenSplitIterDataset(docs, length_struct={"tokens": seq_len + 1})


def _take_rows(rows, batch):
  return {k: v[rows] for k, v in batch.items()}


def _lm_batch(packed):
  """Packed rows [batch, seq_len + 1] -> the model's and the loss's inputs [batch, seq_len]."""
  tokens, segments = packed["tokens"], packed["tokens_segment_ids"]
  same_doc = (segments[:, 1:] == segments[:, :-1]) & (segments[:, :-1] > 0)
  return {"inputs": tokens[:, :-1].astype(np.int32), "targets": tokens[:, 1:].astype(np.int32),
          "positions": packed["tokens_positions"][:, :-1].astype(np.int32),
          "segment_ids": segments[:, :-1].astype(np.int32),
          "weights": same_doc.astype(np.float32)}


def _batched(rows, size):
  """Batches of `size` rows; a short last one is padded with empty rows (segment 0, weight 0)."""
  return rows.batch(size, batch_fn=functools.partial(grain_exp.batch_and_pad, batch_size=size))


def _per_process_rows(batch_size, process_index, process_count):
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} is not divisible by {process_count} processes")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, {process_count})")
  return batch_size // process_count


def lm_pipeline(source, tokenizer, *, seq_len, batch_size, seed, shuffle=True, num_epochs=None,
                process_index=0, process_count=1, worker_count=0, text_key="text"):
  """This process's packed training batches of `batch_size // process_count` rows.

  `num_epochs=None` repeats forever. With a finite number, processes (and
  workers) may end after different numbers of batches. The batches depend on
  `worker_count` (each worker packs its own slice of the records), so a resumed
  run must use the same one.
  """
  rows = _per_process_rows(batch_size, process_index, process_count)
  records = grain.MapDataset.source(source)[process_index::process_count]
  if not len(records):
    raise ValueError(f"process {process_index} of {process_count} gets none of the "
                     f"{len(source)} records; use a larger dataset")
  if shuffle:
    records = records.shuffle(seed=seed)
  if num_epochs != 1:
    records = records.repeat(num_epochs)
  ds = _batched(_packed_rows(records, tokenizer, seq_len, text_key), rows).map(_lm_batch)
  if worker_count:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  settings = {"num_records": len(source), "seq_len": seq_len, "batch_size": batch_size,
              "seed": seed, "shuffle": shuffle, "num_epochs": num_epochs,
              "process_index": process_index, "process_count": process_count,
              "worker_count": worker_count}
  return LMIterator(iter(ds), settings)


def lm_eval_batches(source, tokenizer, *, seq_len, batch_size, max_batches=None, process_index=0,
                    process_count=1, text_key="text"):
  """One in-order pass of packed batches over all of `source`, this process's rows of each.

  Every process packs the whole source and keeps its slice of each global
  batch, so all processes see the same number of batches (collectives in the
  eval step never wait on a process that has run out); evaluation sets are
  small enough for that. Packing and weights are those of `lm_pipeline`.
  """
  rows = _per_process_rows(batch_size, process_index, process_count)
  mine = slice(process_index * rows, (process_index + 1) * rows)
  ds = _batched(_packed_rows(grain.MapDataset.source(source), tokenizer, seq_len, text_key),
                batch_size)
  ds = ds.map(functools.partial(_take_rows, mine)).map(_lm_batch)
  if max_batches:
    ds = grain_exp.LimitIterDataset(ds, count=max_batches)
  return iter(ds)


class LMIterator:
  """Batches with a JSON-serialisable get_state() / set_state() for the checkpoint."""

  def __init__(self, iterator, settings):
    self._iterator, self._settings = iterator, settings

  def __iter__(self):
    return self

  def __next__(self):
    # Copies free worker batches' shared memory now rather than at interpreter exit.
    return {k: np.array(v) for k, v in next(self._iterator).items()}

  def get_state(self):
    return {"settings": self._settings, "grain": _to_json(self._iterator.get_state())}

  def set_state(self, state):
    saved = state["settings"]
    changed = sorted(k for k in self._settings.keys() | saved.keys()
                     if saved.get(k) != self._settings.get(k))
    if changed:
      diff = ", ".join(f"{k}: saved {saved.get(k)!r}, now {self._settings.get(k)!r}"
                       for k in changed)
      raise ValueError(f"the data state was saved by a different pipeline ({diff}); "
                       "resume with the same data settings")
    self._iterator.set_state(_from_json(state["grain"]))

  def close(self):
    """Stops the worker processes, if any."""
    self._iterator.close()


def _to_json(x):
  """grain state -> JSON values; tuples, bytes and dicts with non-string keys are tagged."""
  if isinstance(x, dict):
    if all(isinstance(k, str) for k in x):
      return {k: _to_json(v) for k, v in x.items()}
    return {"__items__": [[_to_json(k), _to_json(v)] for k, v in x.items()]}
  if isinstance(x, tuple):
    return {"__tuple__": [_to_json(v) for v in x]}
  if isinstance(x, list):
    return [_to_json(v) for v in x]
  if isinstance(x, bytes):
    return {"__bytes__": base64.b64encode(x).decode("ascii")}
  if isinstance(x, np.generic):
    return x.item()
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  raise TypeError(f"cannot save {type(x).__name__} in the data state: {x!r}")


def _from_json(x):
  """Inverse of `_to_json`."""
  if isinstance(x, list):
    return [_from_json(v) for v in x]
  if not isinstance(x, dict):
    return x
  if x.keys() == {"__items__"}:
    return {_from_json(k): _from_json(v) for k, v in x["__items__"]}
  if x.keys() == {"__tuple__"}:
    return tuple(_from_json(v) for v in x["__tuple__"])
  if x.keys() == {"__bytes__"}:
    return base64.b64decode(x["__bytes__"])
  return {k: _from_json(v) for k, v in x.items()}
