"""The Transformer (Vaswani et al. 2017): an encoder-decoder of attention alone, trained to
translate (the synthetic language pair, or Multi30k en-de) and scored by BLEU of
beam-searched translations. experiments/transformer.py is its binary."""

from lineage.milestones.transformer import modes, task
from lineage.train import distributed, loop

MODES = ("train", "eval", "average", "translate")


def run(mode, cfg, workdir, input_file=None, output_file=None):
  """Train; BLEU of the latest checkpoint (eval); BLEU of the last checkpoints' mean (average);
  the latest checkpoint's translations of input_file's lines, or stdin's (translate)."""
  if mode == "train":
    built = distributed.process_zero_first(lambda: task.build_task(cfg, workdir), "transformer")
    return loop.train(cfg, workdir, built)
  if mode == "eval":
    return modes.run_eval(cfg, workdir)
  if mode == "average":
    return modes.run_average(cfg, workdir)
  if mode == "translate":
    return modes.run_translate(cfg, workdir, input_file, output_file)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
