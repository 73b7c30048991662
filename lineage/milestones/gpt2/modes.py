"""GPT-2's modes besides sampling: train, eval (held-out loss), zero_shot (the paper's
Table 3 protocol) and export (a Hugging Face directory)."""

import json
import os

import jax

from lineage.interop import hf_gpt2
from lineage.milestones.gpt2 import task as task_lib
from lineage.milestones.gpt2 import weights, zero_shot
from lineage.train import distributed, loop
from lineage.train import weights as weights_lib


def build(cfg, workdir):
  return distributed.process_zero_first(lambda: task_lib.build(cfg, workdir), "gpt2")


def run_train(cfg, workdir):
  return loop.train(cfg, workdir, build(cfg, workdir).task)


def run_eval(cfg, workdir):
  """The held-out loss of the run's latest checkpoint, into eval.json."""
  parts = build(cfg, workdir)
  params = weights_lib.restore_params(cfg, workdir, parts.task)
  result = loop.evaluate(loop.build_trainer(cfg, parts.task), params, parts.task.eval_data())
  print(json.dumps({"eval": result}))
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result


def run_zero_shot(cfg, workdir, model_name=None):
  """GPT-2's Table 3 protocol; evaluating more models into the same workdir adds rows."""
  source = weights.weights_source(cfg, workdir, "zero_shot")
  model_cfg, params = weights.load_model(cfg, source)
  tokenizer = weights.source_tokenizer(cfg, source, model_cfg)
  summary = zero_shot.run(cfg, model_cfg, params, tokenizer, os.path.join(workdir, "zero_shot"),
                          model_name=model_name or cfg.preset)
  print(json.dumps(summary))
  return summary


def run_export(cfg, workdir, export_dir):
  """Writes the weights as a directory transformers' GPT2LMHeadModel loads."""
  if not export_dir:
    raise ValueError("--mode=export needs --export_dir=OUT, the directory to write")
  source = weights.weights_source(cfg, workdir, "export")
  model_cfg, params = weights.load_model(cfg, source)
  # Hugging Face sources keep GPT-2's convention, end of text = the last id.
  eot_id = (None if source.startswith(weights.HF_PREFIX)
            else weights.source_tokenizer(cfg, source, model_cfg).eot_id)
  if jax.process_index() == 0:
    out = os.path.abspath(hf_gpt2.export_hf(model_cfg, params, export_dir, eot_id))
    print(f"exported {source} to {out}\nload it with: transformers.GPT2LMHeadModel."
          f"from_pretrained({out!r})")
