"""GPT-1: pre-train a post-LN decoder LM, fine-tune it on a task, run the paper's ablations, or
export it (lineage.milestones.gpt1).

  python -m experiments.gpt1 --config=configs/gpt1.py:tiny --workdir=runs/gpt1 \
      --mode=pretrain|finetune|ablate|export [--config.finetune.task=...]
finetune starts from --config.init_from (DIR, pretrained:DIR with finetune.transfer_layers,
or hf:PATH); ablate from --config.finetune.pretrained=DIR. See configs/gpt1.py.
"""

from absl import flags

from experiments import cli
from lineage.milestones import gpt1

FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv)
  cli.check_mode(gpt1.MODES, needs_workdir=[m for m in gpt1.MODES if m != "export"])
  gpt1.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, export_dir=FLAGS.export_dir)


if __name__ == "__main__":
  cli.run(main)
