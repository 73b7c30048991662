"""The GPU acceptance run behind experiments/gpu_check.sh: four checks, each in its own process.

The GPU machine is lent for minutes, with its own Python and jax (0.11, not our pinned
0.10.2) and without ml-collections, TFDS or grain, so nothing here imports the configs or
the data pipeline. Each check runs as a child process with a time limit: a kernel that
hangs, or a CUDA fault that poisons its process, costs that check only, and the next one
still runs. A child writes its result to a JSON file after every measurement, so a check
stopped at its limit still reports what it measured. Each check imports what it needs
itself, so a module that fails to import under a newer jax fails that check alone. Off a
GPU every check imports what it needs and reports "no GPU"; `smoke` runs them at toy sizes
on any backend instead, to rehearse the code paths on CPU.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import traceback
import types

import jax

CHECKS = ("kernel", "attention", "train_step", "decode")
# Shares of the time limit (seconds of a 450 s run), from a budget of what each compiles;
# time a check leaves unused passes to the next.
BUDGETS = {"kernel": 75, "attention": 90, "train_step": 165, "decode": 120}
# A check's result that means its code or the hardware failed, rather than a measurement.
FAILED = ("fail", "error", "timeout")
REPO = pathlib.Path(__file__).resolve().parents[2]
KERNEL_TESTS = REPO / "tests" / "test_flash_attention_gpu.py"
ATTENTION_GOAL = 0.9  # the Mosaic GPU kernel's forward+backward TFLOP/s over cuDNN's
# jax takes 75% of a GPU's memory when it starts; decoding leaves room for torch beside it.
CHILD_ENV = {"decode": {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}}


def on_gpu():
  return jax.default_backend() == "gpu"


def device_info():
  """The device and software a result was measured on."""
  device = jax.devices()[0]
  info = {"backend": jax.default_backend(), "device": device.device_kind,
          "jax": jax.__version__}
  if hasattr(device, "compute_capability"):
    info["compute_capability"] = device.compute_capability
  return info


class CheckRun:
  """One check in its child process: toy sizes or not, its deadline, and its result so far,
  rewritten whole (and atomically) at every update for the parent to read."""

  def __init__(self, check, path, smoke, time_limit):
    self.path, self.smoke = pathlib.Path(path), smoke
    self.deadline = time.monotonic() + time_limit
    self.result = {"check": check}

  def seconds_left(self):
    return self.deadline - time.monotonic()

  def update(self, **values):
    self.result.update(values)
    partial = self.path.with_suffix(".partial")
    partial.write_text(json.dumps(self.result))
    partial.replace(self.path)


class _Outcomes:
  """A pytest plugin that keeps each test's outcome, failure message and recorded errors,
  and writes them to the check's result as they come (a run stopped at its limit keeps them)."""

  def __init__(self, run):
    self.run, self.tests = run, {}

  def counts(self):
    return {k: sum(t["outcome"] == k for t in self.tests.values())
            for k in ("passed", "failed", "skipped")}

  def pytest_runtest_logreport(self, report):
    if report.when != "call" and report.passed:
      return
    name = report.nodeid.split("::", 1)[-1]
    entry = {"outcome": report.outcome}
    if report.failed:
      entry["message"] = report.longreprtext.strip().splitlines()[-1][:300]
    elif report.skipped and isinstance(report.longrepr, tuple):
      entry["reason"] = report.longrepr[2]
    errors = dict(report.user_properties).get("rel_err")
    if errors:
      entry["rel_err"] = errors
    if self.tests.get(name, {}).get("outcome") != "failed":  # a teardown failure stays one
      self.tests[name] = entry
    self.run.update(**self.counts(), tests=self.tests)


def check_kernel(run):
  """tests/test_flash_attention_gpu.py with the kernels compiled, interpreted cases included
  (they run compiled on a GPU). Off a GPU, `smoke` runs only its input checks, which
  rehearse the plumbing in seconds (make test runs the rest of the file)."""
  import pytest
  from kernels import flash_attention_mgpu  # noqa: F401  (the import itself is checked)
  if not (on_gpu() or run.smoke):
    return run.update(status="no GPU")
  outcomes = _Outcomes(run)
  run.update(status="running")
  args = [str(KERNEL_TESTS), "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO)]
  exit_code = pytest.main(args + ([] if on_gpu() else ["-k", "rejects_unsupported"]),
                          plugins=[outcomes])
  counts = outcomes.counts()
  ok = exit_code == 0 and counts["passed"] > 0 and not counts["failed"]
  run.update(status="pass" if ok else "fail", pytest_exit_code=int(exit_code), **counts,
             tests=outcomes.tests)


def check_attention(run):
  """Forward+backward TFLOP/s of xla, pallas (and two more tilings of it) and cudnn, causal,
  bf16, with each one's gradient error against fp32 xla; the goal is pallas >= 0.9x cudnn."""
  from lineage.bench import attention as attention_bench
  from lineage.models import gpt
  if not (on_gpu() or run.smoke):
    return run.update(status="no GPU")
  if on_gpu():
    model = gpt.GPTConfig(num_heads=12, dtype="bfloat16")  # GPT-2 124M's heads
    seq_lens, head_dims, batch, steps, warmup = (4096, 8192), (64, 128), 2, 10, 2
    tiles = ["64x128", "128x64"]
  else:
    model = gpt.GPTConfig(num_heads=2, embed_dim=128, dtype="float32")
    seq_lens, head_dims, batch, steps, warmup, tiles = (128,), (64,), 1, 1, 1, []
  cfg = types.SimpleNamespace(model=model)
  rows, comparisons = [], []
  run.update(status="running", batch=batch, heads=model.num_heads, dtype=model.dtype,
             causal=True, goal=ATTENTION_GOAL, rows=rows, versus_cudnn=comparisons)
  failures = []
  for head_dim in head_dims:
    for seq_len in seq_lens:
      new = None
      # A tiling that does not compile costs the shape only its other tilings.
      for tilings in ([tiles, []] if tiles else [tiles]):
        try:
          new = attention_bench.bench_attention(cfg, [seq_len], batch, steps, warmup,
                                                head_dims=[head_dim],
                                                pallas_tiles=tilings)["results"]
          break
        except Exception as error:  # e.g. a kernel that does not compile: the next one runs
          failures.append({"seq_len": seq_len, "head_dim": head_dim, "pallas_tiles": tilings,
                           "error": f"{type(error).__name__}: {error}"[:1000]})
          run.update(failures=failures)
      if new is None:
        continue
      rows.extend(new)
      speed = {r["implementation"]: r["tflops_per_sec"] for r in new}
      cudnn = next((name for name in speed if name.endswith("cudnn")), None)
      if cudnn:
        pallas = {k: v for k, v in speed.items() if k.startswith("pallas")}
        best = max(pallas, key=pallas.get) if pallas else None
        comparisons.append({"seq_len": seq_len, "head_dim": head_dim,
                            "pallas": speed.get("pallas", 0.0) / speed[cudnn],
                            "best_tiling": best,
                            "best": pallas[best] / speed[cudnn] if best else 0.0})
      run.update(rows=rows, versus_cudnn=comparisons)
  wrong = [r for r in rows if r["implementation"].startswith("pallas")
           and r["grad_rel_error"] > 2e-2]  # the kernel tests' bound on bf16 gradients
  if failures or wrong:
    status = "fail"
  elif not on_gpu():
    status = "ran"
  elif len(comparisons) < len(seq_lens) * len(head_dims):
    status = "fail"  # no cuDNN row to compare with
  else:
    status = "pass" if all(c["pallas"] >= ATTENTION_GOAL for c in comparisons) else "below goal"
  run.update(status=status)


def run_one(check, smoke, result_path, time_limit):
  """A child process's work: one check within `time_limit` seconds, its result (errors,
  an ImportError among them, included) in `result_path`."""
  if check not in CHECKS:
    raise ValueError(f"unknown check {check!r}; choose one of {', '.join(CHECKS)}")
  run = CheckRun(check, result_path, smoke, time_limit)
  start = time.perf_counter()
  try:
    run.update(**device_info())
    if check in ("kernel", "attention"):
      checks = sys.modules[__name__]
    else:  # the model checks import lineage.decode, .interop and .train: the others need not
      from lineage.bench import gpu_gpt2 as checks
    getattr(checks, f"check_{check}")(run)
  except Exception as error:  # reported, so the next check still runs
    run.update(status="error", error=f"{type(error).__name__}: {error}"[:2000],
               traceback=traceback.format_exc()[-4000:])
  run.update(seconds=round(time.perf_counter() - start, 1))
  return run.result


def _limits(checks, time_limit):
  """Each check's share of `time_limit`, in proportion to BUDGETS."""
  total = sum(BUDGETS[c] for c in checks)
  return {c: time_limit * BUDGETS[c] / total for c in checks}


def _tail(path, chars=3000):
  try:
    return pathlib.Path(path).read_text(errors="replace")[-chars:]
  except OSError:
    return ""


def run_checks(checks, child_command, workdir, time_limit, emit=print,
               progress=lambda line: print(line, file=sys.stderr, flush=True)):
  """Runs each check in a child process `child_command(check, result_path, limit)` within its
  limit, emits one JSON line per check as it ends and a summary line; returns the results.

  A check may use the time its predecessors left; no check starts the run past its limit.
  When this process is told to stop (SIGTERM as SystemExit, Ctrl-C), the running check is
  killed and reported as a timeout, the rest as not started, and the summary still comes.
  """
  unknown = sorted(set(checks) - set(CHECKS))
  if unknown:
    raise ValueError(f"unknown checks {unknown}; choose among {', '.join(CHECKS)}")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  shares = _limits(checks, time_limit)
  start = time.monotonic()
  results, stopped = [], False
  for i, check in enumerate(checks):
    later = sum(shares[c] for c in checks[i + 1:])
    limit = time_limit - (time.monotonic() - start) - later
    result_path, log_path = workdir / f"{check}.json", workdir / f"{check}.log"
    result_path.unlink(missing_ok=True)
    progress(f"gpu_check: {check} (at most {limit:.0f} s; log {log_path})")
    result, interrupted = {"check": check}, False
    if stopped or limit < 5:
      result.update(status="timeout", error="not started: " + (
          "the run was stopped" if stopped else "no time left in the run's limit"))
    else:
      result, interrupted = _run_child(check, child_command(check, str(result_path), limit),
                                       result_path, log_path, limit)
    stopped = stopped or interrupted
    results.append(result)
    emit(json.dumps(result))
  statuses = {r["check"]: r["status"] for r in results}
  device = next((r["device"] for r in results if "device" in r), None)
  emit(json.dumps({"summary": statuses, "device": device,
                   "failed": [c for c, s in statuses.items() if s in FAILED],
                   "seconds": round(time.monotonic() - start, 1), "time_limit": time_limit,
                   "workdir": str(workdir)}))
  return results


def _run_child(check, command, result_path, log_path, limit):
  """(the check's result, whether this process was told to stop while it ran)."""
  start = time.monotonic()
  stopped, interrupted = None, False
  with open(log_path, "w") as log:
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                             env={**os.environ, **CHILD_ENV.get(check, {})},
                             start_new_session=True)
    try:
      child.wait(timeout=limit)
    except subprocess.TimeoutExpired:
      stopped = f"stopped at its limit of {limit:.0f} s"
    except (KeyboardInterrupt, SystemExit):
      stopped, interrupted = "stopped with the whole run", True
    finally:  # no check outlives the run
      if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)  # the child and anything it started
        child.wait()
  result = {"check": check}
  wall_seconds = round(time.monotonic() - start, 1)
  if result_path.exists():
    result = json.loads(result_path.read_text())
  if stopped:
    result.update(status="timeout", error=f"{stopped}; what it had measured is kept here")
  elif child.returncode or result.get("status") in (None, "running"):
    result.update(status="error", error=result.get("error") or
                  f"the child exited with code {child.returncode}: {_tail(log_path)}")
  result.update(wall_seconds=wall_seconds, log=str(log_path))
  return result, interrupted
