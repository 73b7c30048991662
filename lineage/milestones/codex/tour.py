"""Codex's part of `make tour`: a tiny GPT trained on solved synthetic docstring-to-function
problems, then sampled at several temperatures on held-out problems, every completion run in
the sandbox: pass@k against k and the best temperature for each k (the paper's Figure 5)."""

import json
import os

from lineage import milestones
from lineage.milestones.codex import modes, report


def rises_with_k(curve):
  ks = sorted(curve)
  return all(curve[a] <= curve[b] for a, b in zip(ks, ks[1:])) and curve[ks[-1]] > curve[ks[0]]


def _example(workdir, temperature):
  """A passing and a failing completion at `temperature`, for the report."""
  with open(os.path.join(workdir, modes.SAMPLES)) as f:
    records = [json.loads(line) for line in f]
  chosen = []
  for passed in (True, False):
    match = next((r for r in records if r["temperature"] == temperature and r["passed"] == passed),
                 None)
    if match:
      chosen.append(f"{match['task_id']} ({match['result']}):\n{match['completion'].rstrip()}")
  return "\n\n".join(chosen)


def run(cfg, workdir):
  """Train, sample, evaluate; the section's markdown."""
  run_dir = os.path.join(workdir, "codex")
  train_dir, eval_dir = os.path.join(run_dir, "finetune"), os.path.join(run_dir, "eval")
  _, trained = modes.run_finetune(cfg, train_dir)
  eval_cfg = cfg.copy_and_resolve_references()
  eval_cfg.init_from = train_dir
  summary = modes.run_eval(eval_cfg, eval_dir)
  os.replace(os.path.join(eval_dir, modes.PLOT), os.path.join(workdir, "codex_pass_at_k.png"))
  curves = {float(t): {int(k): v for k, v in c.items()} for t, c in summary["curves"].items()}
  best = summary["best_temperature"]
  rising = [t for t, c in curves.items() if rises_with_k(c)]
  ks = sorted(next(iter(curves.values())))
  m, c = cfg.model, cfg.codex
  first, last = ks[0], max(k for k in ks if k <= 10)
  return f"""## Codex (2021): sampling code, running it, pass@k

A {m.num_layers}-layer, {m.embed_dim}-wide byte-level GPT trained for {cfg.train.steps} steps
on {c.num_train} solved synthetic problems (held-out loss {trained['eval_loss']:.3f}
nats/byte): a docstring and a one-line body, the docstring stating the expression for half the
templates ("Return x + 17.") and putting it in words for the rest ("Return x modulo 6.").
Then {c.num_problems} problems whose prompts it never saw, {c.num_samples} samples each at
temperatures {c.temperatures} (top-p {c.top_p}), cut at Codex's stop sequences, each program
run in the sandbox ({summary['sandbox']}): {summary['eval_seconds']:.0f} s for
{sum(summary['statuses'].values())} runs ({summary['statuses']}).

{report.table(curves)}

pass@k rises with k at temperature(s) {", ".join(f"{t:g}" for t in sorted(rising)) or "none"};
the best temperature for pass@{first} is {best[f"pass@{first}"]:g}, for pass@{last}
{best[f"pass@{last}"]:g} (the paper: 0.2 for pass@1, 0.8 for pass@100). Low temperatures
repeat the model's single best guess; higher ones spread the k tries over more programs.

![pass@k against k and temperature](codex_pass_at_k.png)

Samples at temperature {best[f"pass@{last}"]:g}:
```
{_example(eval_dir, best[f"pass@{last}"])}
```
"""


SECTION = milestones.TourSection("codex", "configs/codex.py:tiny", run)
