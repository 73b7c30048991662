"""The scaling sweep (GPT-3 Figure 3.1 in small): a family of GPT sizes trained on the same
data for the same tokens, held-out loss against non-embedding parameters and against
training compute with a fitted power law each, and few-shot accuracy against size.

Compute is C = 6 N D (N non-embedding parameters, D trained tokens), the convention of
Kaplan et al. (2020) that GPT-3's figure uses; lineage.models.gpt.flops_per_token adds the
attention term, which at these context lengths and widths would dominate the smallest
models, so it is reported beside C but not fitted. The default sizes have at least two layers: a
one-layer model cannot compose attention heads (no induction head, Olsson et al. 2022), and in
a sweep on the byte corpus its loss sat well above the line the deeper sizes fall on.
"""

import dataclasses
import json
import os

import flax.linen as nn
import jax

from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt3 import few_shot_eval, plots, power_law
from lineage.models import gpt
from lineage.train import loop


def parse_sizes(text, head_dim):
  """"1x16,2x32" -> [(layers, width), ...], checked against the head size."""
  sizes = []
  for item in (s.strip() for s in str(text).split(",") if s.strip()):
    layers, _, width = item.partition("x")
    try:
      layers, width = int(layers), int(width)
    except ValueError:
      raise ValueError(f"scaling.sizes item {item!r} must be LAYERSxWIDTH, e.g. 2x64")
    if layers < 1 or width < head_dim or width % head_dim:
      raise ValueError(f"scaling.sizes item {item!r}: need layers >= 1 and a width that is a "
                       f"multiple of scaling.head_dim={head_dim}")
    sizes.append((layers, width))
  if len(sizes) < 3:
    raise ValueError(f"scaling.sizes={text!r} gives {len(sizes)} sizes; a power-law fit "
                     "needs at least 3 (the issue's sweep has at least 5)")
  return sizes


def size_config(cfg, layers, width):
  """The run's config for one size: the sweep's steps, batch and rate, the size's dense GPT."""
  sc = cfg.scaling
  run_cfg = cfg.copy_and_resolve_references()
  run_cfg.task = "lm"
  run_cfg.model.update(num_layers=layers, embed_dim=width, num_heads=width // sc.head_dim,
                       mlp_dim=4 * width, head_size=0, local_window=0,
                       context=cfg.data.seq_len, vocab_size=sc.vocab_size)
  run_cfg.train.update(steps=sc.steps, batch_size=sc.batch_size, lr=sc.lr,
                       warmup_steps=sc.warmup_steps, decay_steps=0, eval_every=sc.steps,
                       checkpoint_every=sc.steps)
  return run_cfg


def non_embedding_params(params):
  """N of the scaling laws: every parameter but the token and position embeddings."""
  params = nn.unbox(params)
  return gpt.count_params(params, include_positions=False) - params["wte"]["embedding"].size


def train_size(cfg, workdir, layers, width):
  """Pre-trains one size; its facts for the sweep's summary, and its parameters."""
  run_cfg = size_config(cfg, layers, width)
  parts = pretrain.build(run_cfg, workdir)
  state, summary = loop.train(run_cfg, workdir, parts.task)
  params = state.params
  n = non_embedding_params(params)
  tokens = run_cfg.train.steps * run_cfg.train.batch_size * run_cfg.data.seq_len
  return {"name": f"{layers}x{width}", "layers": layers, "width": width, "params": n,
          "total_params": gpt.count_params(params), "tokens": tokens, "flops": 6.0 * n * tokens,
          "flops_with_attention": gpt.flops_per_token(parts.model_cfg, params) * tokens,
          "loss": summary["eval_loss"]}, parts, params


def run(cfg, workdir):
  """Trains every size under workdir/<LxW>/, fits and plots; writes summary.json, report.md,
  scaling.png and scaling_accuracy.png; returns the summary."""
  sizes = parse_sizes(cfg.scaling.sizes, cfg.scaling.head_dim)
  points, accuracy = [], {}
  for layers, width in sizes:
    point, parts, params = train_size(cfg, os.path.join(workdir, f"{layers}x{width}"),
                                      layers, width)
    point["few_shot"], _ = few_shot_eval.accuracies(cfg, parts.model_cfg, params,
                                                    parts.tokenizer)
    points.append(point)
  offset = cfg.scaling.power_law_offset
  fits = {key: power_law.fit([p[key] for p in points], [p["loss"] for p in points], offset)
          for key in ("params", "flops")}
  summary = {"sizes": points, "param_ratio": points[-1]["params"] / points[0]["params"],
             "fits": {k: dataclasses.asdict(v) for k, v in fits.items()}}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    plots.scaling(points, fits, os.path.join(workdir, "scaling.png"))
    for task in points[0]["few_shot"]:
      for k in points[0]["few_shot"][task]:
        accuracy[f"{task}, K={k}"] = [p["few_shot"][task][k] for p in points]
    plots.accuracy_vs_size([p["params"] for p in points], accuracy,
                           os.path.join(workdir, "scaling_accuracy.png"), "few-shot accuracy")
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(report(summary))
  return summary


def report(summary):
  lines = ["# GPT-3 scaling in small", "",
           "| size | non-embedding params | tokens | C = 6ND (FLOPs) | held-out loss |",
           "|---|---|---|---|---|"]
  lines += [f"| {p['name']} | {p['params']:,} | {p['tokens']:,} | {p['flops']:.3g} | "
            f"{p['loss']:.4f} |" for p in summary["sizes"]]
  for key, law in summary["fits"].items():
    fit = power_law.PowerLaw(**law)
    lines.append(f"\nAgainst {'non-embedding parameters' if key == 'params' else 'compute'}: "
                 f"{fit.label('N' if key == 'params' else 'C')}")
  lines.append(f"\nParameters span {summary['param_ratio']:.0f}x.\n\n"
               "![loss against size and compute](scaling.png)\n\n"
               "![few-shot accuracy against size](scaling_accuracy.png)\n")
  return "\n".join(lines)
