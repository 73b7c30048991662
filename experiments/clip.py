"""CLIP (2021): contrastive image-text pre-training, zero-shot classification by prompt
ensembles, and the linear probe (lineage.milestones.clip).

  python -m experiments.clip --config=configs/clip.py:tiny --workdir=runs/clip_tiny \
      --mode=train|zero_shot|probe [--config.train.steps=...]
See configs/clip.py for the presets and what to expect.
"""

from absl import flags

from experiments import cli
from lineage.milestones import clip

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(clip.MODES, needs_workdir=clip.MODES)
  clip.run(FLAGS.mode, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
