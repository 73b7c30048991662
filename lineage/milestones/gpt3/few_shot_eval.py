"""--mode=few_shot: a trained LM through GPT-3's few-shot protocol (lineage.eval.few_shot) on
the configured tasks, as the paper's tables lay it out: rows tasks, columns zero-, one- and
few-shot, one block per model. Each evaluation adds (or replaces) its model's block in
<workdir>/few_shot/summary.json, so several models evaluated into one workdir share a table."""

import json
import os

import jax
import ml_collections

from lineage.eval import few_shot, few_shot_tasks
from lineage.milestones.gpt2 import weights
from lineage.milestones.gpt3 import emergence, plots


def parse_tasks(text):
  names = tuple(t.strip() for t in str(text).split(",") if t.strip())
  unknown = sorted(set(names) - set(few_shot_tasks.TASKS))
  if not names or unknown:
    raise ValueError(f"few_shot.tasks={text!r}: choose among {', '.join(sorted(few_shot_tasks.TASKS))}")
  return names


def _rules(text):
  return tuple(r.strip() for r in text.split(",") if r.strip()) or None


def accuracies(cfg, model_cfg, params, tokenizer):
  """{task: {K: the task's primary accuracy}} and the harness's full results per task."""
  fs = cfg.few_shot
  shots = emergence.parse_shots(fs.shots)
  model = few_shot.Model(model_cfg, params, tokenizer, batch_size=fs.batch_size)
  table, details = {}, {}
  for name in parse_tasks(fs.tasks):
    task = few_shot_tasks.load(name, data_dir=cfg.data.data_dir or None,
                               manual_root=cfg.data.manual_dir or None,
                               limit=fs.limit or None, seed=fs.seed)
    result = few_shot.evaluate(model, task, shots, seed=fs.seed, rules=_rules(fs.rules),
                               max_examples=fs.max_examples or None, on_too_few=fs.on_too_few)
    table[name] = {k: result["by_k"][k][result["primary"]] for k in shots}
    details[name] = result
  return table, details


def source_config(cfg, source):
  """cfg with the model (and tokenizer) the source run was trained with, from its
  config.json, so that any run directory can be evaluated without repeating its flags."""
  run_dir = source.partition("@")[0]
  path = os.path.join(run_dir, "config.json")
  if source.startswith(weights.HF_PREFIX) or not os.path.isfile(path):
    return cfg
  with open(path) as f:
    saved = json.load(f)
  if saved.get("task") == "icl":
    raise ValueError(f"{source} was trained on the in-context mapping task, not on text; "
                     "--mode=few_shot needs a language model (--config.task=lm, a "
                     "--mode=scaling size, or hf:PATH)")
  out = cfg.copy_and_resolve_references()
  with out.unlocked():
    out.model = ml_collections.ConfigDict(saved["model"])
    out.data.tokenizer = saved.get("data", {}).get("tokenizer", cfg.data.tokenizer)
  return out


def run(cfg, workdir):
  """Evaluates --config.init_from (else the run in --workdir); writes the table
  (report.md), summary.json and few_shot.png under workdir/few_shot/."""
  source = weights.weights_source(cfg, workdir, "few_shot")
  cfg = source_config(cfg, source)
  model_cfg, params = weights.load_model(cfg, source)
  tokenizer = weights.source_tokenizer(cfg, source, model_cfg)
  table, details = accuracies(cfg, model_cfg, params, tokenizer)
  name = cfg.few_shot.model_name or os.path.basename(source.rstrip("/")) or source
  out_dir = os.path.join(workdir, "few_shot")
  summary_path = os.path.join(out_dir, "summary.json")
  summary = {"models": {}}
  if os.path.isfile(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
  summary["models"][name] = {"source": source, "shots": list(emergence.parse_shots(
      cfg.few_shot.shots)), "accuracy": table, "details": details}
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    with open(summary_path, "w") as f:
      json.dump(summary, f, indent=2)
    blocks = {m: {t: {int(k): v for k, v in accs.items()} for t, accs in b["accuracy"].items()}
              for m, b in summary["models"].items()}
    plots.few_shot_vs_k(blocks, os.path.join(out_dir, "few_shot.png"))
    with open(os.path.join(out_dir, "report.md"), "w") as f:
      f.write(table_markdown(blocks))
  print(table_markdown({name: table}))
  return summary


def table_markdown(blocks):
  """GPT-3's layout: one block of rows per model, columns zero-shot, one-shot and few-shot
  (the largest K evaluated); a K not evaluated is a dash."""
  lines = ["# GPT-3 few-shot evaluation", "",
           "| model | task | zero-shot | one-shot | few-shot (K) |", "|---|---|---|---|---|"]
  for model, tasks in blocks.items():
    for task, accs in tasks.items():
      top = max(accs)
      cell = lambda k: f"{accs[k]:.3f}" if k in accs else "-"
      few = f"{accs[top]:.3f} (K={top})" if top > 1 else "-"
      lines.append(f"| {model} | {task} | {cell(0)} | {cell(1)} | {few} |")
  return "\n".join(lines) + "\n\n![accuracy against K](few_shot.png)\n"
