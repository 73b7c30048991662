"""GPT-3's part of `make tour`: in-context learning emerging in a small GPT, accuracy on
held-out mappings against the number of demonstrations K, dense attention against GPT-3's
alternating dense and banded layers. The tour trains icl.tour_steps steps, fewer than the
acceptance run (train.steps), to stay within its 3 minutes, at a constant rate after the
warmup: with the cosine decay compressed into 1000 steps, neither variant had left the
plateau by the end (K=16 0.49 and 0.50); at a constant rate the dense one had (0.735)."""

import os

from lineage import milestones
from lineage.milestones.gpt3 import emergence


def run(cfg, workdir):
  """Train both variants on the short schedule, plot the curve; the section's markdown."""
  cfg = cfg.copy_and_resolve_references()
  steps, full_steps = cfg.icl.tour_steps, cfg.train.steps
  cfg.train.update(steps=steps, schedule="constant", eval_every=steps, checkpoint_every=steps)
  run_dir = os.path.join(workdir, "gpt3")
  summary = emergence.run(cfg, run_dir)
  os.replace(os.path.join(run_dir, "icl.png"), os.path.join(workdir, "gpt3_icl.png"))
  m, c = cfg.model, cfg.icl
  shots = summary["shots"]
  return f"""## GPT-3 (2020): in-context learning

A {m.num_layers}-layer, {m.embed_dim}-wide GPT trained for {steps} steps at a constant rate
(the tour's short schedule; the full run trains {full_steps}, cosine) on sequences "x1 y1 x2 y2 ... xq yq" in each
of which a fresh random mapping gives each of up to {c.ways} item symbols (of {c.num_items})
one of {c.num_labels} labels. No mapping can be learned into the weights, so the label after
a query is only predictable from the demonstrations before it in the same prompt. Accuracy on
mappings held out of training, K = {", ".join(str(k) for k in shots)} demonstrations, dense
attention against GPT-3's alternation of dense and banded layers (odd layers see only the
last {c.window} tokens; a K={max(shots)} prompt is {2 * max(shots) + 1}); "new symbols" are
items never seen in training:

{emergence.table(summary)}

![accuracy against K](gpt3_icl.png)
"""


SECTION = milestones.TourSection("gpt3", "configs/gpt3.py:tiny", run)
