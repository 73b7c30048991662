"""ChatGPT's part of `make tour`: the chain in miniature (shorter stages, no code-share
comparison), then a scripted conversation with the PPO model and one instruction through the
base, SFT and PPO models side by side."""

import os

from lineage import milestones
from lineage.milestones.chatgpt import chain

# Shorter than configs/chatgpt.py:tiny so that the section fits its three minutes; the full
# chain (and the comparison with and without code) is --mode=chain.
TOUR = {"train.steps": 150, "pretrain.corpus_tokens": 150_000, "probes.num": 50,
        "sft.steps": 150, "rm.steps": 40, "ppo.rollouts": 2, "chain.compare_code": False}


def tour_config(cfg):
  out = cfg.copy_and_resolve_references()
  for key, value in TOUR.items():
    section, name = key.split(".")
    out[section][name] = value
  out.train.checkpoint_every = out.train.steps
  return out


def run(cfg, workdir):
  """Runs the short chain under workdir/chatgpt; the section's markdown."""
  cfg = tour_config(cfg)
  results_dir = os.path.join(workdir, "chatgpt")
  summary = chain.run(cfg, results_dir)
  with open(os.path.join(results_dir, "report.md")) as f:
    table = f.read().replace("# The GPT-3.5 chain in small", "", 1).strip()
  dep = summary["dialogue_dependent_accuracy"]
  return f"""## ChatGPT (2022): the GPT-3.5 chain applied to dialogue

The lineage in miniature, each stage a run started from the previous one: a
{cfg.model.num_layers}-layer byte-level GPT pre-trained for {cfg.train.steps} steps on text with
a {cfg.pretrain.code_share:.0%} share of code, fine-tuned on shopping-list dialogues with the
loss on assistant turns only ({cfg.sft.steps} steps), a reward model that prefers the right
reply to a plausible wrong one in context, and {cfg.ppo.rollouts} PPO rollouts against it. On
turns whose answer needs the earlier turns, the base model is right {dep['base']:.0%} of the
time, the SFT model {dep['sft']:.0%}, the PPO model {dep['ppo']:.0%}. The plain LM continues an
instruction as text; the tuned ones answer it in the only way they were taught (a list).

{table}
"""


SECTION = milestones.TourSection("chatgpt", "configs/chatgpt.py:tiny", run)
