"""experiments/gpu_check.py, the GPU acceptance run, rehearsed on CPU.

The GPU machine has its own Python and jax and lacks ml-collections, tensorflow-datasets,
grain and array-record, and a GPU session is too rare to spend on an ImportError. So the
entry point runs here twice: with those modules blocked (unless BUILD.md names a wheel
brought along for one), and in a venv that holds only packages the GPU machine has (at our
pinned versions: jax 0.11 is not on this machine's package index), once reporting "no GPU"
for every check and once running every check at toy sizes.
"""

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import pytest

from lineage.bench import gpu_check, gpu_gpt2
from lineage.models import gpt

REPO = pathlib.Path(__file__).resolve().parent.parent
ABSENT_ON_GPU_MACHINE = ("ml-collections", "tensorflow-datasets", "grain", "array-record")
# What the GPU machine has that the entry point may touch (it also has chex, sacrebleu,
# scikit-learn, tiktoken and matplotlib, which nothing here imports); pinned as in
# requirements*.txt.
GPU_MACHINE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "absl-py", "numpy",
                        "safetensors", "tokenizers", "pytest", "torch", "transformers")
REHEARSAL_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"),
                               "lineage")


def brought_wheels():
  """The distributions BUILD.md's GPU section says the run brings along as wheels."""
  match = re.search(r"^Wheels brought along: (.*)$", (REPO / "BUILD.md").read_text(), re.M)
  assert match, "BUILD.md's GPU section must say which wheels the GPU check brings along"
  return set(re.findall(r"`([\w.-]+)==[\w.]+`", match.group(1)))


def blocked_modules():
  return sorted(name.replace("-", "_") for name in set(ABSENT_ON_GPU_MACHINE) - brought_wheels())


def run_entry_point(python, workdir, *flags, env=None, timeout=600):
  """(exit code, JSON lines of stdout, stderr) of `python -m experiments.gpu_check`."""
  env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "XLA_FLAGS"}
  done = subprocess.run([str(python), "-m", "experiments.gpu_check", f"--workdir={workdir}",
                         *flags], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)
  return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def check_lines(lines):
  """{check: result} of the per-check lines, after checking their order and the summary."""
  *checks, summary = lines
  assert [c["check"] for c in checks] == list(gpu_check.CHECKS)
  assert summary["summary"] == {c["check"]: c["status"] for c in checks}
  return {c["check"]: c for c in checks}


def describe(results):
  return {name: r.get("error", r["status"]) for name, r in results.items()}


@pytest.mark.slow
def test_entry_point_imports_nothing_the_gpu_machine_lacks(tmp_path):
  """Each check imports all it needs before finding no GPU, with ml_collections, TFDS,
  grain and array_record unimportable in the driver and in every child."""
  blocked = blocked_modules()
  site = tmp_path / "site"
  site.mkdir()
  (site / "sitecustomize.py").write_text(textwrap.dedent(f"""\
      import sys

      class NotOnTheGpuMachine:
        def find_spec(self, name, path=None, target=None):
          if name.partition(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not on the GPU machine and BUILD.md names no "
                              "wheel for it (tests/test_gpu_check.py)")

      sys.meta_path.insert(0, NotOnTheGpuMachine())
      """))
  code, lines, stderr = run_entry_point(sys.executable, tmp_path / "run",
                                        env={"PYTHONPATH": str(site)})
  results = check_lines(lines)
  assert {r["status"] for r in results.values()} == {"no GPU"}, describe(results)
  assert code == 0, stderr


@pytest.mark.slow
def test_a_failing_or_hanging_check_leaves_the_next_its_turn(tmp_path):
  """A check stopped at its limit keeps what it wrote and is killed; one that crashes is an
  error with its log; the next still runs, and the summary names both."""
  scripts = {
      "kernel": "import json, os, sys, time; open(sys.argv[1], 'w').write(json.dumps("
                "{'check': 'kernel', 'status': 'running', 'pid': os.getpid()})); time.sleep(600)",
      "attention": "raise SystemExit('the kernel did not compile')",
      "train_step": "import json, sys; open(sys.argv[1], 'w').write(json.dumps("
                    "{'check': 'train_step', 'status': 'pass', 'mfu': 0.5}))",
  }
  command = lambda check, path, limit: [sys.executable, "-c", scripts[check], path]
  lines = []
  results = gpu_check.run_checks(["kernel", "attention", "train_step"], command, tmp_path,
                                 time_limit=33, emit=lines.append, progress=lambda line: None)
  kernel, attention, train_step = results
  assert kernel["status"] == "timeout" and kernel["pid"]
  with pytest.raises(ProcessLookupError):
    os.kill(kernel["pid"], 0)
  assert attention["status"] == "error" and "did not compile" in attention["error"]
  assert train_step["status"] == "pass" and train_step["mfu"] == 0.5
  summary = json.loads(lines[-1])
  assert summary["failed"] == ["kernel", "attention"]
  assert [json.loads(line) for line in lines[:-1]] == results


def test_a_stopped_run_still_reports_every_check(tmp_path):
  """SIGTERM (gpu_check.sh's outer `timeout`) mid-check: that check is killed and reported,
  the rest are reported as not started, and the summary line comes."""
  command = lambda check, path, limit: [sys.executable, "-c", "import time; time.sleep(600)"]
  signal.signal(signal.SIGALRM, lambda signum, frame: sys.exit(128 + signum))
  signal.alarm(2)
  lines = []
  try:
    results = gpu_check.run_checks(["kernel", "attention"], command, tmp_path, time_limit=300,
                                   emit=lines.append, progress=lambda line: None)
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
  kernel, attention = results
  assert kernel["status"] == "timeout" and "stopped with the whole run" in kernel["error"]
  assert attention["status"] == "timeout" and "not started" in attention["error"]
  assert json.loads(lines[-1])["failed"] == ["kernel", "attention"]


def test_unknown_checks_are_refused(tmp_path):
  with pytest.raises(ValueError, match="choose among kernel, attention"):
    gpu_check.run_checks(["kernel", "mfu"], None, tmp_path, 60)


def test_the_train_batch_fills_the_device_from_the_probe(monkeypatch):
  memory = types.SimpleNamespace(argument_size_in_bytes=3e9, output_size_in_bytes=3e9,
                                 alias_size_in_bytes=3e9, temp_size_in_bytes=8e9)
  compiled = types.SimpleNamespace(memory_analysis=lambda: memory)
  stats = {"bytes_limit": 100e9}
  monkeypatch.setattr(jax, "devices", lambda: [types.SimpleNamespace(memory_stats=lambda: stats)])
  # 85 GB of headroom less 3 GB of state, at 1 GB per example: 82, down to a multiple of 8.
  assert gpu_gpt2._fill_batch(compiled, 8, max_batch=128) == 80
  assert gpu_gpt2._fill_batch(compiled, 8, max_batch=64) == 64
  stats["bytes_limit"] = 5e9
  assert gpu_gpt2._fill_batch(compiled, 8, max_batch=64) == 8  # never below the probe
  stats.clear()  # a CPU reports no limit
  assert gpu_gpt2._fill_batch(compiled, 2, max_batch=64) == 2


def test_the_pallas_train_step_lowers_for_cuda(monkeypatch):
  """The train step the GPU check times, with the Mosaic GPU attention in every layer (two
  layers here), lowers for CUDA: a one-token init would not reach the kernel's tiles."""
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  model_cfg = dataclasses.replace(gpt.PRESETS["gpt2_117m"], num_layers=2, dtype="bfloat16",
                                  attention_impl="pallas")
  init_state, step, _ = gpu_gpt2.build_train_step(model_cfg)
  tokens = jax.ShapeDtypeStruct((2, 1024), jnp.int32)
  exported = jax.export.export(step, platforms=["cuda"])(
      jax.eval_shape(init_state, jax.random.PRNGKey(0)), {"inputs": tokens, "targets": tokens})
  assert exported.mlir_module().count("@mosaic_gpu") == 2 * 3, "forward, dq, dk/dv per layer"


def rehearsal_requirements():
  pins = {}
  for name in ("requirements.txt", "requirements-test.txt"):
    for line in (REPO / name).read_text().splitlines():
      package, _, version = line.partition("#")[0].strip().partition("==")
      if version:
        pins[package.lower()] = version
  return [f"{p}=={pins[p]}" for p in GPU_MACHINE_PACKAGES] + sorted(
      f"{p}=={v}" for p, v in pins.items() if p in brought_wheels())


@pytest.fixture(scope="session")
def rehearsal_python():
  """A venv of the GPU machine's packages (and BUILD.md's wheels), built once per machine
  and requirement set under ~/.cache/lineage, and under a lock, since test workers share it."""
  requirements = rehearsal_requirements()
  key = hashlib.sha256("\n".join([sys.version, *requirements]).encode()).hexdigest()[:12]
  venv = REHEARSAL_CACHE / f"gpu-rehearsal-{key}"
  venv.parent.mkdir(parents=True, exist_ok=True)
  with open(venv.parent / f"{venv.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (venv / "complete").exists():
      shutil.rmtree(venv, ignore_errors=True)
      for command in ([sys.executable, "-m", "venv", str(venv)],
                      [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                       "--disable-pip-version-check", *requirements]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
      (venv / "complete").write_text("\n".join(requirements))
  python = venv / "bin" / "python"
  lacking = subprocess.run([str(python), "-c", "import importlib.util, sys; print([m for m in "
                            "sys.argv[1:] if importlib.util.find_spec(m)])", *blocked_modules()],
                           capture_output=True, text=True, check=True).stdout.strip()
  assert lacking == "[]", f"the rehearsal venv has {lacking}, which the GPU machine lacks"
  return python


@pytest.mark.slow
def test_rehearsal_reports_no_gpu_for_each_check(rehearsal_python, tmp_path):
  code, lines, stderr = run_entry_point(rehearsal_python, tmp_path)
  results = check_lines(lines)
  assert {r["status"] for r in results.values()} == {"no GPU"}, describe(results)
  assert code == 0, stderr


@pytest.mark.slow
def test_rehearsal_runs_every_check_at_toy_sizes(rehearsal_python, tmp_path):
  """--smoke on CPU in the same venv: the kernel's input checks pass through the pytest
  plugin, and the attention, train-step and decode checks measure, transformers included."""
  code, lines, stderr = run_entry_point(rehearsal_python, tmp_path, "--smoke")
  results = check_lines(lines)
  assert code == 0, (describe(results), stderr)
  kernel, attention, train_step, decode = (results[c] for c in gpu_check.CHECKS)
  assert kernel["status"] == "pass" and kernel["passed"] == 4 and not kernel["failed"]
  assert all(t["outcome"] == "passed" for t in kernel["tests"].values())
  assert attention["status"] == "ran"
  assert {"xla", "pallas"} <= {r["implementation"] for r in attention["rows"]}
  assert train_step["status"] == "ran"
  run = train_step["runs"]["xla"]
  assert run["tokens_per_sec"] > 0 and 0 < run["mfu"] < 1
  assert abs(run["loss_first"] - math.log(256)) < 0.5  # a fresh model: near uniform
  assert decode["status"] == "ran" and decode["max_abs_logit_difference"] < 1e-4
  assert [r["batch"] for r in decode["rows"]] == [1, 2]
  assert all(r["tokens_per_sec"] > 0 and r["hf_tokens_per_sec"] > 0 for r in decode["rows"])
