"""GPT-2's training task: GPT-1's generative pre-training (`lineage.milestones.gpt1.pretrain`),
with GPT-2's Hugging Face format as the `init_from=hf:PATH` importer."""

import functools

from lineage.interop import hf_gpt2
from lineage.milestones.gpt1 import pretrain


def hf_importers(model_cfg):
  """init_from=hf:PATH: a GPT2LMHeadModel directory of the run's architecture."""
  return {"hf": functools.partial(hf_gpt2.import_for, model_cfg)}


def gpt_task(model_cfg, train_data=None, eval_data=None, tokens_per_batch=0):
  """The loop's Task for a GPT-2 of `model_cfg` (see pretrain.gpt_task)."""
  return pretrain.gpt_task(model_cfg, train_data, eval_data, tokens_per_batch,
                           import_params=hf_importers(model_cfg))


def build(cfg, workdir=None) -> pretrain.LMParts:
  """Model, tokenizer, data and loop Task for configs/gpt2.py (see pretrain.build)."""
  return pretrain.build(cfg, workdir, importers=hf_importers)
