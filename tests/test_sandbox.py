"""The sandbox: HumanEval's canonical solutions pass and broken ones fail; adversarial programs
are contained, reported as failures, and leave the harness and the files around it intact.

Attacks point only at canaries this test makes in its own temporary directory, at a decoy
process it starts, and at a listener it opens: never at the repository.
"""

import dataclasses
import os
import pathlib
import select
import socket
import subprocess
import sys
import textwrap

import pytest

from lineage.eval import functional
from lineage.sandbox import Isolation, Limits, Outcome, Sandbox, isolation

# The probed isolation, and none at all (the audit hook and rlimits alone): the fallback.
MODES = {"probed": None, "hook_only": Isolation()}


@pytest.fixture(scope="module",
                params=["probed", pytest.param("hook_only", marks=pytest.mark.slow)])
def sandbox(request):
  return Sandbox(Limits(timeout=2.0), workers=2, isolation=MODES[request.param])


def run(sandbox, source):
  return sandbox.run(textwrap.dedent(source))


def assert_contained(outcome):
  assert not outcome.passed, outcome
  assert outcome.status in ("failed", "timed out", "crashed")


def assert_harness_still_runs(sandbox):
  outcome = run(sandbox, "print('still here')")
  assert outcome.passed and outcome.stdout.strip() == "still here"


@pytest.fixture
def problems(shared_data, tmp_path):
  return functional.humaneval_problems(manual_dir=str(shared_data / "humaneval"),
                                       data_dir=str(tmp_path / "tfds"))


def without_last_line(solution):
  """The solution without its last non-blank line (its return, most often)."""
  lines = solution.split("\n")
  last = max(i for i, line in enumerate(lines) if line.strip())
  return "\n".join(lines[:last] + lines[last + 1:])


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass(problems):
  outcomes = Sandbox(workers=2).run_many(
      [functional.test_program(p, p["canonical_solution"]) for p in problems])
  failed = [(p["task_id"], o.result) for p, o in zip(problems, outcomes) if not o.passed]
  assert len(problems) == 164 and not failed


@pytest.mark.slow
def test_humaneval_solutions_with_a_line_deleted_fail(problems):
  outcomes = Sandbox(workers=2).run_many(
      [functional.test_program(p, without_last_line(p["canonical_solution"])) for p in problems])
  passed = [p["task_id"] for p, o in zip(problems, outcomes) if o.passed]
  assert not passed


@pytest.mark.slow
def test_outcomes_passed_failed_crashed_and_stderr_truncated():
  sandbox = Sandbox(Limits(timeout=5.0, output_bytes=200))
  ok = run(sandbox, "print('hello')\nassert 1 + 1 == 2")
  assert ok.passed and ok.result == "passed" and ok.stdout == "hello\n"
  failed = run(sandbox, "import sys\nprint('x' * 5000, file=sys.stderr)\nassert 1 == 2, 'no'")
  assert failed.status == "failed" and failed.result == "failed: AssertionError: no"
  assert len(failed.stderr) < 300 and "characters cut" in failed.stderr
  # C recursion (repr of 300,000 nested lists) overflows the stack: a real segfault.
  crashed = run(sandbox, "import sys\nsys.setrecursionlimit(10 ** 8)\nx = []\n"
                         "for _ in range(300_000):\n  x = [x]\nrepr(x)")
  assert crashed.status == "crashed" and crashed.result == "crashed: killed by SIGSEGV"
  assert Outcome("crashed", "killed by SIGXCPU").result == "crashed: killed by SIGXCPU"


def test_file_size_limit(sandbox):
  small = Sandbox(dataclasses.replace(sandbox.limits, file_bytes=1000),
                  isolation=sandbox.isolation)
  outcome = run(small, "with open('big.bin', 'wb') as f:\n  f.write(b'x' * 5000)")
  assert_contained(outcome)
  assert outcome.status in ("failed", "crashed") and "File too large" in outcome.result + (
      "" if outcome.status == "failed" else "File too large (SIGXFSZ)"), outcome


@pytest.mark.slow
def test_infinite_loop_times_out(sandbox):
  outcome = run(sandbox, "while True:\n  pass")
  assert outcome.status == "timed out" and outcome.result == "timed out"
  assert outcome.seconds < sandbox.limits.timeout + 2
  assert_harness_still_runs(sandbox)


@pytest.mark.slow
def test_fork_bomb_is_contained(sandbox):
  outcome = run(sandbox, """
      import os, subprocess
      for _ in range(1000):
        try:
          os.fork()
        except OSError:
          pass
        try:
          subprocess.Popen(["/bin/sleep", "60"])
        except Exception:
          pass
      assert False, "the bomb went off"
      """)
  assert_contained(outcome)
  stray = subprocess.run(["pgrep", "-f", "^/bin/sleep 60$"], capture_output=True, text=True)
  assert stray.stdout == ""
  assert_harness_still_runs(sandbox)


@pytest.mark.slow
def test_memory_bomb_is_contained(sandbox):
  outcome = run(sandbox, """
      hog = []
      while True:
        hog.append(bytearray(64 << 20))
      """)
  assert_contained(outcome)
  assert_harness_still_runs(sandbox)


def test_writing_and_deleting_files_outside_fails_and_leaves_them_intact(sandbox, tmp_path):
  outside = tmp_path / "outside"
  outside.mkdir(mode=0o777)
  canary = outside / "canary.txt"
  canary.write_text("canary")
  harness = outside / "harness_module.py"  # stands in for the harness's own files
  harness.write_text("HARNESS = True\n")
  for path in (outside, canary, harness):
    os.chmod(path, 0o777)  # only the sandbox stands between the program and these files
  attacks = [
      f"open({str(canary)!r}, 'w').write('pwned')",
      f"open({str(harness)!r}, 'a').write('import os')",
      f"import os; os.remove({str(canary)!r})",
      f"import os; os.rename({str(harness)!r}, {str(outside / 'moved.py')!r})",
      f"import shutil; shutil.rmtree({str(outside)!r})",
      f"open({str(outside / 'new.txt')!r}, 'x').write('new')",
      f"import os; os.truncate({str(canary)!r}, 0)",
      "open('../program.py', 'w').write('pass')",  # the harness's copy of this very program
      "open('../stdout', 'w').write('forged')",
  ]
  for attack in attacks:
    assert_contained(run(sandbox, attack))
  assert canary.read_text() == "canary" and harness.read_text() == "HARNESS = True\n"
  assert sorted(p.name for p in outside.iterdir()) == ["canary.txt", "harness_module.py"]
  inside = run(sandbox, "open('scratch.txt', 'w').write('ok')\n"
                        "assert open('scratch.txt').read() == 'ok'")
  assert inside.passed  # its own directory is writable
  assert_harness_still_runs(sandbox)


def test_socket_to_a_local_listener_fails(sandbox):
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    outcome = run(sandbox, f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"exfiltrated")
        """)
    assert_contained(outcome)
    ready, _, _ = select.select([listener], [], [], 0.3)
    assert ready == []  # no connection arrived
  assert_harness_still_runs(sandbox)


def test_parents_environment_stays_out_of_reach(sandbox, monkeypatch):
  secret = "s3cr3t-" + os.urandom(8).hex()
  monkeypatch.setenv("LINEAGE_SANDBOX_SECRET", secret)
  outcome = run(sandbox, f"""
      import os
      found = os.environ.get("LINEAGE_SANDBOX_SECRET", "")
      print(dict(os.environ))
      for pid in (os.getppid(), {os.getpid()}):
        try:
          found += open(f"/proc/{{pid}}/environ").read()
        except OSError as e:
          print(e)
      assert "s3cr3t-" in found, "the environment is out of reach"
      """)
  assert_contained(outcome)
  assert secret not in outcome.stdout + outcome.stderr
  assert "LINEAGE_SANDBOX_SECRET" not in outcome.stdout


def test_signalling_or_ptracing_the_parent_fails(sandbox):
  decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    outcome = run(sandbox, f"""
        import os
        hits = []
        for pid, sig in ((os.getppid(), 0), ({os.getpid()}, 0), ({decoy.pid}, 9)):
          try:
            os.kill(pid, sig)
            hits.append(pid)
          except Exception as e:
            print(type(e).__name__, e)
        try:
          import ctypes
          libc = ctypes.CDLL(None)
          if libc.ptrace(16, {os.getpid()}, 0, 0) == 0:  # PTRACE_ATTACH
            hits.append("ptrace")
        except Exception as e:
          print(type(e).__name__, e)
        assert hits, "no signal or ptrace reached outside"
        """)
    assert_contained(outcome)
    assert decoy.poll() is None  # the decoy is alive
  finally:
    decoy.kill()
    decoy.wait()
  assert_harness_still_runs(sandbox)


@pytest.mark.parametrize("exit_call", ["import os; os._exit(0)", "import sys; sys.exit(0)",
                                       "raise SystemExit"])
def test_exiting_before_the_tests_run_does_not_pass(sandbox, exit_call):
  problem = {"prompt": "def add(a, b):\n", "entry_point": "add",
             "test": "def check(candidate):\n  assert candidate(1, 2) == 3\n"}
  outcome = sandbox.run(functional.test_program(problem, f"  {exit_call}\n"))
  assert outcome.status == "failed" and "exited" in outcome.detail
  right = sandbox.run(functional.test_program(problem, "  return a + b\n"))
  assert right.passed


def test_frames_that_could_reveal_the_nonce_are_refused(sandbox):
  for attack in ("import sys; print(sys._getframe(1).f_locals)",
                 "import inspect; print(inspect.stack())",
                 "try:\n  1 / 0\nexcept Exception as e:\n  print(e.__traceback__.tb_frame)",
                 "import gc; print(len(gc.get_objects()))",
                 "import signal"):
    assert_contained(run(sandbox, attack))
  typing_ok = run(sandbox, """
      import collections, enum
      from typing import List, TypeVar
      T = TypeVar("T")
      Point = collections.namedtuple("Point", "x y")
      Color = enum.Enum("Color", "RED GREEN")
      assert Point(1, 2).y == 2 and Color.RED.value == 1
      """)
  assert typing_ok.passed, typing_ok


def test_environment_is_scrubbed_and_directory_fresh(sandbox):
  outcome = run(sandbox, """
      import os
      assert set(os.environ) <= {"PATH", "HOME", "TMPDIR", "LANG"}, os.environ
      assert os.listdir(".") == []
      open("left_behind.txt", "w").write("x")
      """)
  assert outcome.passed, outcome
  again = run(sandbox, "import os\nassert os.listdir('.') == []")
  assert again.passed, again


def test_run_many_keeps_order_and_bad_input_is_refused():
  sandbox = Sandbox(Limits(timeout=2.0), workers=2)
  outcomes = sandbox.run_many([f"assert {i} % 2 == 0" for i in range(6)])
  assert [o.passed for o in outcomes] == [True, False] * 3
  with pytest.raises(TypeError, match="Python source text"):
    sandbox.run(b"print(1)")
  with pytest.raises(ValueError, match="timeout"):
    Limits(timeout=0)


def test_probe_reports_the_mode_in_effect():
  probed = isolation.probe()
  assert probed is isolation.probe()  # probed once
  text = probed.describe()
  assert ("namespaces" in text) == bool(probed.unshare)
  assert ("Landlock ABI" in text) == (probed.landlock_abi > 0)
  assert ("seccomp (no new processes)" in text) == probed.seccomp
  assert Isolation().prefix == [] and "no namespaces" in Isolation().describe()
  if probed.unshare:
    assert probed.prefix[0] == probed.unshare and "--net" in probed.prefix


def test_seccomp_filter_refuses_processes_in_the_kernel_without_the_hook(tmp_path):
  """The filter alone (no audit hook): fork, exec and subprocess fail, threads still run."""
  if not isolation.probe().seccomp:
    pytest.skip("the kernel refused the seccomp filter or the CPU is neither x86_64 nor aarch64 "
                f"(probe: {isolation.probe().describe()}); the sandbox then relies on the "
                "audit hook, which the other adversarial tests check")
  script = textwrap.dedent(f"""
      import os, subprocess, threading
      from lineage.sandbox import child
      child._restrict({str(tmp_path)!r}, landlock=False, seccomp=True)
      refused = []
      for attempt in (os.fork, lambda: os.execv("/bin/true", ["true"]),
                      lambda: subprocess.run(["/bin/true"])):
        try:
          attempt()
          print("escaped")
        except OSError as e:
          refused.append(e.errno)
      done = []
      thread = threading.Thread(target=lambda: done.append(1))
      thread.start()
      thread.join()
      print(refused, done)
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=str(pathlib.Path(__file__).parent.parent))
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "[1, 1, 1] [1]"  # EPERM three times; the thread ran
