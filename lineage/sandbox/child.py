"""The sandbox's child side: the first code a fresh `python -I -S` runs, before the program.

The harness runs this file's source with `-c` (standard library only: the child imports
nothing of lineage) and sends one JSON line on stdin: the nonce, the working directory and the
limits. The child then, in order: sets resource limits; sets no_new_privs and makes itself
undumpable; restricts itself with Landlock where the kernel has it (reads anywhere but /proc,
writes only in its working directory, no TCP, no signals to processes outside); installs an
audit hook that refuses sockets, new processes, signals, writes outside the working directory
and the introspection that could find the nonce; then runs the program. Only when the program
(its tests included) returns does it write the nonce to stdout, so a program that exits early,
however it does it, cannot pass. The nonce lives in a local of `main` and nowhere else.
"""

import json
import os
import resource
import sys

# Landlock (linux/landlock.h); its system calls have these numbers on every architecture.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_FS_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # access bits handled at each ABI
_PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 4, 38, 22, 2
# seccomp: each architecture's audit number and its process system calls (fork and vfork
# exist only on x86_64).
SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
                            "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {"execve": 221, "execveat": 281, "clone": 220, "clone3": 435}),
}

# Audit events refused outright: processes, signals, sockets, and the ways into the
# frames, objects and memory of the bootstrap (where the nonce is) or around this hook.
_REFUSED = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
            "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
            "sys._current_frames", "sys._current_exceptions",
            "sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers",
            "gc.get_referents", "os.chroot", "os.setuid", "os.setgid", "sys.remote_exec"}
_REFUSED_PREFIXES = ("socket.", "ctypes.", "mmap.", "winreg.", "os.pidfd")
# signal: a handler is handed the interrupted frame, whose callers lead to the bootstrap.
_REFUSED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "signal",
                    "_signal"}
# Frames are reachable through sys._getframe and these attributes. The standard library
# asks its caller's frame for a module name when typing makes a TypeVar, namedtuple a class
# and enum a functional Enum: those three functions (their code objects, which a program
# cannot forge) may; any other caller, and these attributes, are refused.
_FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"}
# Events that change the file system: every path among their arguments must be inside.
_MUTATING = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
             "os.truncate", "os.chmod", "os.chown", "os.utime", "os.chflags", "os.lchflags",
             "os.setxattr", "os.removexattr", "os.mkfifo", "os.mknod", "shutil.rmtree",
             "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move",
             "shutil.copytree", "shutil.chown", "shutil.make_archive", "shutil.unpack_archive",
             "tempfile.mkstemp", "tempfile.mkdtemp"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _set_limits(limits):
  for name, value in (("RLIMIT_CPU", limits["cpu_seconds"]), ("RLIMIT_AS", limits["memory_bytes"]),
                      ("RLIMIT_FSIZE", limits["file_bytes"]), ("RLIMIT_NPROC", limits["processes"]),
                      ("RLIMIT_NOFILE", limits["open_files"]), ("RLIMIT_CORE", 0)):
    hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, then SIGKILL
    resource.setrlimit(getattr(resource, name), (value, hard))


def _restrict(workdir, landlock, seccomp):
  """no_new_privs and undumpable, then Landlock and the seccomp filter where asked."""
  import ctypes
  libc = ctypes.CDLL(None, use_errno=True)
  libc.syscall.restype = ctypes.c_long
  libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
  if landlock:
    _landlock(ctypes, libc, workdir)
  if seccomp:
    _seccomp(ctypes, libc)


def _seccomp(ctypes, libc):
  """A seccomp filter refusing new processes and exec in the kernel, whatever Python does:
  fork, vfork and execve fail with EPERM, clone without CLONE_THREAD too (threads still
  start), clone3 with ENOSYS (its flags sit in memory a filter cannot read; the C library then
  falls back to clone). Even where RLIMIT_NPROC does not bind (a harness running as root),
  a program cannot start a second process."""
  import platform
  arch, numbers = SECCOMP_ARCHES[platform.machine()]
  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_JMP|JSET|K, BPF_RET|K
  ld_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
  allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
  refused = [n for n in (numbers.get("fork"), numbers.get("vfork"), numbers["execve"],
                         numbers["execveat"]) if n is not None]
  # Another ABI's calls (i386's int 0x80, x32's numbers from 2^30) are refused wholesale.
  program = [(ld_abs, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, eperm), (ld_abs, 0, 0, 0),
             (jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]
  for n in refused:
    program += [(jeq, 0, 1, n), (ret, 0, 0, eperm)]
  program += [(jeq, 0, 1, numbers["clone3"]), (ret, 0, 0, enosys),
              (jeq, 0, 3, numbers["clone"]), (ld_abs, 0, 0, 16),  # clone's flags (low half)
              (jset, 1, 0, 0x00010000), (ret, 0, 0, eperm),  # CLONE_THREAD: a thread
              (ret, 0, 0, allow)]

  class Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]

  class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]

  filters = (Filter * len(program))(*[Filter(*f) for f in program])
  if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                ctypes.byref(Program(len(program), filters)), 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")


def _landlock(ctypes, libc, workdir):
  """Restricts this process with Landlock; returns its ABI version, 0 where unavailable."""
  abi = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
  if abi < 1:
    return 0
  fs_all = (1 << _FS_BITS_BY_ABI.get(abi, 16)) - 1
  attr = (ctypes.c_uint64 * 3)(fs_all, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
  size = 24 if abi >= 6 else 16 if abi >= 4 else 8
  ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                         ctypes.c_uint32(0))
  if ruleset < 0:
    raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")

  class PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

  def allow(path, access):
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
      rule = PathBeneath(access, fd)
      if libc.syscall(_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) < 0:
        raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
      os.close(fd)

  # Read and execute anywhere but /proc (the process's memory, other processes' environments).
  for entry in os.listdir("/"):
    path = os.path.join("/", entry)
    if entry != "proc" and os.path.isdir(path) and not os.path.islink(path):
      allow(path, _FS_READ)
  allow(workdir, fs_all)
  if libc.syscall(_RESTRICT_SELF, ruleset, 0) < 0:
    raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
  os.close(ruleset)
  return abi


def _frame_users():
  """The code objects allowed to call sys._getframe (see _FRAME_ATTRIBUTES)."""
  import collections
  import enum
  import typing
  return {typing._caller.__code__, collections.namedtuple.__code__,  # noqa: SLF001
          enum.EnumType._create_.__code__}  # noqa: SLF001


def _audit_hook(workdir):
  inside = os.path.realpath(workdir) + os.sep
  realpath, fspath, startswith = os.path.realpath, os.fspath, str.startswith
  frame_users, getframe = _frame_users(), sys._getframe  # noqa: SLF001
  import _thread
  thread_id = _thread.get_ident
  checking = set()  # the threads whose hook is looking up its caller (a nested event)

  def is_inside(path):
    if isinstance(path, int):
      return True  # a descriptor already open
    try:
      path = fspath(path)
    except TypeError:
      return True  # not a path (a mode, a flag)
    if isinstance(path, bytes):
      path = path.decode("utf-8", "surrogateescape")
    return startswith(realpath(path) + os.sep, inside)

  def hook(event, args):
    if checking and thread_id() in checking:
      return
    if event == "sys._getframe":
      checking.add(thread_id())
      try:
        caller = getframe(1).f_code  # the code that called sys._getframe
      finally:
        checking.discard(thread_id())
      if caller not in frame_users:
        raise PermissionError("sandbox: sys._getframe is not allowed")
    if event == "object.__getattr__" and args[1] in _FRAME_ATTRIBUTES:
      raise PermissionError(f"sandbox: .{args[1]} is not allowed")
    if event in _REFUSED or event.startswith(_REFUSED_PREFIXES):
      raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import" and args[0].partition(".")[0] in _REFUSED_IMPORTS:
      raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
    if event == "open":
      path, mode, flags = args
      if path is None or isinstance(path, int):
        return
      path = realpath(fspath(path) if not isinstance(path, bytes) else path.decode(
          "utf-8", "surrogateescape"))
      if path == "/proc" or startswith(path, "/proc/"):
        raise PermissionError(f"sandbox: {path} may not be opened")
      writes = (flags or 0) & _WRITE_FLAGS or (mode and any(c in mode for c in "wax+"))
      if writes and not is_inside(path):
        raise PermissionError(f"sandbox: writing {path} outside the working directory")
    elif event in _MUTATING and not all(is_inside(a) for a in args if a is not None):
      raise PermissionError(f"sandbox: {event} outside the working directory")
  sys.addaudithook(hook)


def _fail(message):
  os.write(2, ("\n" + message[:1000] + "\n").encode("utf-8", "replace"))
  os._exit(1)


def main():
  settings = json.loads(sys.stdin.readline())
  nonce = settings["nonce"].encode()
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.close(devnull)
  workdir = settings["workdir"]
  os.chdir(workdir)
  os.environ.clear()
  os.environ.update(PATH="/usr/bin:/bin", HOME=workdir, TMPDIR=workdir, LANG="C.UTF-8")
  _set_limits(settings["limits"])
  _restrict(workdir, settings["landlock"], settings["seccomp"])
  for name in [m for m in sys.modules if m.partition(".")[0] in _REFUSED_IMPORTS]:
    del sys.modules[name]
  with open(settings["program"], encoding="utf-8") as f:
    source = f.read()
  _audit_hook(workdir)
  try:
    code = compile(source, "program.py", "exec")
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102
    sys.stdout.flush()
    sys.stderr.flush()
  except SystemExit as e:
    _fail(f"the program exited (SystemExit {e.code!r}) before its tests finished")
  except BaseException as e:  # noqa: BLE001 - whatever the program raised is its failure
    try:
      message = f"{type(e).__name__}: {e}".rstrip(": ")
    except BaseException:  # noqa: BLE001 - a hostile __str__
      message = type(e).__name__
    _fail(message)
  os.write(1, b"\n" + nonce + b"\n")
  os._exit(0)


if __name__ == "__main__":
  main()
