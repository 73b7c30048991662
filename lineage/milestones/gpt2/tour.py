"""GPT-2's tour section: the tiny model trained on the embedded corpus, its loss curve,
samples, and the zero-shot Table 3 protocol run end to end."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lineage import milestones  # noqa: E402
from lineage.milestones.gpt1 import pretrain  # noqa: E402
from lineage.milestones.gpt2 import sampling, zero_shot  # noqa: E402
from lineage.milestones.gpt2 import task as task_lib  # noqa: E402
from lineage.train import loop  # noqa: E402
from lineage.train import metrics as metrics_lib  # noqa: E402

# Datasets and caps of the tour's zero-shot run: a quick look, not comparable with the paper.
TOUR_ZERO_SHOT = dict(datasets="synthetic_text,lambada,wikitext2,ptb,cbt_cn,enwik8",
                      max_examples=100, max_bytes=20_000)
PROMPTS = ["the ", "say red fox; ", "three four ", "if the king is old then "]


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


def zero_shot_table(cfg, parts, params, run_dir):
  """The tiny model's Table 3 row (report.md of lineage.eval.zero_shot, one heading down)."""
  zs_cfg = cfg.copy_and_resolve_references()
  zs_cfg.zero_shot.update(**TOUR_ZERO_SHOT)
  out_dir = os.path.join(run_dir, "zero_shot")
  zero_shot.run(zs_cfg, parts.model_cfg, params, parts.tokenizer, out_dir,
                model_name="tour: tiny, bytes, synthetic_text")
  with open(os.path.join(out_dir, "report.md")) as f:
    report = f.read()
  return report.replace("# Zero-shot results", "#### Zero-shot results", 1)


def run(cfg, workdir):
  """Train the tiny GPT-2 on the synthetic corpus, plot its loss, show samples."""
  run_dir = os.path.join(workdir, "gpt2")
  parts = task_lib.build(cfg, run_dir)
  unigram = pretrain.train_unigram_entropy(parts)
  state, summary = loop.train(cfg, run_dir, parts.task)
  records = metrics_lib.read_metrics(run_dir)
  plot_loss(records, unigram, os.path.join(workdir, "gpt2_loss.png"),
            "tiny GPT-2 on synthetic_text (bytes)")
  speed = [r["tokens_per_sec"] for r in records if "tokens_per_sec" in r]
  sample = lambda prompts, **kw: sampling.sample_texts(parts.model_cfg, state.params,
                                                       parts.tokenizer, prompts, cfg.sample, **kw)
  greedy_texts = sample(PROMPTS, temperature=0.0, max_new_tokens=80)
  samples = "\n".join(f"{p!r} -> {t!r}" for p, t in zip(PROMPTS, greedy_texts))
  samples += "\n" + "\n".join(f"'the ' (T={cfg.sample.temperature}, top-p={cfg.sample.top_p})"
                              f" -> {t!r}" for t in sample(["the "] * 2))
  table = zero_shot_table(cfg, parts, state.params, run_dir)
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

{table}
"""


SECTION = milestones.TourSection("gpt2", "configs/gpt2.py:tiny", run)
