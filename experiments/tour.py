"""The tour: every milestone present, at tiny scale on embedded data, in one report.

  python -m experiments.tour --workdir=runs/tour      (what `make tour` runs)

Writes `runs/tour/report.md` with tables and PNG plots. Each milestone adds a
section function to SECTIONS; a section trains what it needs under its own
subdirectory (from scratch: the tour is a demonstration, not a resumable run)
and returns the markdown it contributes.
"""

import os
import shutil
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from lineage.eval import zero_shot  # noqa: E402
from lineage.train import lm, loop, mlstm_lm  # noqa: E402
from lineage.train import metrics as metrics_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/tour", "Where the report and each section's run go.")
config_flags.DEFINE_config_file("gpt2_config", "configs/gpt2.py:tiny", "Config of the GPT-2 section.")
config_flags.DEFINE_config_file("sentiment_config", "configs/sentiment_neuron.py:tiny",
                                "Config of the sentiment-neuron section.")


def plot_loss(records, unigram, path, title):
  train = [(r["step"], r["loss"]) for r in records if "loss" in r]
  held_out = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.plot(*zip(*train), label="train loss")
  if held_out:
    ax.plot(*zip(*held_out), "o-", label="held-out loss")
  ax.axhline(unigram, color="gray", linestyle="--", label="unigram entropy")
  ax.set(xlabel="step", ylabel="nats per token", title=title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def gpt2_section(workdir):
  """Train the tiny GPT-2 on the synthetic corpus, plot its loss, show samples."""
  cfg = FLAGS.gpt2_config
  run_dir = os.path.join(workdir, "gpt2")
  shutil.rmtree(run_dir, ignore_errors=True)
  os.makedirs(run_dir)
  parts = lm.build(cfg, run_dir)
  unigram = lm.train_unigram_entropy(parts)
  start = time.perf_counter()
  state, summary = loop.train(cfg, run_dir, parts.task)
  seconds = time.perf_counter() - start
  records = metrics_lib.read_metrics(run_dir)
  plot_loss(records, unigram, os.path.join(workdir, "gpt2_loss.png"),
            "tiny GPT-2 on synthetic_text (bytes)")
  speed = [r["tokens_per_sec"] for r in records if "tokens_per_sec" in r]
  prompts = ["the ", "say red fox; ", "three four ", "if the king is old then "]
  greedy = cfg.copy_and_resolve_references()
  greedy.sample.update(greedy=True, max_new_tokens=80)
  greedy_texts = lm.sample_texts(greedy, parts, state.params, prompts)
  sampled = lm.sample_texts(cfg, parts, state.params, ["the "] * 2)
  samples = "\n".join(f"{p!r} -> {t!r}" for p, t in zip(prompts, greedy_texts))
  samples += "\n" + "\n".join(f"'the ' (T={cfg.sample.temperature}, top-p={cfg.sample.top_p})"
                              f" -> {t!r}" for t in sampled)
  zero_shot_table = gpt2_zero_shot(cfg, parts, state.params, run_dir)
  m = cfg.model
  return f"""## GPT-2 (2019): a pre-LN decoder trained by next-token prediction

A {m.num_layers}-layer, {m.embed_dim}-wide GPT-2 ({m.num_heads} heads, context {m.context}) trained
for {cfg.train.steps} steps of {cfg.train.batch_size} x {cfg.data.seq_len} bytes on the embedded
`synthetic_text` corpus (a grammar with agreement, counting, copying and conditionals).

| | value |
|---|---|
| held-out loss (nats/byte) | {summary['eval_loss']:.3f} |
| held-out next-byte accuracy | {summary['eval_accuracy']:.1%} |
| unigram entropy of the corpus (nats/byte) | {unigram:.3f} |
| final train loss | {summary['final_train_loss']:.3f} |
| training throughput (median tokens/s) | {sorted(speed)[len(speed) // 2]:,.0f} |
| wall time, including compilation | {seconds:.0f} s |

![loss curve](gpt2_loss.png)

Samples (greedy, then sampled):
```
{samples}
```

### Zero-shot, the paper's Table 3 protocol

The same tiny model through `--mode=zero_shot` on the first {TOUR_ZERO_SHOT["max_examples"]}
examples of the embedded corpus's held-out test documents (last column) and of each Table 3
dataset present in `$LINEAGE_MANUAL_DIR`. It has only read the synthetic corpus, never
natural English, so expect numbers far from the paper's rows on those: the point is the
protocol, run end to end.

{zero_shot_table}
"""


# Datasets and caps of the tour's zero-shot run: a quick look, not comparable with the paper.
TOUR_ZERO_SHOT = dict(datasets="synthetic_text,lambada,wikitext2,ptb,cbt_cn,enwik8",
                      max_examples=100,
                      max_bytes=20_000)


def gpt2_zero_shot(cfg, parts, params, run_dir):
  """The tiny model's Table 3 row (report.md of lineage.eval.zero_shot, one heading down)."""
  zs_cfg = cfg.copy_and_resolve_references()
  zs_cfg.zero_shot.update(**TOUR_ZERO_SHOT)
  out_dir = os.path.join(run_dir, "zero_shot")
  zero_shot.run(zs_cfg, parts.model_cfg, params, parts.tokenizer, out_dir,
                model_name="tour: tiny, bytes, synthetic_text")
  with open(os.path.join(out_dir, "report.md")) as f:
    report = f.read()
  return report.replace("# Zero-shot results", "#### Zero-shot results", 1)


def sentiment_section(workdir):
  """Train the tiny byte mLSTM on synthetic reviews, find its sentiment unit, steer samples."""
  cfg = FLAGS.sentiment_config
  run_dir = os.path.join(workdir, "sentiment")
  shutil.rmtree(run_dir, ignore_errors=True)
  os.makedirs(run_dir)
  start = time.perf_counter()
  _, train_summary = loop.train(cfg, run_dir, mlstm_lm.build_task(cfg))
  train_seconds = time.perf_counter() - start
  s = mlstm_lm.run_probe(cfg, run_dir)
  generated = mlstm_lm.run_generate(cfg, run_dir)
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
norm) trained as a byte language model for {cfg.train.steps} steps of {cfg.train.batch_size} x
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
| training wall time, including compilation | {train_seconds:.0f} s |

![unit histogram](sentiment_unit_histogram.png)

![unit over characters](sentiment_unit_trace.png)

![data efficiency](sentiment_data_efficiency.png)

Samples with the unit clamped (positive {generated['clamp_values']['positive']:+.2f}, negative
{generated['clamp_values']['negative']:+.2f}):
```
{samples}
```
"""


SECTIONS = [gpt2_section, sentiment_section]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  parts = ["# The lineage tour\n\nEvery milestone present, at tiny scale on embedded data, "
           "trained from scratch on this machine.\n"]
  for section in SECTIONS:
    parts.append(section(FLAGS.workdir))
  report = os.path.join(FLAGS.workdir, "report.md")
  with open(report, "w") as f:
    f.write("\n".join(parts))
  print(f"wrote {report}")


if __name__ == "__main__":
  sys.exit(app.run(main))
