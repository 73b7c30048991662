"""GPT-2: train, evaluate or sample a decoder LM.

  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/gpt2_tiny \
      [--mode=train|eval|sample] [--config.train.steps=...]
See configs/gpt2.py for the presets and what to expect.
"""

import json
import os
import sys

import jax
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from configs import gpt2 as gpt2_config
from lineage.train import distributed, loop
from lineage.train import lm

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/gpt2.py:PRESET", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, summary.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
flags.DEFINE_string("prompt", None, "Prompt for --mode=sample (overrides config.sample.prompt).")
distributed.define_flags()


def build(cfg, workdir):
  """lm.build, on process 0 first: it prepares datasets and trains tokenizers that the other
  processes then read rather than race to write."""
  if jax.process_count() == 1:
    return lm.build(cfg, workdir)
  parts = lm.build(cfg, workdir) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices("experiments.gpt2: data prepared")
  return parts or lm.build(cfg, workdir)


def run_sample(cfg, workdir):
  parts = build(cfg, workdir)
  params = lm.restore_params(cfg, workdir, parts)
  prompt = FLAGS.prompt if FLAGS.prompt is not None else cfg.sample.prompt
  for i, text in enumerate(lm.sample_texts(cfg, parts, params, [prompt] * cfg.sample.num_samples)):
    print(f"--- sample {i} ---\n{prompt}{text}")


def run_eval(cfg, workdir):
  parts = build(cfg, workdir)
  params = lm.restore_params(cfg, workdir, parts)
  result = loop.evaluate(loop.build_trainer(cfg, parts.task), params, parts.task.eval_data())
  print(json.dumps({"eval": result}))
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint phase at INFO
  distributed.initialize_from_flags()
  cfg, workdir = FLAGS.config, FLAGS.workdir
  gpt2_config.resolve_dtype(cfg)
  if FLAGS.mode == "train":
    loop.train(cfg, workdir, build(cfg, workdir).task)
  elif FLAGS.mode == "eval":
    run_eval(cfg, workdir)
  else:
    run_sample(cfg, workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  sys.exit(app.run(main))
