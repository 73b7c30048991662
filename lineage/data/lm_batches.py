"""Fixed-length language-model batches drawn from one long token stream.

This is the simple, exact source of batches for the core: each training batch
is a pure function of (seed, step), so the iterator state is just the step
count and a resumed run sees exactly the batches an uninterrupted run would.
Windows may cross document boundaries, separated by the end-of-text token
(GPT-2's convention); packing with segment ids comes with the grain pipeline.
"""

import math

import numpy as np

from lineage.data import synthetic
from lineage.data.tokenizers import ByteTokenizer


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


def load_corpus(data_cfg):
  """(train_tokens, eval_tokens, tokenizer) for the configured dataset."""
  if data_cfg.tokenizer != "byte":
    raise ValueError(f"tokenizer {data_cfg.tokenizer!r} is not available in this data source; "
                     "use --config.data.tokenizer=byte")
  tokenizer = ByteTokenizer()
  if data_cfg.name == "synthetic_text":
    docs = synthetic.synthetic_documents(data_cfg.num_docs, data_cfg.seed)
    tokens = tokenize_documents(docs, tokenizer)
  elif data_cfg.name == "text_file":
    if not data_cfg.path:
      raise ValueError("data.name=text_file needs --config.data.path=FILE")
    tokens = tokenize_documents([read_text_file(data_cfg.path)], tokenizer)
  else:
    raise ValueError(f"unknown dataset {data_cfg.name!r}; choose synthetic_text or text_file")
  split = int(len(tokens) * (1 - data_cfg.eval_fraction))
  return tokens[:split], tokens[split:], tokenizer


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


def num_eval_batches(tokens, seq_len, batch_size):
  return math.floor((len(tokens) - 1) / (batch_size * seq_len))
