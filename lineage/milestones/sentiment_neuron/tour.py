"""The sentiment neuron's tour section: the tiny byte mLSTM trained on synthetic reviews, its
sentiment unit found by the probe, and samples steered by clamping it. The tour trains
TOUR_STEPS steps, fewer than the tiny preset's 14,000, to keep `make tour` within 20 minutes
on 2 CPU cores: seed 0's LM starts to use the mood by 6,000 steps
(docs/results/sentiment_neuron.md)."""

import os
import shutil

from lineage import milestones
from lineage.milestones.sentiment_neuron import modes, task
from lineage.train import loop


TOUR_STEPS = 8000


def run(cfg, workdir):
  """Train the tiny byte mLSTM on synthetic reviews, find its sentiment unit, steer samples."""
  cfg = cfg.copy_and_resolve_references()
  if cfg.train.steps > TOUR_STEPS:
    cfg.train.update(steps=TOUR_STEPS, eval_every=TOUR_STEPS // 4,
                     checkpoint_every=TOUR_STEPS // 4)
  run_dir = os.path.join(workdir, "sentiment_neuron")
  _, train_summary = loop.train(cfg, run_dir, task.build_task(cfg))
  s = modes.run_probe(cfg, run_dir)
  generated = modes.run_generate(cfg, run_dir)
  for png in ("unit_histogram.png", "unit_trace.png", "data_efficiency.png"):
    shutil.copy(os.path.join(run_dir, png), os.path.join(workdir, f"sentiment_{png}"))
  scores = " / ".join(f"{generated['mean_score'][k]:+.2f}"
                      for k in ("positive", "negative", "free"))
  kept = f"{s['probe_nonzero_units']} of {s['units']} units non-zero"
  samples = "\n".join(f"clamped {name} (lexicon score {sample['score']:+.2f}):{sample['text']!r}"
                      for name in ("positive", "negative")
                      for sample in generated["samples"][name][:1])
  m = cfg.model
  return f"""## The sentiment neuron (2017): a byte mLSTM whose single unit reads sentiment

A multiplicative LSTM ({m.hidden_dim} units, {m.embed_dim}-dimensional byte embedding, weight
norm) trained as a byte language model for {cfg.train.steps} steps (the tiny preset trains
14,000; the tour stops at {TOUR_STEPS:,} to fit its time) of {cfg.train.batch_size} x
{cfg.data.seq_len} bytes (truncated backpropagation, state carried across chunks; Adam
{cfg.train.lr:g}, weight decay {cfg.train.weight_decay:g} on the weight-norm gains) on
synthetic reviews whose sentiment is a latent variable spread over many words. No labels are
used in training; then a probe reads the final cell state of held-out labelled reviews.

| | value |
|---|---|
| held-out LM loss (nats/byte) | {train_summary['eval_loss']:.3f} |
| best single unit (#{s['single_unit']}), test accuracy | {s['single_unit_accuracy']:.1%} |
| best single unit of the same model at initialisation | {s['single_unit_accuracy_at_init']:.1%} |
| L1 logistic probe on all units, test accuracy | {s['probe_accuracy']:.1%} ({kept}) |
| bag-of-words logistic regression, test accuracy | {s['bow_accuracy']:.1%} |
| LM prefix gap, nats (0: the LM does not use the mood) | {s['lm_prefix_gap_nats']:+.3f} |
| mean lexicon score of samples, unit clamped positive / negative / free | {scores} |

![unit histogram](sentiment_unit_histogram.png)

![unit over characters](sentiment_unit_trace.png)

![data efficiency](sentiment_data_efficiency.png)

Samples with the unit clamped (positive {generated['clamp_values']['positive']:+.2f}, negative
{generated['clamp_values']['negative']:+.2f}):
```
{samples}
```
"""


SECTION = milestones.TourSection("sentiment_neuron", "configs/sentiment_neuron.py:tiny", run)
