"""ChatGPT (OpenAI 2022) and the GPT-3.5 chain in small: a chat format (lineage.data.chat),
multi-turn dialogue SFT with the loss on assistant turns only, the reward model and PPO of
lineage.rlhf applied to replies in multi-turn context, an interactive streaming chat, and the
whole lineage from an empty directory to a chat model in one command (--mode=chain).
experiments/chatgpt.py is its binary."""

import os
import sys

from lineage.milestones.chatgpt import chain, session, stages

MODES = ("pretrain", "sft", "rm", "ppo", "chat", "chain")


def run_chat(cfg, prompt_file=None, out=None):
  """Chats with the model of --config.init_from (any stage's run) on stdin, or through the
  lines of `prompt_file` (each echoed, as a transcript)."""
  if not cfg.init_from:
    raise ValueError("--mode=chat needs the model to talk to: --config.init_from=DIR (an SFT "
                     "or PPO run, e.g. runs/chatgpt/ppo)")
  if prompt_file and not os.path.isfile(prompt_file):
    raise FileNotFoundError(f"--prompt_file={prompt_file} does not exist; give a UTF-8 text "
                            "file with one message or /command per line")
  model = stages.chat_model(cfg)
  params = stages.restore_policy(cfg, cfg.init_from)
  c = cfg.chat
  chat_session = session.Session(model, params, out or sys.stdout, system=c.system,
                                 temperature=c.temperature, max_new_tokens=c.max_new_tokens,
                                 seed=c.seed)
  if prompt_file:
    with open(prompt_file, encoding="utf-8") as lines:
      return chat_session.run(lines, echo=True)
  return chat_session.run(sys.stdin)


def run(mode, cfg, workdir, prompt_file=None):
  """One mode of the milestone, as the binary's flags ask."""
  if mode == "pretrain":
    return stages.run_pretrain(cfg, workdir)
  if mode == "sft":
    return stages.run_sft(cfg, workdir)
  if mode == "rm":
    return stages.run_rm(cfg, workdir)
  if mode == "ppo":
    return stages.run_ppo(cfg, workdir)
  if mode == "chat":
    return run_chat(cfg, prompt_file)
  if mode == "chain":
    return chain.run(cfg, workdir)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
