"""InstructGPT: supervised fine-tuning, a reward model, PPO (with KL control and PPO-ptx), DPO,
and win rates against the SFT model (lineage.milestones.instructgpt).

  python -m experiments.instructgpt --config=configs/instructgpt.py:tiny --workdir=DIR \
      --mode=sft|rm|ppo|dpo|eval [--config.init_from=SFT_DIR] [--config.ppo.reward_model=RM_DIR]
      [--config.eval.policy=PPO_OR_DPO_DIR]
sft starts from --config.init_from (a GPT run) or scratch; rm, ppo and dpo from the SFT run;
see configs/instructgpt.py for the whole chain.
"""

from absl import flags

from experiments import cli
from lineage.milestones import instructgpt

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(instructgpt.MODES, needs_workdir=instructgpt.MODES)
  instructgpt.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
