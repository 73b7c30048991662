"""The sentiment neuron: train a byte mLSTM LM, probe its cell states, generate with a clamped
unit (lineage.milestones.sentiment_neuron).

  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=train|probe|generate [--config.train.steps=...]
See configs/sentiment_neuron.py for the presets and what to expect.
"""

from absl import flags

from experiments import cli
from lineage.milestones import sentiment_neuron

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(sentiment_neuron.MODES, needs_workdir=sentiment_neuron.MODES)
  sentiment_neuron.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
