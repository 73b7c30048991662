"""CLIP's part of `make tour`: contrastive training on the synthetic shapes, then zero-shot
shape classification of held-out shape-colour pairs by prompt ensembles, with a confusion
matrix, beside the linear probe. The tour trains TOUR_STEPS steps, fewer than the tiny preset's
acceptance run (train.steps), and scores fewer scenes, to stay within its 3 minutes on 2 CPU
cores."""

import os
import shutil

from lineage import milestones
from lineage.milestones.clip import modes
from lineage.milestones.clip import task as task_lib
from lineage.train import loop

TOUR_STEPS = 700  # the tiny preset's 1,000 took 2.8 minutes of the section's 3.5 on 2 cores
# Scenes per evaluation split, fewer than the tiny preset's 5,000: 4 splits of 5,000 (the
# ensembles' validation splits among them) add about 15 s of CPU to each evaluation.
TOUR_EVAL_SCENES = 1000


def run(cfg, workdir):
  """Train, evaluate zero-shot with confusion matrices; the section's markdown."""
  cfg = cfg.copy_and_resolve_references()
  full_steps = cfg.train.steps
  cfg.train.update(steps=TOUR_STEPS, eval_every=TOUR_STEPS, checkpoint_every=TOUR_STEPS)
  cfg.data.num_eval = TOUR_EVAL_SCENES
  run_dir = os.path.join(workdir, "clip", "shapes")
  _, summary = loop.train(cfg, run_dir, task_lib.build_task(cfg, run_dir))
  zero_shot = modes.run_zero_shot(cfg, run_dir)
  shutil.copy(os.path.join(run_dir, "confusion_shape_held_out.png"),
              os.path.join(workdir, "clip_confusion.png"))
  m, d = cfg.model, cfg.data
  rows = []
  for split in cfg.zero_shot.splits.split(","):
    for task in cfg.zero_shot.templates:
      key = f"{task}_{split}"
      probe = summary.get(f"eval_probe_{key}")
      fixed = zero_shot[key].get("fixed")
      rows.append(f"| {task} | {split} | {zero_shot[key]['accuracy']:.1%} "
                  f"({len(zero_shot[key]['templates'])}) | "
                  f"{'' if fixed is None else f'{fixed:.1%}'} | "
                  f"{zero_shot[key]['single_template']:.1%} | "
                  f"{'' if probe is None else f'{probe:.1%}'} |")
  shape = zero_shot["shape_held_out"]
  held = ", ".join(f"{s} {c}" for s, c in task_lib.held_out_pairs(d))
  return f"""## CLIP (2021): contrastive image-text pre-training, zero-shot transfer

A {m.vision_layers}-layer ViT ({m.patch_size}x{m.patch_size} patches of {m.image_size}x{m.image_size}
images, {m.vision_width} wide) and a {m.text_layers}-layer GPT text encoder ({m.text_width} wide,
read at the end-of-text token) trained for {cfg.train.steps} steps (the tour's short run; the
tiny preset trains {full_steps}) of {cfg.train.batch_size} image-caption pairs with the symmetric contrastive loss (final loss {summary['final_train_loss']:.3f},
logit scale {summary['eval_logit_scale']:.1f}, learned from 1/0.07). The {d.num_train} training scenes
of `shapes` never show the held-out pairs ({held}); their captions name the shape and, half the
time each, the colour, size and position; {d.grey_fraction:.0%} of each batch is turned grey with
its colour words dropped from the caption. Zero-shot, each class name fills several prompt
templates whose embeddings are averaged ("ensemble"), or the first alone ("one template": shape
"{shape['single']}", colour "{zero_shot['colour_held_out']['single']}"). The ensembles are chosen
as the paper chose its own, on validation data: greedy forward selection from candidates written
like the captions ({len(cfg.zero_shot.select['shape'].split('|'))} for shape: the captions'
prefixes with a size, colour or position word) on {d.num_eval} held-out-pair and {d.num_eval}
seen-pair scenes of their own seeds, none of them the {d.num_eval} of each split scored below.
For shape it chose {' / '.join(f'"{t}"' for t in shape['templates'])}. Beside them, the
hand-written templates averaged. The linear probe is a logistic regression on the frozen image
features of {cfg.probe.train_examples} training images.

| task | split | zero-shot, ensemble (templates) | hand-written, averaged | one template | linear probe |
|---|---|---:|---:|---:|---:|
{chr(10).join(rows)}

Zero-shot shape classification of held-out pairs (rows: true shape):

![zero-shot confusion matrix](clip_confusion.png)
"""


SECTION = milestones.TourSection("clip", "configs/clip.py:tiny", run)
