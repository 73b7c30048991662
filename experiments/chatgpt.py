"""ChatGPT and the GPT-3.5 chain in small: pre-train (text plus code), multi-turn SFT, reward
model, PPO, chat (lineage.milestones.chatgpt).

  python -m experiments.chatgpt --config=configs/chatgpt.py:tiny --workdir=runs/chatgpt \
      --mode=chain
  python -m experiments.chatgpt --config=configs/chatgpt.py:tiny --mode=chat \
      --config.init_from=runs/chatgpt/ppo [--prompt_file=conversation.txt]
--mode=pretrain|sft|rm|ppo runs one stage in --workdir (sft and rm from --config.init_from,
ppo also from --config.ppo.reward_from). See configs/chatgpt.py.
"""

from absl import flags

from experiments import cli
from lineage.milestones import chatgpt

FLAGS = flags.FLAGS  # --prompt_file (a scripted conversation) is defined in experiments/cli.py


def main(argv):
  cli.start(argv)
  cli.check_mode(chatgpt.MODES, needs_workdir=[m for m in chatgpt.MODES if m != "chat"])
  chatgpt.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, prompt_file=FLAGS.prompt_file)


if __name__ == "__main__":
  cli.run(main)
