"""CLIP (Radford et al. 2021): a ViT and a GPT text encoder trained contrastively on
image-caption pairs, then zero-shot classification by prompt ensembles and the linear probe.
experiments/clip.py is its binary; `load(workdir)` hands a trained run's encoders to others
(DALL-E reranks its samples with them)."""

from lineage.milestones.clip import modes, task
from lineage.milestones.clip.modes import load
from lineage.train import distributed, loop

MODES = ("train", "zero_shot", "probe")
__all__ = ["MODES", "load", "run"]


def run(mode, cfg, workdir):
  """Train (summary.json: loss, zero-shot and probe accuracies); zero-shot accuracies with
  confusion matrices of the latest checkpoint (zero_shot); the linear probe alone (probe)."""
  if mode == "train":
    built = distributed.process_zero_first(lambda: task.build_task(cfg, workdir), "clip")
    return loop.train(cfg, workdir, built)
  if mode == "zero_shot":
    return modes.run_zero_shot(cfg, workdir)
  if mode == "probe":
    return modes.run_probe(cfg, workdir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
