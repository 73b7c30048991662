"""GPT-3 (Brown et al. 2020): Table 2.1's sizes and recipe (configs/gpt3.py), in-context
learning emerging in a small GPT with dense against alternating banded attention, GPT-3's
few-shot protocol on a trained LM (lineage.eval.few_shot), and a scaling sweep with fitted
power laws. experiments/gpt3.py is its binary."""

from lineage.milestones.gpt3 import few_shot_eval, modes, scaling

# --mode=NAME; each needs --workdir (few_shot reads --config.init_from, else that run).
MODES = ("train", "few_shot", "scaling")


def run(mode, cfg, workdir):
  """One mode of the milestone, as the binary's flags ask."""
  if mode == "train":
    return modes.run_train(cfg, workdir)
  if mode == "few_shot":
    return few_shot_eval.run(cfg, workdir)
  if mode == "scaling":
    return scaling.run(cfg, workdir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
