"""GPT-3: in-context learning emerging in a small GPT (the tiny default), Table 2.1's presets,
the few-shot protocol on a trained LM, and a scaling sweep (lineage.milestones.gpt3).

  python -m experiments.gpt3 --config=configs/gpt3.py:tiny --workdir=runs/gpt3 \
      --mode=train|few_shot|scaling
few_shot evaluates --config.init_from (DIR[@STEP] or hf:PATH), else the run in --workdir, on
--config.few_shot.tasks. See configs/gpt3.py.
"""

from absl import flags

from experiments import cli
from lineage.milestones import gpt3

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(gpt3.MODES, needs_workdir=gpt3.MODES)
  gpt3.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
