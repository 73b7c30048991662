"""The Transformer's modes beyond training: BLEU of the latest checkpoint on the test split, and
of the average of the last checkpoints, as the paper reports its models; translation of text."""

import json
import os
import sys

from absl import logging

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


def max_source_tokens(cfg):
  """The most source tokens the model saw in training, its end token included: the longest
  bucket. Sinusoids would run longer, but nothing was learned there."""
  return max(int(b) for b in cfg.data.buckets.split(","))


def read_sources(tok, lines, limit):
  """Source ids (end token included) of text lines; a line of more than `limit` tokens keeps
  its first limit - 1 and a warning says so."""
  sources = []
  for number, line in enumerate(lines, start=1):
    ids = tok.encode(line)
    if len(ids) + 1 > limit:
      logging.warning("line %d: %d tokens, longer than the %d the model was trained on "
                      "(data.buckets' longest, with the end token); translating its first %d "
                      "and dropping the rest", number, len(ids), limit, limit - 1)
      ids = ids[:limit - 1]
    sources.append(ids + [tok.eot_id])
  return sources


def run_translate(cfg, workdir, input_file=None, output_file=None):
  """Beam-searched translations of input_file's lines (stdin without one) by the latest
  checkpoint, one line each, to output_file (stdout without one)."""
  task = task_lib.build_task(cfg, workdir, with_data=False)
  params = weights.restore_params(cfg, workdir, task)
  tok = task_lib.tokenizer(cfg, workdir)
  model_cfg = task_lib.model_config(cfg, tok.vocab_size)
  if input_file:
    with open(input_file, encoding="utf-8", errors="replace") as f:
      lines = f.read().splitlines()
  else:
    lines = sys.stdin.read().splitlines()
  sources = read_sources(tok, lines, max_source_tokens(cfg))
  out = [t.replace("\n", " ").replace("\r", " ")
         for t in task_lib.translations(model_cfg, params, tok, sources, cfg.decode)]
  text = "".join(t + "\n" for t in out)
  if output_file:
    with open(output_file, "w", encoding="utf-8") as f:
      f.write(text)
  else:
    sys.stdout.write(text)
    sys.stdout.flush()
  return out
