"""InstructGPT's part of `make tour`: the whole chain on the synthetic task at tiny size (SFT,
reward model, PPO, DPO, win rates against SFT), with PPO's curves."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lineage import milestones  # noqa: E402
from lineage.milestones.instructgpt import evaluation, stages  # noqa: E402
from lineage.train import metrics as metrics_lib  # noqa: E402

CURVES = (("score", "reward-model score"), ("true_score", "true labeller's score"),
          ("kl", "KL to SFT (nats / response)"), ("kl_coef", "KL coefficient beta"))


def plot_ppo(records, path, kl_target=None):
  """PPO's rollouts as training goes on: the two scores, the KL and its coefficient."""
  fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3))
  for ax, (key, label) in zip(axes, CURVES):
    points = [(r["step"], r[key]) for r in records if key in r]
    if points:
      ax.plot(*zip(*points), ".-")
    if key == "kl" and kl_target:
      ax.axhline(kl_target, color="gray", linestyle="--", label="target")
      ax.legend()
    ax.set(xlabel="PPO update", title=label)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def win_table(evals):
  """Markdown rows: each policy against SFT."""
  lines = ["| policy | win rate (RM) | win rate (true) | RM score | true score | KL to SFT |",
           "|---|---|---|---|---|---|"]
  for name, e in evals.items():
    lines.append(f"| {name} | {e['win_rate_rm']:.2f} | {e.get('win_rate_true', float('nan')):.2f}"
                 f" | {e['sft_rm_score']:+.2f} -> {e['policy_rm_score']:+.2f}"
                 f" | {e.get('sft_true_score', float('nan')):+.2f} -> "
                 f"{e.get('policy_true_score', float('nan')):+.2f} | {e['kl_to_sft']:.2f} |")
  return "\n".join(lines)


def run_chain(cfg, root):
  """SFT, RM, PPO, DPO and both evaluations under `root`; (summaries, the chained config)."""
  dirs = {name: os.path.join(root, name) for name in ("sft", "rm", "ppo", "dpo")}
  out = {"sft": stages.run_sft(cfg, dirs["sft"])}
  chained = cfg.copy_and_resolve_references()
  chained.init_from = dirs["sft"]
  out["rm"] = stages.run_rm(chained, dirs["rm"])
  chained.ppo.reward_model = dirs["rm"]
  out["ppo"] = stages.run_ppo(chained, dirs["ppo"])
  out["dpo"] = stages.run_dpo(chained, dirs["dpo"])
  for name in ("ppo", "dpo"):
    chained.eval.policy = dirs[name]
    out[f"eval_{name}"] = evaluation.run_eval(chained, os.path.join(root, f"eval_{name}"))
  return out, chained


def run(cfg, workdir):
  root = os.path.join(workdir, "instructgpt")
  out, _ = run_chain(cfg, root)
  plot_ppo(metrics_lib.read_metrics(os.path.join(root, "ppo")),
           os.path.join(workdir, "instructgpt_ppo.png"), cfg.ppo.kl_target)
  examples = "\n".join(f"| `{e['prompt']}` | `{e['sft']}` | `{e['policy']}` |"
                       for e in out["eval_ppo"]["examples"])
  m = cfg.model
  return f"""## InstructGPT (2022): SFT, a reward model, PPO with a KL penalty; and DPO

A {m.num_layers}-layer, {m.embed_dim}-wide byte-level GPT on the synthetic preference task:
prompts `a+b=`, a hidden labeller preferring correct to wrong and a bare number to a
sentence. SFT imitates a noisy demonstrator ({cfg.sft.steps} steps); the reward model, from
the SFT model, ranks K = 4 answers a prompt (held-out pair accuracy
{out['rm']['eval_pair_accuracy']:.2f}); PPO ({cfg.ppo.train.steps} updates, adaptive KL
toward {cfg.ppo.kl_target} nats) and DPO (beta {cfg.dpo.beta}) both start from SFT.
Win rates against SFT, {cfg.eval.samples_per_prompt} answers to each prompt:

{win_table({'PPO': out['eval_ppo'], 'DPO': out['eval_dpo']})}

![PPO's rollouts](instructgpt_ppo.png)

| prompt | SFT | PPO |
|---|---|---|
{examples}
"""


SECTION = milestones.TourSection("instructgpt", "configs/instructgpt.py:tiny", run)
