"""What the kernel lets the sandbox use, probed once per process: namespaces and Landlock.

namespaces: `unshare --user --map-root-user --net --pid --fork --mount-proc --kill-child`
  wraps the child: a network namespace with only a loopback device that is down (no network
  at all), a PID namespace whose /proc shows only the sandboxed processes (the harness's pid,
  environment and memory are not there to read or signal; when the child dies the kernel kills
  everything left in it), and a user namespace, so that even a harness running as root hands
  the child no capabilities outside it. Needs util-linux's unshare and unprivileged user
  namespaces (or root).
landlock: the kernel's Landlock ABI (0: none). The child restricts itself (see child.py).
  ABI 4 adds TCP bind/connect rules, ABI 6 signal scoping.
seccomp: whether the child installs its seccomp filter (no fork, exec or non-thread clone in
  the kernel); needs a kernel with seccomp and an architecture whose numbers child.py knows.

Where none is available the child still runs in its own session with resource limits and
the audit hook of child.py, which refuses sockets, new processes, signals and writes outside
its directory from Python code; what the hook cannot stop is code that reaches the C level
without Python's audited functions (it refuses ctypes, but an extension module already built
on the machine could be loaded). `describe()` says which mode is in effect.
"""

import ctypes
import dataclasses
import functools
import platform
import shutil
import subprocess

from lineage.sandbox import child

UNSHARE_FLAGS = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc",
                 "--kill-child")


@dataclasses.dataclass(frozen=True)
class Isolation:
  """The kernel mechanisms in effect; `prefix` goes before the child's command line."""
  unshare: str = ""  # the unshare binary, "" when namespaces are not used
  landlock_abi: int = 0
  seccomp: bool = False

  @property
  def prefix(self):
    return [self.unshare, *UNSHARE_FLAGS] if self.unshare else []

  def describe(self):
    parts = ["network, PID and user namespaces (unshare)" if self.unshare else
             "no namespaces (unshare missing or refused): own session only"]
    parts.append(f"Landlock ABI {self.landlock_abi}" if self.landlock_abi else
                 "no Landlock: writes outside the directory are refused by the audit hook only")
    parts.append("seccomp (no new processes)" if self.seccomp else
                 "no seccomp: new processes are refused by the audit hook (and RLIMIT_NPROC)")
    return "; ".join(parts) + "; rlimits and the audit hook always"


def landlock_abi():
  """The kernel's Landlock ABI version, 0 when it has none (or this is not Linux)."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
  except (OSError, AttributeError):
    return 0
  return max(int(version), 0)


def seccomp_available():
  """Whether the kernel has seccomp filters and child.py knows this architecture's calls."""
  try:
    with open("/proc/self/status") as f:
      status = f.read()
  except OSError:
    return False
  return "Seccomp:" in status and platform.machine() in child.SECCOMP_ARCHES


def namespaces_work(unshare):
  """Whether `unshare` can create the namespaces here (user namespaces may be disabled)."""
  try:
    done = subprocess.run([unshare, *UNSHARE_FLAGS, "true"], capture_output=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return done.returncode == 0


@functools.cache
def probe():
  """The strongest isolation this machine allows, probed once."""
  unshare = shutil.which("unshare") or ""
  if unshare and not namespaces_work(unshare):
    unshare = ""
  return Isolation(unshare=unshare, landlock_abi=landlock_abi(), seccomp=seccomp_available())
