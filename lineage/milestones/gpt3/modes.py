"""GPT-3's train mode: the in-context mapping task (config.task=icl, the tiny default) or
language-model pre-training on data.* (config.task=lm, the paper presets) through GPT-1's
generic pre-training with init_from."""

from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt3 import emergence
from lineage.train import distributed, loop

TASKS = ("icl", "lm")


def run_train(cfg, workdir):
  if cfg.task == "icl":
    return emergence.run(cfg, workdir)
  if cfg.task == "lm":
    parts = distributed.process_zero_first(lambda: pretrain.build(cfg, workdir), "gpt3")
    return loop.train(cfg, workdir, parts.task)
  raise ValueError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
