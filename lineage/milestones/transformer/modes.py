"""The Transformer's modes beyond training: BLEU of the latest checkpoint on the test split, and
of the average of the last checkpoints, as the paper reports its models."""

import json
import os

from lineage.milestones.transformer import task as task_lib
from lineage.train import checkpoint as ckpt_lib
from lineage.train import metrics as metrics_lib
from lineage.train import weights


def test_bleu(cfg, workdir, params, name, **extra):
  """BLEU on the test split, written with `extra` and example translations to
  workdir/<name>.json."""
  tok = task_lib.tokenizer(cfg, workdir)
  pairs = task_lib.text_pairs(cfg.data, "test")
  model_cfg = task_lib.model_config(cfg, tok.vocab_size)
  score, hypotheses = task_lib.bleu(model_cfg, params, tok, pairs, cfg.decode)
  result = {"bleu": score, "pairs": len(pairs), "beam_size": cfg.decode.beam_size,
            "alpha": cfg.decode.alpha, **extra,
            "examples": [{"source": s, "reference": t, "translation": h}
                         for (s, t), h in zip(pairs[:cfg.eval.examples], hypotheses)]}
  with open(os.path.join(workdir, f"{name}.json"), "w") as f:
    json.dump(result, f, indent=2)
  metrics_lib.console(f"{name}: test BLEU {score:.2f} over {len(pairs)} pairs")
  return result


def run_eval(cfg, workdir):
  """BLEU of the latest checkpoint."""
  task = task_lib.build_task(cfg, workdir, with_data=False)
  return test_bleu(cfg, workdir, weights.restore_params(cfg, workdir, task), "eval")


def run_average(cfg, workdir):
  """BLEU of the mean of the last eval.average_last checkpoints (train.keep_checkpoints must
  keep that many)."""
  task = task_lib.build_task(cfg, workdir, with_data=False)
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  try:
    steps = checkpoints.all_steps()
  finally:
    checkpoints.close()
  wanted = cfg.eval.average_last
  if len(steps) < wanted:
    raise ValueError(f"--mode=average wants the last {wanted} checkpoints but {workdir} holds "
                     f"{len(steps)} ({steps}); lower --config.eval.average_last or keep more "
                     "with train.keep_checkpoints and train.checkpoint_every")
  steps = steps[-wanted:]
  params = task_lib.average_params([weights.restore_params(cfg, workdir, task, step)
                                    for step in steps])
  return test_bleu(cfg, workdir, params, "average", steps=steps)
