"""GPT-3's figures in small: accuracy against the number of demonstrations K (Figure 1.2's
axes), held-out loss against size and compute with a fitted power law (Figure 3.1), and
accuracy against size."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _k_axis(ax, shots):
  """K on a log-like axis with K=0 shown: positions log2(K + 1)."""
  ax.set_xticks([np.log2(k + 1) for k in shots], [str(k) for k in shots])
  ax.set_xlabel("demonstrations in the prompt (K)")


def accuracy_vs_k(summary, path):
  """The ICL run: one curve per attention variant, chance and a perfect learner."""
  shots = summary["shots"]
  x = [np.log2(k + 1) for k in shots]
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for variant, result in summary["variants"].items():
    ax.plot(x, [result["accuracy"][k] for k in shots], "o-",
            label=f"{variant}" + (f" (window {result['local_window']})"
                                  if result["local_window"] else ""))
    if "new_symbols_accuracy" in result:
      ax.plot(x, [result["new_symbols_accuracy"][k] for k in shots], "x:",
              label=f"{variant}, new symbols")
  ax.plot(x, [summary["ideal"][k] for k in shots], "--", color="gray",
          label="perfect in-context learner")
  ax.axhline(summary["chance"], color="black", linewidth=0.8, linestyle=":", label="chance")
  _k_axis(ax, shots)
  ax.set(ylabel="accuracy on held-out mappings", ylim=(0, 1.02),
         title="In-context learning of per-sequence mappings")
  ax.legend(fontsize=8)
  _save(fig, path)


def few_shot_vs_k(blocks, path):
  """blocks: {model: {task: {K: accuracy}}}; one line per (model, task)."""
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  shots = sorted({k for tasks in blocks.values() for accs in tasks.values() for k in accs})
  for model, tasks in blocks.items():
    for task, accs in tasks.items():
      ks = sorted(accs)
      ax.plot([np.log2(k + 1) for k in ks], [accs[k] for k in ks], "o-", label=f"{model}: {task}")
  _k_axis(ax, shots)
  ax.set(ylabel="accuracy", title="Few-shot accuracy against K")
  ax.legend(fontsize=7)
  _save(fig, path)


def scaling(points, fits, path):
  """Held-out loss against non-embedding parameters and against training compute, each with
  its fitted power law. points: list of {"params", "flops", "loss"}; fits: {"params": law,
  "flops": law}."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for ax, key, xlabel in ((axes[0], "params", "non-embedding parameters"),
                          (axes[1], "flops", "training compute (FLOPs, 6N per token)")):
    x = np.array([p[key] for p in points], float)
    y = np.array([p["loss"] for p in points], float)
    ax.loglog(x, y, "o", label="held-out loss")
    grid = np.geomspace(x.min(), x.max(), 100)
    ax.loglog(grid, fits[key](grid), "-", label=fits[key].label("x"))
    ax.set(xlabel=xlabel, ylabel="held-out loss (nats/token)")
    ax.legend(fontsize=7)
  fig.suptitle("Scaling: loss against size and compute")
  _save(fig, path)


def accuracy_vs_size(params, accuracies, path, ylabel):
  """accuracies: {label: [one per size]}."""
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for label, accs in accuracies.items():
    ax.semilogx(params, accs, "o-", label=label)
  ax.set(xlabel="non-embedding parameters", ylabel=ylabel, title="Accuracy against size")
  ax.legend(fontsize=8)
  _save(fig, path)
