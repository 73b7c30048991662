"""GPT-1's part of `make tour`: pre-train the tiny post-LN decoder on the embedded corpus (its
zero-shot heuristic logged as it learns), then the paper's ablations on a synthetic task."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lineage import milestones  # noqa: E402
from lineage.milestones.gpt1 import ablate, modes  # noqa: E402
from lineage.train import metrics as metrics_lib  # noqa: E402


def plot_zero_shot(records, path):
  """Figure 2 right's counterpart: a zero-shot heuristic's accuracy as pre-training goes on."""
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for key in sorted({k for r in records for k in r if k.startswith("eval_zero_shot_")}):
    points = [(r["step"], r[key]) for r in records if key in r]
    ax.plot(*zip(*points), "o-", label=key.removeprefix("eval_zero_shot_"))
  ax.axhline(0.5, color="gray", linestyle="--", label="chance")
  ax.set(xlabel="pre-training step", ylabel="zero-shot accuracy",
         title="GPT-1: zero-shot heuristics while pre-training")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run(cfg, workdir):
  """Pre-train, plot the zero-shot curve, run the ablations; the section's markdown."""
  pretrain_dir = os.path.join(workdir, "gpt1", "pretrain")
  _, pretrained = modes.run_pretrain(cfg, pretrain_dir)
  records = metrics_lib.read_metrics(pretrain_dir)
  plot_zero_shot(records, os.path.join(workdir, "gpt1_zero_shot.png"))
  ablate_cfg = cfg.copy_and_resolve_references()
  ablate_cfg.finetune.pretrained = pretrain_dir
  ablate_dir = os.path.join(workdir, "gpt1", "ablate")
  summary = ablate.run(ablate_cfg, ablate_dir)
  os.replace(os.path.join(ablate_dir, "transfer.png"), os.path.join(workdir, "gpt1_transfer.png"))
  table = ablate.report(summary).replace("(transfer.png)", "(gpt1_transfer.png)")
  table = table.replace("# GPT-1 ablations", "#### GPT-1 ablations", 1)
  m, ft = cfg.model, cfg.finetune
  heuristic = {k: v for k, v in pretrained.items() if k.startswith("eval_zero_shot_")}
  return f"""## GPT-1 (2018): generative pre-training, then discriminative fine-tuning

A {m.num_layers}-layer, {m.embed_dim}-wide post-LN decoder pre-trained for {cfg.train.steps} steps
on the embedded `synthetic_text` corpus (bytes; held-out loss {pretrained['eval_loss']:.3f}
nats/byte), then fine-tuned on `{ft.task}` ({ft.num_synthetic} training examples) for
{ft.epochs} epochs with a linear head on the extract token and the auxiliary LM loss (lambda
{ft.lm_coef}). In `synthetic_choice` each example is the start of a count ("two three four")
or of a copied phrase ("say red fox; red"), and two endings, one of which continues it: the
multiple-choice transformation, one sequence per ending, a softmax over their scores.

Zero-shot, the language model alone picks the right ending of a count or a copy by its
likelihood (final: {", ".join(f"{k.removeprefix('eval_zero_shot_')} {v:.1%}" for k, v in
heuristic.items())}):

![zero-shot heuristics](gpt1_zero_shot.png)

{table}"""


SECTION = milestones.TourSection("gpt1", "configs/gpt1.py:tiny", run)
