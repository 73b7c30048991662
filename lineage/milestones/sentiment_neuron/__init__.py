"""The sentiment neuron (Radford, Jozefowicz, Sutskever 2017): a byte mLSTM language model
whose single unit reads sentiment, the L1 probe that finds it, and generation with it
clamped. experiments/sentiment_neuron.py is its binary."""

from lineage.milestones.sentiment_neuron import modes, task
from lineage.train import distributed, loop

MODES = ("train", "probe", "generate")


def run(mode, cfg, workdir):
  """One mode of the milestone: train the LM, probe its states, or generate with the unit."""
  if mode == "train":
    built = distributed.process_zero_first(lambda: task.build_task(cfg), "sentiment_neuron")
    return loop.train(cfg, workdir, built)
  if mode == "probe":
    return modes.run_probe(cfg, workdir)
  if mode == "generate":
    return modes.run_generate(cfg, workdir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
