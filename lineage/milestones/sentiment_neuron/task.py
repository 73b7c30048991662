"""The sentiment neuron's training task (Radford et al. 2017): a byte mLSTM language model
trained by truncated backpropagation over continuing byte streams, and the texts it reads.

Texts get the paper's preprocessing (lineage.eval.probe.preprocess) before they become bytes.
"""

import jax

from lineage.data import builders, byte_streams
from lineage.data.builders import synthetic_reviews
from lineage.eval import probe
from lineage.models import config as model_config_lib
from lineage.models import mlstm
from lineage.train import loop, optim
from lineage.train import metrics as metrics_lib


def model_config(cfg):
  return model_config_lib.from_config(mlstm.MLSTMConfig, cfg.model)


def load_split(name, split, data_cfg, num_reviews, seed):
  """A TFDS source; synthetic_reviews is generated at the configured size and seed."""
  if name.partition("/")[0] not in builders.BUILDERS:
    raise ValueError(f"unknown dataset {name!r}; choose text_file or one of "
                     f"{', '.join(sorted(builders.BUILDERS))}")
  config = synthetic_reviews.config(num_reviews, seed) if name == "synthetic_reviews" else None
  return builders.load(name, split, config=config, data_dir=data_cfg.data_dir or None,
                       manual_dir=data_cfg.manual_dir or None)


def decode_all(raw_texts, what):
  """str of each raw byte string; invalid UTF-8 becomes U+FFFD, and the log says how often."""
  texts, broken = [], 0
  for raw in raw_texts:
    try:
      texts.append(raw.decode("utf-8"))
    except UnicodeDecodeError:
      texts.append(raw.decode("utf-8", errors="replace"))
      broken += 1
  if broken:
    metrics_lib.console(f"{what}: {broken} texts held invalid UTF-8, decoded with U+FFFD")
  return texts


def records(source, keys, name, limit=0):
  """The first `limit` records (0: all) as dicts, after checking they hold `keys`."""
  rows = [source[i] for i in range(min(limit or len(source), len(source)))]
  fields = rows[0].keys() if rows else keys
  missing = [k for k in keys if k not in fields]
  if missing:
    raise ValueError(f"{name} records have no field {missing[0]!r}; its fields are "
                     f"{', '.join(sorted(fields))}: set the config's text_key to one of them")
  return rows


def lm_texts(cfg, split):
  """The LM's texts of `split`: data.name's, plus (train only) those of data.extra."""
  data = cfg.data
  if data.name == "text_file":
    if not data.path:
      raise ValueError("data.name=text_file needs --config.data.path=FILE (one text per line)")
    with open(data.path, "rb") as f:
      lines = f.read().split(b"\n")
    cut = max(1, len(lines) // 20)  # the last 5% of lines are held out
    return decode_all(lines[:-cut] if split == "train" else lines[-cut:], data.path)
  sources = [f"{data.name}:{data.text_key}"] + ([s for s in data.extra.split(",") if s]
                                                  if split == "train" else [])
  texts = []
  for spec in sources:
    name, _, key = spec.strip().partition(":")
    key = key or ("sentence" if name == "sst_binary" else "text")
    source = load_split(name, split, data, data.num_reviews, data.seed)
    texts += decode_all([r[key] for r in records(source, [key], name)], f"{name}/{split}")
  return texts


def documents(texts, what):
  """Preprocessed bytes of the non-empty texts: an empty one has nothing to model."""
  kept = [probe.preprocess(t) for t in texts if t.strip()]
  if len(kept) < len(texts):
    metrics_lib.console(f"{what}: skipped {len(texts) - len(kept)} empty texts")
  return kept


def build_task(cfg, with_data=True):
  """The loop's Task: a stateful loss whose (h, c) carry crosses chunk boundaries (truncated
  BPTT), trained on continuing byte streams. with_data=False skips the data (for restoring)."""
  model_cfg = model_config(cfg)
  batch, seq_len = cfg.train.batch_size, cfg.data.seq_len
  task = loop.Task(
      init_params=lambda rng: mlstm.init_params(model_cfg, rng),
      loss_fn=mlstm.lm_loss_fn(model_cfg), train_data=None,
      flops_per_token=mlstm.flops_per_token(model_cfg), tokens_per_batch=batch * seq_len,
      init_carry=lambda b: mlstm.init_carry(model_cfg, b),
      param_groups=optim.ParamGroups.from_decay_mask(mlstm.decay_mask))
  if with_data:
    process = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_docs = documents(lm_texts(cfg, "train"), "train")
    eval_docs = documents(lm_texts(cfg, "validation"), "validation")
    metrics_lib.console(f"LM data: {len(train_docs)} texts, "
                        f"{sum(map(len, train_docs)):,} bytes for training")
    task.train_data = byte_streams.ByteStreams(train_docs, batch, seq_len, cfg.train.seed,
                                               **process)
    task.eval_data = lambda: byte_streams.eval_streams(eval_docs, batch, seq_len,
                                                       cfg.train.eval_batches, **process)
  return task
