"""Codex: fine-tune a GPT on code, sample completions, evaluate pass@k in the sandbox
(lineage.milestones.codex).

  python -m experiments.codex --config=configs/codex.py:tiny --workdir=runs/codex \
      --mode=finetune|sample|eval [--config.init_from=DIR|hf:PATH]
finetune trains from --config.init_from (or from scratch); sample and eval read the weights
of --config.init_from, else of the run in --workdir. See configs/codex.py.
"""

from absl import flags

from experiments import cli
from lineage.milestones import codex

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(codex.MODES, needs_workdir=codex.MODES)
  codex.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
