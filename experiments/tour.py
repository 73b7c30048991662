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

from lineage.train import lm, loop  # noqa: E402
from lineage.train import metrics as metrics_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/tour", "Where the report and each section's run go.")
config_flags.DEFINE_config_file("gpt2_config", "configs/gpt2.py:tiny", "Config of the GPT-2 section.")


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
"""


SECTIONS = [gpt2_section]


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
