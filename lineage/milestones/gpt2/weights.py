"""Which weights a mode reads, and their model and tokenizer: `--config.init_from` (a run
directory, DIR@STEP, or hf:PATH with its own architecture), else the run in --workdir."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp

from lineage.data import tokenizers
from lineage.interop import hf_gpt2
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt2 import task as task_lib
from lineage.train import checkpoint as ckpt_lib
from lineage.train import weights

HF_PREFIX = "hf:"
GPT2_VOCAB = 50257


def weights_source(cfg, workdir, mode):
  """--config.init_from, else the run's own latest checkpoint in --workdir."""
  source = cfg.init_from or workdir
  if not source:
    raise ValueError(f"--mode={mode} needs --config.init_from=DIR[@STEP] or hf:PATH, or the "
                     "--workdir of a trained run")
  return source


def load_model(cfg, source):
  """(GPTConfig, params) to sample from, score or export: an `hf:` source's own model (with
  the run's dtype and attention implementation), or the run's model (config.model) read from
  the checkpoint of run directory `source` (DIR or DIR@STEP), which must hold every parameter.

  A run directory's config.json must describe the same architecture as config.model.
  """
  run_cfg = pretrain.model_config(cfg)
  if source.startswith(HF_PREFIX):
    hf_cfg, params = hf_gpt2.import_hf(source[len(HF_PREFIX):])
    model_cfg = dataclasses.replace(hf_cfg, dtype=run_cfg.dtype,
                                    attention_impl=run_cfg.attention_impl)
    return model_cfg, jax.tree.map(jnp.asarray, params)
  run_dir, _, step = source.partition("@")
  if step and not step.isdigit():
    raise ValueError(f"init_from={source!r}: the part after @ must be a step number")
  config_path = os.path.join(run_dir, "config.json")
  if os.path.isfile(config_path):
    with open(config_path) as f:
      saved_model = json.load(f).get("model")
    differences = (hf_gpt2.architecture_differences(run_cfg, saved_model, run_dir)
                   if saved_model else [])
    if differences:
      raise ckpt_lib.CheckpointMismatchError(
          f"{source} was trained with another model:\n  " + "\n  ".join(differences) +
          f"\nPass that run's --config.model.* flags (see {config_path}).")
  task = task_lib.gpt_task(run_cfg)
  return run_cfg, weights.restore_params(cfg, run_dir, task, int(step) if step else None)


def source_tokenizer(cfg, source, model_cfg):
  """GPT-2's BPE for Hugging Face weights with GPT-2's vocabulary (the released models),
  else config.data.tokenizer; a trained bpe tokenizer lives in the source run's directory."""
  hf = source.startswith(HF_PREFIX)
  name = "gpt2" if hf and model_cfg.vocab_size == GPT2_VOCAB else cfg.data.tokenizer
  tokenizer = tokenizers.make_tokenizer(name, vocab_dir=cfg.data.vocab_dir or None,
                                        workdir=None if hf else source.partition("@")[0])
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"the {name} tokenizer has {tokenizer.vocab_size} tokens but the model "
                     f"only {model_cfg.vocab_size}; set --config.data.tokenizer to the one "
                     "the weights were trained with")
  return tokenizer
