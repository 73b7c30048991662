"""CLIP's modes beyond training (zero-shot with confusion matrices, the probe alone), and
`load`, which hands a trained run's encoders to other milestones."""

import json
import os

import jax
import ml_collections
import numpy as np

from lineage.milestones.clip import task as task_lib
from lineage.milestones.clip import zero_shot
from lineage.train import metrics as metrics_lib
from lineage.train import weights


def load(workdir, step=None, batch_size=256):
  """The encoders of a trained run in `workdir` (its config.json, tokenizer and checkpoint,
  the latest or `step`): a zero_shot.Encoder with embed_images, embed_texts and scores."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config.json in {workdir}: is it a CLIP run's workdir? Train "
                            "one with python -m experiments.clip --mode=train")
  with open(path) as f:
    cfg = ml_collections.ConfigDict(json.load(f))
  return encoder(cfg, workdir, step, batch_size)


def encoder(cfg, workdir, step=None, batch_size=256):
  task = task_lib.build_task(cfg, workdir, with_data=False)
  params = weights.restore_params(cfg, workdir, task, step)
  tok = task_lib.tokenizer(cfg, workdir)
  return zero_shot.Encoder(task_lib.model_config(cfg, tok.vocab_size), params, tok, batch_size)


def _evaluator(cfg, workdir, with_train):
  enc = encoder(cfg, workdir, batch_size=cfg.zero_shot.batch_size)
  train = task_lib.load(cfg, cfg.data.train_split) if with_train else None
  return enc, task_lib.evaluator(cfg, enc.cfg, enc.tokenizer, train)


def run_zero_shot(cfg, workdir):
  """Zero-shot accuracies (ensemble and single template) of the latest checkpoint, their
  confusion matrices as zero_shot.json and confusion_<task>_<split>.png in the workdir."""
  enc, evaluator = _evaluator(cfg, workdir, with_train=False)
  ensembles = evaluator.ensembles(enc)
  result = {}
  for split, tasks in evaluator.zero_shot(enc, ensembles).items():
    for name, p in tasks.items():
      classes = evaluator.splits[split].classes[name][1]
      matrix = zero_shot.confusion_matrix(p.labels, p.ensemble, len(classes))
      accuracy, single_accuracy = (float(np.mean(p.ensemble == p.labels)),
                                   float(np.mean(p.single == p.labels)))
      entry = result[f"{name}_{split}"] = {
          "accuracy": accuracy, "single_template": single_accuracy, "classes": list(classes),
          "confusion": matrix.tolist(), "templates": ensembles[name],
          "single": evaluator.tasks[name][0], "examples": len(p.labels)}
      line = (f"zero-shot {name} on {split}: {accuracy:.1%} with {len(ensembles[name])} "
              f"templates, {single_accuracy:.1%} with one")
      if p.fixed is not None:
        entry["chosen_on"] = list(evaluator.validation)
        entry["fixed_templates"] = evaluator.tasks[name]
        entry["fixed"] = float(np.mean(p.fixed == p.labels))
        line += f", {entry['fixed']:.1%} with zero_shot.templates' {len(evaluator.tasks[name])}"
      zero_shot.plot_confusion(matrix, classes, os.path.join(workdir,
                                                             f"confusion_{name}_{split}.png"),
                               f"zero-shot {name}, {split}: {accuracy:.1%}")
      metrics_lib.console(line)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "zero_shot.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result


def run_probe(cfg, workdir):
  """The linear probe of the latest checkpoint's image features, as probe.json."""
  if not cfg.probe.train_examples:
    raise ValueError("probe.train_examples is 0; set --config.probe.train_examples=N")
  enc, evaluator = _evaluator(cfg, workdir, with_train=True)
  result = evaluator.probe(enc)
  for key, value in result.items():
    metrics_lib.console(f"{key}: {value:.1%}")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "probe.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result
