"""The Transformer (2017): train an encoder-decoder translator, score it by BLEU, average its
last checkpoints (lineage.milestones.transformer).

  python -m experiments.transformer --config=configs/transformer.py:tiny \
      --workdir=runs/transformer_tiny --mode=train|eval|average [--config.train.steps=...]
  python -m experiments.transformer --config=configs/transformer.py:tiny \
      --workdir=runs/transformer_tiny --mode=translate < sources.txt > translations.txt
See configs/transformer.py for the presets and what to expect.
"""

from absl import flags

from experiments import cli
from lineage.milestones import transformer

FLAGS = flags.FLAGS
flags.DEFINE_string("input_file", None, "--mode=translate: UTF-8 lines to translate (default: "
                    "stdin).")
flags.DEFINE_string("output_file", None, "--mode=translate: where the translations go, one "
                    "line each (default: stdout).")


def main(argv):
  cli.start(argv)
  cli.check_mode(transformer.MODES, needs_workdir=transformer.MODES)
  transformer.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, FLAGS.input_file, FLAGS.output_file)


if __name__ == "__main__":
  cli.run(main)
