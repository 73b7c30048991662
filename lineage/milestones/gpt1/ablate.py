"""GPT-1's ablations from one pre-trained run (Radford et al. 2018, section 5, Table 5 and Figure 2
left): fine-tuning with the auxiliary LM loss, without it, with no pre-training at all, and
with only the embeddings and the first n blocks transferred, n = 0 ... L.

Each fine-tuning is a run of its own under workdir/<name>/ (resumable like any run); the
results go to workdir/summary.json, workdir/report.md and workdir/transfer.png.
"""

import copy
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lineage.milestones.gpt1 import modes  # noqa: E402


def runs(cfg):
  """{run name: config} of every ablation, from cfg.finetune.pretrained."""
  source = cfg.finetune.pretrained
  if not source:
    raise ValueError("--mode=ablate needs --config.finetune.pretrained=DIR, a --mode=pretrain run")
  layers = cfg.model.num_layers

  def variant(init_from, lm_coef, transfer_layers):
    run_cfg = copy.deepcopy(cfg)
    run_cfg.init_from = init_from
    run_cfg.finetune.update(lm_coef=lm_coef, transfer_layers=transfer_layers)
    return run_cfg

  pretrained = f"{modes.PRETRAINED}:{source}"
  lm_coef = cfg.finetune.lm_coef
  variants = {"full": variant(pretrained, lm_coef, -1),
              "no_aux_lm": variant(pretrained, 0.0, -1),
              "no_pretraining": variant("", lm_coef, -1)}
  # Transferring all L blocks is the full run; the sweep reuses it.
  variants.update({f"transfer_{n}": variant(pretrained, lm_coef, n) for n in range(layers)})
  return variants


def _metric(summary):
  key = "eval_pearson" if "eval_pearson" in summary else "eval_accuracy"
  return key.removeprefix("eval_"), summary[key]


def run(cfg, workdir):
  """Runs every ablation; returns workdir/summary.json's contents."""
  results = {}
  for name, run_cfg in runs(cfg).items():
    results[name] = modes.run_finetune(run_cfg, os.path.join(workdir, name))
  metric = _metric(results["full"])[0]
  layers = cfg.model.num_layers
  curve = [_metric(results[f"transfer_{n}"])[1] for n in range(layers)]
  curve.append(_metric(results["full"])[1])
  summary = {"task": cfg.finetune.task, "metric": metric, "pretrained": cfg.finetune.pretrained,
             **{name: _metric(result)[1] for name, result in results.items()},
             "transfer_curve": curve}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  _plot(curve, summary["no_pretraining"], metric, cfg.finetune.task,
        os.path.join(workdir, "transfer.png"))
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(report(summary))
  return summary


def report(summary):
  """The ablation table and the layer-transfer curve as markdown."""
  metric = summary["metric"]
  rows = [("pre-trained, fine-tuned with the auxiliary LM loss", summary["full"]),
          ("pre-trained, no auxiliary LM loss (lambda = 0)", summary["no_aux_lm"]),
          ("no pre-training", summary["no_pretraining"])]
  lines = [f"# GPT-1 ablations on {summary['task']} (from {summary['pretrained']})", "",
           f"| fine-tuning | {metric} |", "|---|---:|"]
  lines += [f"| {name} | {value:.4f} |" for name, value in rows]
  lines += ["", "Embeddings and the first n blocks transferred (Figure 2 left; the rest "
            "freshly initialised):", "", "| n | " + " | ".join(
                str(n) for n in range(len(summary["transfer_curve"]))) + " |",
            "|---|" + "---:|" * len(summary["transfer_curve"]),
            f"| {metric} | " + " | ".join(f"{v:.4f}" for v in summary["transfer_curve"]) + " |",
            "", "![layers transferred](transfer.png)"]
  return "\n".join(lines) + "\n"


def _plot(curve, no_pretraining, metric, task, path):
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot(range(len(curve)), curve, marker="o", label="pre-trained blocks transferred")
  ax.axhline(no_pretraining, color="gray", linestyle="--", label="no pre-training")
  ax.set_xticks(range(len(curve)))
  ax.legend()
  ax.set_xlabel("blocks transferred from pre-training")
  ax.set_ylabel(f"{task} {metric}")
  ax.set_title("GPT-1: transferring layers (Figure 2 left)")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
