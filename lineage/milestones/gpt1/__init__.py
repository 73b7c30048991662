"""GPT-1 (Radford et al. 2018): generative pre-training of a post-LN decoder, then
discriminative fine-tuning with task input transformations and an auxiliary LM loss, the
paper's ablations, and the released weights' Hugging Face format. experiments/gpt1.py is its
binary."""

from lineage.milestones.gpt1 import ablate, modes

# --mode=NAME; every mode needs --workdir but export, which can read --config.init_from.
MODES = ("pretrain", "finetune", "ablate", "export")


def run(mode, cfg, workdir, export_dir=None):
  """One mode of the milestone, as the binary's flags ask."""
  if mode == "pretrain":
    return modes.run_pretrain(cfg, workdir)
  if mode == "finetune":
    return modes.run_finetune(cfg, workdir)
  if mode == "ablate":
    return ablate.run(cfg, workdir)
  if mode == "export":
    return modes.run_export(cfg, workdir, export_dir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
