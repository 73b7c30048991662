"""experiments/bench.py end to end: the binary runs and its last stdout line is the JSON result."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each test runs the binary in a subprocess

REPO = pathlib.Path(__file__).resolve().parent.parent

SMALL = ["--config=configs/gpt2.py:tiny", "--config.model.num_layers=1",
         "--config.model.embed_dim=32", "--config.model.mlp_dim=64",
         "--config.model.num_heads=2", "--config.model.context=64", "--config.data.seq_len=32",
         "--config.train.batch_size=4", "--steps=2", "--warmup=1"]


def _run_bench(*args):
  # The bench should see the machine as a user would, not the 8 virtual devices of conftest.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, "-m", "experiments.bench", *SMALL, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_train_step_reports_positive_throughput():
  result = _run_bench("--what=train_step")
  assert result["what"] == "train_step"
  for key in ("tokens_per_sec", "mfu", "step_seconds_median", "model_gflops_per_sec",
              "peak_gflops_per_sec"):
    assert result[key] > 0, key


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_reports_positive_throughput(batch):
  result = _run_bench("--what=decode", "--prompt_len=5", "--new_tokens=7", f"--batch={batch}")
  assert result["what"] == "decode"
  assert result["batch"] == batch and result["new_tokens"] == 7
  assert result["new_tokens_per_sec"] > 0 and result["generate_seconds_median"] > 0


def test_data_reports_pipeline_throughput():
  result = _run_bench("--what=data", "--config.data.num_docs=200")
  assert result["what"] == "data" and result["dataset"] == "synthetic_text"
  assert result["tokens_per_sec"] > 0 and result["batch_seconds_median"] > 0
