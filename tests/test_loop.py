"""The training loop end to end, through the gpt2 binary: resume, the NaN guard, mismatched
checkpoints, learning, and what a run writes."""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import gpt2 as gpt2_config
from lineage.train import lm

REPO = pathlib.Path(__file__).resolve().parent.parent
# A 2-layer model on a short corpus: a step takes milliseconds, start-up dominates.
SMALL = ["--config.model.num_layers=2", "--config.model.embed_dim=64",
         "--config.model.mlp_dim=256", "--config.model.context=32", "--config.data.seq_len=32",
         "--config.train.batch_size=8", "--config.data.num_docs=300"]


def _env():
  """The binary on one CPU device, as a user runs it (conftest forces 8 for this process)."""
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  return {**os.environ, "XLA_FLAGS": flags.strip()}


def _command(workdir, *overrides):
  return [sys.executable, "-m", "experiments.gpt2", "--config=configs/gpt2.py:tiny",
          f"--workdir={workdir}", *overrides]


def _run(workdir, *overrides):
  return subprocess.run(_command(workdir, *overrides), cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=600)


def _check_ok(result):
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _steps(workdir):
  return ocp.CheckpointManager(os.path.join(workdir, "checkpoints")).all_steps()


def _restore(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]


def _snapshot(directory):
  """{relative path: sha256} of every file under `directory`."""
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(pathlib.Path(directory).rglob("*")) if p.is_file()}


def _logged_steps(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines()
          if line.endswith("}")]


def test_killed_run_resumes_bit_for_bit(tmp_path):
  # The tiny preset's own model, slow enough (tens of ms a step) to be killed mid-run.
  overrides = ["--config.train.steps=20", "--config.train.checkpoint_every=5",
               "--config.train.log_every=1", "--config.data.num_docs=300"]
  reference, resumed = tmp_path / "reference", tmp_path / "resumed"
  _check_ok(_run(reference, *overrides))

  process = subprocess.Popen(_command(resumed, *overrides), cwd=REPO, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 300
  while max(_logged_steps(resumed), default=0) < 12:
    assert process.poll() is None, "the run ended before it logged step 12"
    assert time.monotonic() < deadline, "the run never logged step 12"
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL
  assert 20 not in _steps(resumed), "the kill came too late to interrupt the run"

  result = _run(resumed, *overrides)
  _check_ok(result)
  assert "resumed from" in result.stdout
  train_steps = [json.loads(line)["step"] for line in
                 (resumed / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
  assert train_steps == list(range(1, 21)), "each step is logged once after resume"
  expected, actual = _restore(reference, 20), _restore(resumed, 20)
  assert [path for path, _ in actual] == [path for path, _ in expected]
  for (path, a), (_, b) in zip(actual, expected):
    assert np.array_equal(a, b), jax.tree_util.keystr(path)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  overrides = [*SMALL, "--config.train.steps=10", "--config.train.checkpoint_every=5",
               "--config.train.log_every=1"]
  result = _run(tmp_path, *overrides, "--config.debug.nan_at_step=7")
  assert result.returncode != 0
  assert "at step 7" in result.stderr
  assert "last good checkpoint is step 5" in result.stderr
  assert _steps(tmp_path) == [5]
  assert max(_logged_steps(tmp_path)) == 6  # the NaN step is never logged as a result
  state = dict((jax.tree_util.keystr(p), v) for p, v in _restore(tmp_path, 5))
  assert int(state["['step']"]) == 5
  assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")

  result = _run(tmp_path, *overrides)
  _check_ok(result)
  assert "step 5" in result.stdout.split("resumed from", 1)[1].splitlines()[0]
  assert max(_steps(tmp_path)) == 10
  assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 10


def test_checkpoint_of_another_shape_is_refused_and_left_alone(tmp_path):
  _check_ok(_run(tmp_path, *SMALL, "--config.train.steps=2", "--config.train.checkpoint_every=1"))
  before = _snapshot(tmp_path)
  assert any(name.startswith("checkpoints/2/") for name in before)

  result = _run(tmp_path, *SMALL, "--config.train.steps=4", "--config.model.embed_dim=32",
                "--config.model.mlp_dim=128")
  assert result.returncode != 0
  assert "does not fit this model" in result.stderr
  assert "wte/embedding: checkpoint [257, 64] vs model [257, 32]" in result.stderr
  assert "h_0/mlp/c_fc/kernel: checkpoint [64, 256] vs model [32, 128]" in result.stderr
  assert _snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The tiny preset exactly as documented: 300 steps on the embedded corpus."""
  workdir = tmp_path_factory.mktemp("gpt2_tiny")
  _check_ok(_run(workdir))
  return workdir


def test_tiny_preset_learns_far_below_the_unigram_entropy(tiny_run):
  entropy = lm.train_unigram_entropy(lm.build(gpt2_config.get_config("tiny")))
  summary = json.loads((tiny_run / "summary.json").read_text())
  assert summary["steps"] == 300
  assert summary["eval_loss"] < 0.5 * entropy, (summary, entropy)


def test_run_writes_metrics_config_summary_and_events(tiny_run):
  records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if "loss" in r]
  assert [r["step"] for r in train] == list(range(25, 301, 25))
  for record in train:
    assert {"step", "loss", "lr", "tokens_per_sec", "mfu"} <= set(record)
    assert record["tokens_per_sec"] > 0 and 0 < record["mfu"] < 1
  assert train[-1]["lr"] == pytest.approx(3e-4, rel=1e-3)  # cosine floor: lr * min_lr_ratio
  assert [r["step"] for r in records if "eval_loss" in r] == [100, 200, 300]

  config = json.loads((tiny_run / "config.json").read_text())
  assert config["train"]["steps"] == 300 and config["model"]["embed_dim"] == 128
  summary = json.loads((tiny_run / "summary.json").read_text())
  assert summary["final_train_loss"] == train[-1]["loss"]
  events = list((tiny_run / "tb").glob("events.out.tfevents.*"))
  assert events and events[0].stat().st_size > 0


def test_rerun_of_a_finished_run_changes_nothing(tiny_run):
  # TensorBoard starts a new (empty) events file per process; everything else must stay.
  results = lambda: {k: v for k, v in _snapshot(tiny_run).items() if not k.startswith("tb/")}
  before = results()
  result = _run(tiny_run)
  _check_ok(result)
  assert "resumed from" in result.stdout and "step 300" in result.stdout
  assert results() == before
