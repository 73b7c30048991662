"""The sentiment neuron's analysis modes: --mode=probe fits the paper's L1 logistic probe to
the trained mLSTM's final cell states and finds the single sentiment unit; --mode=generate
samples with that unit clamped positive or negative."""

import json
import os

import flax.linen as nn
import jax
import numpy as np

from lineage.data import reviews
from lineage.eval import mood_memory
from lineage.eval import probe
from lineage.milestones.sentiment_neuron import task as task_lib
from lineage.models import mlstm
from lineage.train import metrics as metrics_lib
from lineage.train import weights

SPLITS = ("train", "validation", "test")


def restore_params(cfg, workdir):
  params = weights.restore_params(cfg, workdir, task_lib.build_task(cfg, with_data=False))
  return jax.device_get(params)


def labelled(cfg, split):
  """(texts, labels) of the probe dataset's split, capped at probe.max_examples."""
  p = cfg.probe
  source = task_lib.load_split(p.dataset, split, cfg.data, p.num_reviews, p.seed)
  key = p.text_key or ("sentence" if p.dataset == "sst_binary" else "text")
  rows = task_lib.records(source, [key, p.label_key], p.dataset, p.max_examples)
  texts = task_lib.decode_all([r[key] for r in rows], f"{p.dataset}/{split}")
  labels = np.asarray([int(r[p.label_key]) for r in rows], np.int64)
  empty = sum(not t.strip() for t in texts)
  if empty:  # kept: an empty text still gets the features of the bare preprocessing bytes
    metrics_lib.console(f"{p.dataset}/{split}: {empty} empty texts, probed as '\\n  '")
  return texts, labels


def run_probe(cfg, workdir):
  model_cfg = task_lib.model_config(cfg)
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
                        os.path.join(workdir, "unit_trace.png"), sign=summary["single_unit_sign"])
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
  model_cfg, g = task_lib.model_config(cfg), cfg.generate
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
