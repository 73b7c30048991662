"""GPT-1's modes: pretrain (the LM objective, the zero-shot heuristics logged as it goes),
finetune (one task, from --config.init_from) and ablate (the paper's ablations, all from one
pre-trained run)."""

import copy
import dataclasses
import functools
import json
import math
import os

import jax

from lineage.data import tokenizers
from lineage.interop import hf_gpt1
from lineage.milestones.gpt1 import finetune, heuristics, pretrain, tasks, transforms
from lineage.models import gpt
from lineage.train import distributed, loop
from lineage.train import metrics as metrics_lib
from lineage.train import weights as weights_lib

PRETRAINED = "pretrained"  # init_from=pretrained:DIR[@STEP] honours finetune.transfer_layers.


def _check_vocabulary(model_cfg, tokenizer):
  needed = transforms.Specials.of(tokenizer).vocab_end
  if model_cfg.vocab_size < needed:
    raise ValueError(f"model.vocab_size={model_cfg.vocab_size} leaves no room for GPT-1's "
                     f"special tokens after this tokenizer's {tokenizer.vocab_size} ids; raise it "
                     f"to at least {needed}")


def hf_importers(model_cfg):
  """init_from=hf:PATH: an OpenAIGPTLMHeadModel directory (the released weights), its
  vocabulary extended by GPT-1's special tokens when the run's is larger."""
  return {"hf": functools.partial(hf_gpt1.import_for, model_cfg)}


def pretrain_parts(cfg, workdir):
  """The LM pre-training Task, its evaluation hook running the zero-shot heuristics."""
  parts = distributed.process_zero_first(
      lambda: pretrain.build(cfg, workdir, importers=hf_importers), "gpt1")
  _check_vocabulary(parts.model_cfg, parts.tokenizer)
  names = [n.strip() for n in cfg.zero_shot.tasks.split(",") if n.strip()]
  if names:
    evaluate = heuristics.evaluator(parts.model_cfg, parts.tokenizer, names,
                                    lambda name: heuristics.examples_for(name, cfg),
                                    cfg.zero_shot.batch_size, parts.model_cfg.context)
    parts.task = dataclasses.replace(parts.task, evaluate=evaluate)
  return parts


def run_pretrain(cfg, workdir):
  return loop.train(cfg, workdir, pretrain_parts(cfg, workdir).task)


def _pretrained_importer(cfg, model_cfg, transfer_layers):
  """import_fn for pretrained:DIR[@STEP]: that run's GPT parameters, only the embeddings and the
  first `transfer_layers` blocks when it is not -1."""
  def import_fn(path):
    weights_lib.parse_source(path)  # Checks that DIR holds checkpoints and STEP is a number.
    run_dir, _, step = path.partition("@")
    params = weights_lib.restore_params(cfg, run_dir, pretrain.gpt_task(model_cfg),
                                        int(step) if step else None)
    return finetune.transfer_only(params, transfer_layers)
  return import_fn


def _tokenizer(cfg):
  source = cfg.init_from.partition(":")[2] if ":" in cfg.init_from else cfg.init_from
  return tokenizers.make_tokenizer(cfg.data.tokenizer, vocab_dir=cfg.data.vocab_dir or None,
                                   workdir=source.partition("@")[0] or None)


def _max_len(ft, model_cfg, kind, examples, specials):
  """finetune.max_len, or the longest framed example rounded up to 8, within the context."""
  if ft.max_len:
    return min(ft.max_len, model_cfg.context)
  longest = max(len(seq) for texts, _ in examples
                for seq in transforms.transform(kind, specials, texts, 1 << 30)[0])
  return min(model_cfg.context, 8 * math.ceil(longest / 8))


def finetune_setup(cfg):
  """(the fine-tuning config for the loop, its Task, facts for summary.json)."""
  ft = cfg.finetune
  if ft.task not in tasks.SPECS:
    raise ValueError(f"unknown finetune.task {ft.task!r}; choose one of {', '.join(tasks.SPECS)}")
  spec = tasks.SPECS[ft.task]
  model_cfg = pretrain.model_config(cfg)
  tokenizer = _tokenizer(cfg)
  _check_vocabulary(model_cfg, tokenizer)
  specials = transforms.Specials.of(tokenizer)
  read = functools.partial(tasks.examples, ft.task, seed=ft.seed,
                           data_dir=cfg.data.data_dir or None,
                           manual_root=cfg.data.manual_dir or None, limit=ft.limit)
  train_raw = tasks.tokenized(tokenizer, read("train", num_synthetic=ft.num_synthetic))
  eval_raw = tasks.tokenized(tokenizer, read("validation", num_synthetic=ft.num_eval))
  max_len = _max_len(ft, model_cfg, spec.kind, train_raw + eval_raw, specials)
  train_set = finetune.encode(spec, specials, train_raw, max_len)
  eval_set = finetune.encode(spec, specials, eval_raw, max_len)
  for name, encoded in (("training", train_set), ("evaluation", eval_set)):
    if encoded.truncated:
      metrics_lib.console(f"{encoded.truncated} {name} sequences were longer than {max_len} "
                          "tokens and lost the start of their first text")
  model = finetune.GPTWithHead(model_cfg, num_outputs=spec.num_outputs,
                               head_dropout=ft.head_dropout)
  views = train_set.tokens.shape[1]
  abstract = jax.eval_shape(pretrain.gpt_task(model_cfg).init_params, jax.random.PRNGKey(0))
  task = loop.Task(
      init_params=functools.partial(finetune.init_params, model, spec.combine, views),
      loss_fn=finetune.loss_fn(model, spec, ft.lm_coef),
      train_data=finetune.EpochBatches(train_set, ft.batch_size, ft.seed),
      evaluate=finetune.evaluator(model, spec, eval_set, ft.eval_batch_size),
      import_params={PRETRAINED: _pretrained_importer(cfg, model_cfg, ft.transfer_layers),
                     **hf_importers(model_cfg)},
      flops_per_token=gpt.flops_per_token(model_cfg, abstract),
      tokens_per_batch=ft.batch_size * views * max_len)
  steps = finetune.steps_for_epochs(len(train_set), ft.batch_size, ft.epochs)
  ft_cfg = copy.deepcopy(cfg)
  ft_cfg.train.update(steps=steps, batch_size=ft.batch_size, lr=ft.lr,
                      warmup_steps=math.ceil(ft.warmup_fraction * steps), schedule="linear",
                      min_lr_ratio=0.0, b1=0.9, b2=0.999, weight_decay=ft.weight_decay,
                      log_every=ft.log_every, eval_every=steps, checkpoint_every=steps,
                      seed=ft.seed)
  facts = {"task": ft.task, "num_train": len(train_set), "num_eval": len(eval_set),
           "max_len": max_len, "truncated_train": train_set.truncated,
           "truncated_eval": eval_set.truncated, "lm_coef": ft.lm_coef,
           "init_from": cfg.init_from, "transfer_layers": ft.transfer_layers}
  return ft_cfg, task, facts


def run_finetune(cfg, workdir):
  """Fine-tunes; summary.json holds the loop's summary (eval_accuracy or eval_pearson) and the
  run's facts (task, example counts, truncations)."""
  ft_cfg, task, facts = finetune_setup(cfg)
  _, summary = loop.train(ft_cfg, workdir, task)
  summary = {**summary, **facts}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def run_export(cfg, workdir, export_dir):
  """The GPT of a run (--config.init_from=DIR[@STEP], else --workdir), pre-trained or
  fine-tuned (its task head is left out), as a directory transformers'
  OpenAIGPTLMHeadModel loads."""
  if not export_dir:
    raise ValueError("--mode=export needs --export_dir=OUT, the directory to write")
  source = cfg.init_from or workdir
  if not source:
    raise ValueError("--mode=export needs --config.init_from=DIR[@STEP] or --workdir of a run")
  run_dir, _, step = source.partition("@")
  model_cfg = pretrain.model_config(cfg)
  params = weights_lib.restore_params(cfg, run_dir, pretrain.gpt_task(model_cfg),
                                      int(step) if step else None)
  if jax.process_index() == 0:
    out = os.path.abspath(hf_gpt1.export_hf(model_cfg, params, export_dir))
    print(f"exported {source} to {out}\nload it with: transformers.OpenAIGPTLMHeadModel."
          f"from_pretrained({out!r})")
  return export_dir
