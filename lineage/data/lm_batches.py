"""Fixed-length language-model batches drawn from one long token stream (`text_file` runs).

A single text file is one document, so packing has nothing to do; instead each
training batch is a set of random windows that is a pure function of (seed,
step): the iterator state is just the step count, and a resumed run sees
exactly the batches an uninterrupted run would. Named datasets go through the
grain pipeline (lineage.data.pipeline) instead.
"""

import numpy as np


def tokenize_documents(docs, tokenizer):
  """One stream: each document's tokens followed by the end-of-text token."""
  ids = []
  for doc in docs:
    ids.extend(tokenizer.encode(doc))
    ids.append(tokenizer.eot_id)
  return np.asarray(ids, np.int32)


def read_text_file(path):
  """The file's text; invalid UTF-8 is an error that names the byte offset."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f"--config.data.path={path} does not exist; give a UTF-8 text file")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not valid UTF-8 at byte {e.start} ({e.reason}); convert it "
                     "with e.g. `iconv -f latin1 -t utf-8` first") from None


def split_tokens(tokens, eval_fraction):
  """(train, eval): the last `eval_fraction` of the stream is held out."""
  split = int(len(tokens) * (1 - eval_fraction))
  return tokens[:split], tokens[split:]


class RandomWindows:
  """Training batches of random windows; state {"step": n} makes them resumable.

  Each process draws the whole global batch's offsets from (seed, step) and
  keeps its own rows, so processes never need to talk about data.
  """

  def __init__(self, tokens, seq_len, batch_size, seed, process_index=0, process_count=1):
    if len(tokens) < seq_len + 1:
      raise ValueError(f"the corpus has {len(tokens)} tokens, too few for windows of "
                       f"{seq_len}; use a larger corpus or a smaller --config.data.seq_len")
    if batch_size % process_count:
      raise ValueError(f"batch_size={batch_size} is not divisible by {process_count} processes")
    self.tokens, self.seq_len, self.batch_size, self.seed = tokens, seq_len, batch_size, seed
    per_process = batch_size // process_count
    self._rows = slice(process_index * per_process, (process_index + 1) * per_process)
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng((self.seed, self.step))
    offsets = rng.integers(0, len(self.tokens) - self.seq_len, self.batch_size)[self._rows]
    self.step += 1
    windows = np.stack([self.tokens[o:o + self.seq_len + 1] for o in offsets])
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

  def get_state(self):
    return {"step": self.step}

  def set_state(self, state):
    self.step = int(state["step"])


def sequential_windows(tokens, seq_len, batch_size, max_batches=None, process_index=0,
                       process_count=1):
  """Non-overlapping windows in order, for evaluation; the last partial batch is dropped."""
  per_batch = batch_size * seq_len
  count = (len(tokens) - 1) // per_batch
  if max_batches:
    count = min(count, max_batches)
  per_process = batch_size // process_count
  for b in range(count):
    chunk = tokens[b * per_batch: b * per_batch + per_batch + 1]
    inputs, targets = chunk[:-1].reshape(batch_size, seq_len), chunk[1:].reshape(batch_size, seq_len)
    rows = slice(process_index * per_process, (process_index + 1) * per_process)
    yield {"inputs": inputs[rows], "targets": targets[rows]}


def unigram_entropy(tokens):
  """Entropy in nats of the token frequencies: the loss of the best context-free model."""
  counts = np.bincount(tokens)
  p = counts[counts > 0] / len(tokens)
  return float(-(p * np.log(p)).sum())

