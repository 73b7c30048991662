"""Codex (Chen et al. 2021): a GPT fine-tuned on code, sampled n times per problem, each
completion run against the problem's tests in a sandbox (lineage.sandbox), scored by the
unbiased pass@k (lineage.eval.pass_at_k) on HumanEval or the embedded synthetic problems.
experiments/codex.py is its binary."""

from lineage.milestones.codex import modes

MODES = ("finetune", "sample", "eval")


def run(mode, cfg, workdir):
  """One mode of the milestone, as the binary's flags ask."""
  if mode == "finetune":
    return modes.run_finetune(cfg, workdir)
  if mode == "sample":
    return modes.run_sample(cfg, workdir)
  if mode == "eval":
    return modes.run_eval(cfg, workdir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
