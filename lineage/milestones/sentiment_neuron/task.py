"""The sentiment-neuron pipeline (Radford et al. 2017) as library functions: the byte mLSTM's
training task over truncated-BPTT streams, the linear probe of its cell states, and
generation with the sentiment unit clamped.

Shared by experiments/sentiment_neuron.py (flags only) and the tour. Texts get the
paper's preprocessing (lineage.eval.probe.preprocess) before they become bytes.
"""

import json
import os

import flax.linen as nn
import jax
import numpy as np

from lineage.data import builders, byte_streams, reviews
from lineage.data.builders import synthetic_reviews
from lineage.eval import mood_memory
from lineage.eval import probe
from lineage.models import mlstm
from lineage.train import checkpoint as ckpt_lib
from lineage.train import loop
from lineage.train import metrics as metrics_lib

SPLITS = ("train", "validation", "test")


def model_config(cfg):
  return mlstm.MLSTMConfig(**cfg.model.to_dict())


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
      model_dim=model_cfg.hidden_dim, init_carry=lambda b: mlstm.init_carry(model_cfg, b),
      decay_mask=mlstm.decay_mask)
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


def restore_params(cfg, workdir):
  """The trained parameters of the latest checkpoint; none is a clear error."""
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  latest = checkpoints.latest_step()
  if latest is None:
    checkpoints.close()
    raise FileNotFoundError(f"no trained checkpoint in {workdir}/checkpoints; train first with "
                            f"--mode=train --workdir={workdir}")
  trainer = loop.build_trainer(cfg, build_task(cfg, with_data=False))
  state, _ = checkpoints.restore(latest, trainer.abstract_state)
  checkpoints.close()
  return jax.device_get(state.params)


def labelled(cfg, split):
  """(texts, labels) of the probe dataset's split, capped at probe.max_examples."""
  p = cfg.probe
  source = load_split(p.dataset, split, cfg.data, p.num_reviews, p.seed)
  key = p.text_key or ("sentence" if p.dataset == "sst_binary" else "text")
  rows = records(source, [key, p.label_key], p.dataset, p.max_examples)
  texts = decode_all([r[key] for r in rows], f"{p.dataset}/{split}")
  labels = np.asarray([int(r[p.label_key]) for r in rows], np.int64)
  empty = sum(not t.strip() for t in texts)
  if empty:  # kept: an empty text still gets the features of the bare preprocessing bytes
    metrics_lib.console(f"{p.dataset}/{split}: {empty} empty texts, probed as '\\n  '")
  return texts, labels


def run_probe(cfg, workdir):
  model_cfg = model_config(cfg)
  params = restore_params(cfg, workdir)
  init = jax.device_get(nn.unbox(mlstm.init_params(model_cfg,
                                                   jax.random.PRNGKey(cfg.train.seed))))
  features, init_features = {}, {}
  for split in SPLITS:
    texts, labels = labelled(cfg, split)
    seqs = [probe.preprocess(t) for t in texts]
    features[split] = (mlstm.features(model_cfg, params, seqs, cfg.probe.batch_size), labels,
                       texts)
    init_features[split] = mlstm.features(model_cfg, init, seqs, cfg.probe.batch_size)
  summary = probe.probe_summary(features, workdir, init_features=init_features)
  traced = features["test"][2][:cfg.probe.num_traced]
  probe.plot_unit_trace(traced, [mlstm.unit_trace(model_cfg, params, probe.preprocess(t),
                                                  summary["single_unit"]) for t in traced],
                        os.path.join(workdir, "unit_trace.png"))
  summary["probe_dataset"] = cfg.probe.dataset
  # Does the LM use the mood it reads? (~0: the unit reads the mood but cannot steer samples.)
  summary["lm_prefix_gap_nats"] = mood_memory.prefix_gap(
      lambda prefixes, words: mlstm.continuation_logprob(
          model_cfg, params, [p.encode() for p in prefixes], [w.encode() for w in words]))
  summary["single_unit_clamp"] = clamp_values(features["train"][0][:, summary["single_unit"]],
                                              summary["single_unit_sign"])
  path = os.path.join(workdir, "summary.json")
  previous = json.load(open(path)) if os.path.exists(path) else {}
  with open(path, "w") as f:
    json.dump({**previous, **summary}, f, indent=2)
  metrics_lib.console(
      f"probe test accuracy {summary['probe_accuracy']:.3f} with "
      f"{summary['probe_nonzero_units']}/{summary['units']} units; unit "
      f"{summary['single_unit']} alone {summary['single_unit_accuracy']:.3f} (at init "
      f"{summary['single_unit_accuracy_at_init']:.3f}); bag of words {summary['bow_accuracy']:.3f}"
      f"; LM prefix gap {summary['lm_prefix_gap_nats']:+.3f} nats")
  return summary


def clamp_values(values, sign):
  """{"positive", "negative"}: the unit's 99th and 1st percentile on the probe's training texts,
  ordered by `sign`: the ends of the range the unit takes on real reviews of each kind."""
  high, low = (float(v) for v in np.percentile(values, [99, 1]))
  return {"positive": high, "negative": low} if sign > 0 else {"positive": low, "negative": high}


def run_generate(cfg, workdir):
  """Samples with the sentiment unit clamped positive, negative, and left free."""
  path = os.path.join(workdir, "summary.json")
  summary = json.load(open(path)) if os.path.exists(path) else {}
  if "single_unit" not in summary:
    raise FileNotFoundError(f"{path} names no sentiment unit; run --mode=probe first")
  model_cfg, g = model_config(cfg), cfg.generate
  params = restore_params(cfg, workdir)
  unit, threshold = int(summary["single_unit"]), summary["single_unit_threshold"]
  # Past the threshold by clamp_scale times the distance to the end of the unit's range.
  values = {k: threshold + g.clamp_scale * (v - threshold)
            for k, v in summary["single_unit_clamp"].items()}
  clamps = {"positive": (unit, values["positive"]), "negative": (unit, values["negative"]),
            "free": None}
  # Training never starts from the zero state except once, so the first bytes sampled from it
  # are noise: read a free sample of burn_in bytes first, then the prompt of a new text.
  burn_in = mlstm.sample(model_cfg, params, b"\n ", g.burn_in,
                         jax.random.PRNGKey(g.seed + 1)) if g.burn_in else b""
  prompt = b"\n " + g.prompt.encode("utf-8")  # how every preprocessed text starts
  result = {"unit": unit, "clamp_values": values, "samples": {}, "mean_score": {}}
  for name, clamp in clamps.items():
    rngs = jax.random.split(jax.random.PRNGKey(g.seed), g.num_samples)
    texts = [(prompt + mlstm.sample(model_cfg, params, b"\n " + burn_in + prompt, g.num_bytes,
                                    rng, g.temperature, clamp)).decode("utf-8", errors="replace")
             for rng in rngs]
    scores = [reviews.sentiment_score(t) for t in texts]
    result["samples"][name] = [{"text": t, "score": s} for t, s in zip(texts, scores)]
    result["mean_score"][name] = float(np.mean(scores))
    for t, s in zip(texts, scores):
      print(f"--- {name} (lexicon score {s:+.2f}) ---{t}")
  with open(os.path.join(workdir, "generate.json"), "w") as f:
    json.dump(result, f, indent=2)
  metrics_lib.console("mean lexicon score: " + ", ".join(
      f"{k} {v:+.3f}" for k, v in result["mean_score"].items()))
  return result
