"""The sentiment neuron: train a byte mLSTM LM, probe its cell states, generate with a clamped unit.

  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=train|probe|generate [--config.train.steps=...]
See configs/sentiment_neuron.py for the presets and what to expect.
"""

import sys

import jax
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from lineage.train import distributed, loop, mlstm_lm

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/sentiment_neuron.py:PRESET",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, summary, plots.")
flags.DEFINE_enum("mode", "train", ["train", "probe", "generate"], "What to do.")
distributed.define_flags()


def build_task(cfg):
  """mlstm_lm.build_task, on process 0 first: it prepares the datasets that the other
  processes then read rather than race to write."""
  if jax.process_count() == 1:
    return mlstm_lm.build_task(cfg)
  task = mlstm_lm.build_task(cfg) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices("experiments.sentiment_neuron: data prepared")
  return task or mlstm_lm.build_task(cfg)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint phase at INFO
  distributed.initialize_from_flags()
  cfg, workdir = FLAGS.config, FLAGS.workdir
  if FLAGS.mode == "train":
    loop.train(cfg, workdir, build_task(cfg))
  elif FLAGS.mode == "probe":
    mlstm_lm.run_probe(cfg, workdir)
  else:
    mlstm_lm.run_generate(cfg, workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  sys.exit(app.run(main))
