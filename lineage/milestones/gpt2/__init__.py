"""GPT-2 (Radford et al. 2019): a pre-LN decoder LM, its zero-shot Table 3 protocol, sampling
(with the TL;DR preset) and Hugging Face interop. experiments/gpt2.py is its binary."""

from lineage.milestones.gpt2.modes import run_eval, run_export, run_train, run_zero_shot
from lineage.milestones.gpt2.sampling import SampleOptions, run_sample

# --mode=NAME -> whether it needs --workdir (sample and export can read init_from alone).
MODES = {"train": True, "eval": True, "zero_shot": True, "sample": False, "export": False}


def run(mode, cfg, workdir, sample_options=SampleOptions(), model_name=None, export_dir=None):
  """One mode of the milestone, as the binary's flags ask."""
  if mode == "train":
    return run_train(cfg, workdir)
  if mode == "eval":
    return run_eval(cfg, workdir)
  if mode == "zero_shot":
    return run_zero_shot(cfg, workdir, model_name)
  if mode == "sample":
    return run_sample(cfg, workdir, sample_options)
  if mode == "export":
    return run_export(cfg, workdir, export_dir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
