"""Training a small GPT on the in-context mapping task (icl.py) and measuring accuracy
against the number of demonstrations K, dense attention against GPT-3's alternating dense
and locally banded layers, each variant a run of the generic loop in its own directory."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt3 import icl, plots
from lineage.models import gpt
from lineage.train import loop

VARIANTS = ("dense", "banded")


def parse_shots(text):
  """"0,1,2,4,8,16" -> (0, 1, 2, 4, 8, 16), checked: non-empty, non-negative, no repeats."""
  try:
    shots = tuple(int(s) for s in str(text).split(",") if s.strip())
  except ValueError:
    raise ValueError(f"shots={text!r} must be comma-separated integers, e.g. 0,1,2,4,8,16")
  if not shots:
    raise ValueError("the list of K (shots) is empty; give at least one, e.g. 0,1,8")
  if min(shots) < 0 or len(set(shots)) != len(shots):
    raise ValueError(f"shots={text!r}: each K must be >= 0 and appear once")
  return tuple(sorted(shots))


def variants(icl_cfg):
  names = tuple(v.strip() for v in icl_cfg.variants.split(",") if v.strip())
  unknown = sorted(set(names) - set(VARIANTS))
  if not names or unknown:
    raise ValueError(f"icl.variants={icl_cfg.variants!r}: choose one or both of "
                     f"{', '.join(VARIANTS)}")
  return names


def model_config(cfg, variant):
  """The run's GPT: dense (no band), or every odd layer banded to icl.window tokens."""
  spec = icl.spec_from_config(cfg.icl)
  model_cfg = pretrain.model_config(cfg)
  if model_cfg.vocab_size != spec.vocab_size:
    raise ValueError(f"model.vocab_size={model_cfg.vocab_size} must equal icl.num_items + "
                     f"icl.num_labels = {spec.vocab_size}")
  longest = 2 * spec.pairs - 1
  if model_cfg.context < longest:
    raise ValueError(f"model.context={model_cfg.context} is shorter than a training sequence "
                     f"({longest} tokens for icl.pairs={spec.pairs}); raise it")
  if variant == "dense":
    return dataclasses.replace(model_cfg, local_window=0)
  window = cfg.icl.window
  if window <= 0:
    raise ValueError(f"icl.window={window}: the banded variant needs a window of at least one "
                     "token (or leave banded out of icl.variants)")
  if model_cfg.num_layers < 2:
    raise ValueError("the banded variant bands every odd layer; model.num_layers must be >= 2")
  prompt = 2 * max(parse_shots(cfg.icl.shots)) + 1
  if window >= prompt:
    raise ValueError(f"icl.window={window} covers the longest prompt ({prompt} tokens), so the "
                     "banded layers would equal dense ones; pick a window below it")
  return dataclasses.replace(model_cfg, local_window=window)


class Evaluator:
  """The loop's evaluation hook: accuracy at each K on held-out mappings (and on new
  symbols), the argmax over the label tokens at each query, one compiled call for all K."""

  def __init__(self, model_cfg, spec, shots, examples, seed):
    sets = [icl.eval_set(spec, k, examples, seed) for k in shots]
    if spec.heldout_items:
      sets += [icl.eval_set(spec, k, examples, seed, new_symbols=True) for k in shots]
    self.names = ([f"acc_k{k}" for k in shots] +
                  ([f"new_acc_k{k}" for k in shots] if spec.heldout_items else []))
    self.tokens = np.concatenate([s.tokens for s in sets])
    self.read_at = np.concatenate([np.full(examples, 2 * s.shots) for s in sets])
    self.answers = np.concatenate([s.answers for s in sets]) - spec.num_items
    self.examples = examples
    model = gpt.GPT(dataclasses.replace(model_cfg, attention_impl="xla"))
    first_label = spec.num_items

    @jax.jit
    def predict(params, tokens, read_at):
      logits = model.apply({"params": params}, tokens)
      rows = logits[jnp.arange(tokens.shape[0]), read_at]
      return rows[:, first_label:].argmax(-1)
    self._predict = predict

  def __call__(self, params, step=None):
    correct = np.asarray(self._predict(params, self.tokens, self.read_at)) == self.answers
    return {name: float(part.mean())
            for name, part in zip(self.names, np.split(correct, len(self.names)))}


def icl_task(cfg, model_cfg):
  spec = icl.spec_from_config(cfg.icl)
  shots = parse_shots(cfg.icl.shots)
  train_data = icl.TrainBatches(spec, cfg.train.batch_size, cfg.train.seed)
  task = pretrain.gpt_task(model_cfg, train_data,
                           tokens_per_batch=cfg.train.batch_size * (2 * spec.pairs - 1))
  evaluate = Evaluator(model_cfg, spec, shots, cfg.icl.eval_examples, cfg.icl.eval_seed)
  return dataclasses.replace(task, evaluate=evaluate)


def curves(summary, shots, prefix="eval_acc_k"):
  return [summary[f"{prefix}{k}"] for k in shots]


def acceptance(accs, shots, chance):
  """The issue's bar: K=16 (the largest K) >= 0.8 and >= 0.3 above K=0, K=0 within 5
  points of chance."""
  by_k = dict(zip(shots, accs))
  top, zero = by_k[max(shots)], by_k.get(0)
  checks = {"top_k_at_least_0.8": top >= 0.8}
  if zero is not None:
    checks["gain_over_k0_at_least_0.3"] = top - zero >= 0.3
    checks["k0_within_5_points_of_chance"] = abs(zero - chance) <= 0.05
  return checks


def run(cfg, workdir):
  """Trains each variant under workdir/<variant>, then writes summary.json, report.md and
  icl.png (accuracy against K) in workdir; returns the summary."""
  spec = icl.spec_from_config(cfg.icl)
  shots = parse_shots(cfg.icl.shots)
  names = variants(cfg.icl)
  model_cfgs = {v: model_config(cfg, v) for v in names}  # All checked before any training.
  results = {}
  for variant in names:
    run_cfg = cfg.copy_and_resolve_references()
    run_cfg.model.local_window = model_cfgs[variant].local_window
    _, summary = loop.train(run_cfg, os.path.join(workdir, variant),
                            icl_task(run_cfg, model_cfgs[variant]))
    accs = curves(summary, shots)
    results[variant] = {
        "local_window": model_cfgs[variant].local_window, "accuracy": dict(zip(shots, accs)),
        "final_train_loss": summary["final_train_loss"],
        "acceptance": acceptance(accs, shots, spec.chance)}
    if spec.heldout_items:
      results[variant]["new_symbols_accuracy"] = dict(zip(shots, curves(summary, shots,
                                                                        "eval_new_acc_k")))
  summary = {"task": "icl", "shots": list(shots), "chance": spec.chance,
             "ideal": {k: icl.ideal_accuracy(spec, k) for k in shots},
             "steps": cfg.train.steps, "variants": results}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    plots.accuracy_vs_k(summary, os.path.join(workdir, "icl.png"))
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(report(summary, cfg))
  return summary


def table(summary):
  """Markdown: accuracy at each K per variant, chance and a perfect learner's ceiling."""
  shots = summary["shots"]
  head = "| | " + " | ".join(f"K={k}" for k in shots) + " |\n|---|" + "---|" * len(shots)
  band = lambda w: f"odd layers banded to {w} tokens" if w else "every layer dense"
  rows = [f"| {v} ({band(r['local_window'])}) | "
          + " | ".join(f"{r['accuracy'][k]:.3f}" for k in shots) + " |"
          for v, r in summary["variants"].items()]
  rows += [f"| {v}, new symbols | " + " | ".join(f"{r['new_symbols_accuracy'][k]:.3f}"
                                                 for k in shots) + " |"
           for v, r in summary["variants"].items() if "new_symbols_accuracy" in r]
  rows.append("| perfect in-context learner | " +
              " | ".join(f"{summary['ideal'][k]:.3f}" for k in shots) + " |")
  rows.append("| chance | " + " | ".join(f"{summary['chance']:.3f}" for _ in shots) + " |")
  return head + "\n" + "\n".join(rows)


def report(summary, cfg):
  m = cfg.model
  return (f"# GPT-3: in-context learning emerging in a small model\n\n"
          f"A {m.num_layers}-layer, {m.embed_dim}-wide GPT trained {summary['steps']} steps on "
          f"sequences each with its own random mapping of {cfg.icl.num_items} item symbols to "
          f"{cfg.icl.num_labels} labels; accuracy on held-out mappings:\n\n{table(summary)}"
          "\n\n![accuracy against K](icl.png)\n")
