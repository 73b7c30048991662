"""DALL-E: train the discrete VAE, train the transformer over [caption; image tokens], then
sample images for held-out prompts, judge them and rerank them with CLIP
(lineage.milestones.dalle).

  python -m experiments.dalle --config=configs/dalle.py:tiny --workdir=runs/dalle \
      --mode=train_dvae|train|sample [--config.sample.clip_dir=runs/clip_tiny]
The modes share one workdir and run in that order. See configs/dalle.py.
"""

from absl import flags

from experiments import cli
from lineage.milestones import dalle

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(dalle.MODES, needs_workdir=dalle.MODES)
  dalle.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
