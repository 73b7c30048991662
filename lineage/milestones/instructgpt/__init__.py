"""InstructGPT (Ouyang et al. 2022): supervised fine-tuning on demonstrations, a reward model
from ranked comparisons, PPO against it with a KL penalty to the SFT model and the
pretraining mix (PPO-ptx); DPO (Rafailov et al. 2023) on the same comparisons; and win rates
against the SFT model, judged by the reward model and, on the embedded synthetic task, by
the hidden labeller. The pieces are generic and live in lineage.rlhf; experiments/
instructgpt.py is the binary."""

from lineage.milestones.instructgpt import evaluation, stages

MODES = ("sft", "rm", "ppo", "dpo", "eval")


def run(mode, cfg, workdir):
  """One stage of the chain, as the binary's flags ask."""
  runners = {"sft": stages.run_sft, "rm": stages.run_rm, "ppo": stages.run_ppo,
             "dpo": stages.run_dpo, "eval": evaluation.run_eval}
  if mode not in runners:
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
  return runners[mode](cfg, workdir)
