"""Two processes of the gpt2 binary on one machine, 4 CPU devices each, as one 8-device run:
the same losses as a single process, resume, per-process data state, and a lost process."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL = ["--config.model.num_layers=2", "--config.model.embed_dim=64",
         "--config.model.mlp_dim=256", "--config.model.context=32", "--config.data.seq_len=32",
         "--config.train.batch_size=8", "--config.train.log_every=1",
         "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
# A short heartbeat so that a survivor notices a lost peer in seconds, not the default 100.
HEARTBEAT = 5


def _env(devices):
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  return {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _command(workdir, *overrides):
  return [sys.executable, "-m", "experiments.gpt2", "--config=configs/gpt2.py:tiny",
          f"--workdir={workdir}", *SMALL, *overrides]


def _start_two(workdir, *overrides):
  """Both processes of a 2-process run; their output goes to workdir.{0,1}.log."""
  port, processes = _free_port(), []
  for i in range(2):
    log = open(f"{workdir}.{i}.log", "w")
    processes.append(subprocess.Popen(
        _command(workdir, *overrides, f"--coordinator_address=localhost:{port}",
                 "--num_processes=2", f"--process_id={i}",
                 f"--heartbeat_timeout_seconds={HEARTBEAT}"),
        cwd=REPO, env=_env(4), stdout=log, stderr=subprocess.STDOUT))
  return processes


def _log(workdir, i):
  return pathlib.Path(f"{workdir}.{i}.log").read_text(errors="replace")


def _run_two(workdir, *overrides):
  processes = _start_two(workdir, *overrides)
  for i, process in enumerate(processes):
    assert process.wait(timeout=300) == 0, _log(workdir, i)[-3000:]
  return _log(workdir, 0)


def _run_one(workdir, *overrides):
  result = subprocess.run(_command(workdir, *overrides), cwd=REPO, env=_env(8),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]


def _losses(workdir):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["loss"] for r in records if "loss" in r}


def _manager(workdir):
  return ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))


def _params(workdir, step):
  """The parameters of a checkpoint, on one device whatever mesh wrote them."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one),
                        checkpointer.metadata(path).item_metadata)
  return jax.device_get(checkpointer.restore(path, target)["params"])


def _wait_for(condition, processes, what, seconds=240):
  deadline = time.monotonic() + seconds
  while not condition():
    assert all(p.poll() is None for p in processes), f"a process ended before {what}"
    assert time.monotonic() < deadline, f"never saw {what}"
    time.sleep(0.05)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
  """A byte-level corpus: text_file runs draw every global batch from (seed, step), whatever
  the number of processes, so one process and two see the same rows."""
  rng = np.random.default_rng(0)
  words = "the red fox jumps over a lazy dog while seven small birds sing in green trees".split()
  path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
  path.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(400)))
  return ["--config.data.name=text_file", f"--config.data.path={path}"]


def test_two_processes_train_and_resume_like_one(tmp_path, text_file):
  reference, workdir = tmp_path / "one_process", tmp_path / "two_processes"
  _run_one(reference, *text_file, "--config.train.steps=20")
  expected = _losses(reference)

  _run_two(workdir, *text_file, "--config.train.steps=10")
  first = _losses(workdir)
  assert sorted(first) == list(range(1, 11)), "process 0 logs each step once"
  np.testing.assert_allclose([first[s] for s in range(1, 11)],
                             [expected[s] for s in range(1, 11)], rtol=0, atol=1e-5)
  assert _manager(workdir).all_steps() == [10]

  # 20 steps on the same workdir: resumes at 10. The 30-step warmup makes the learning rate of
  # steps 1-10 independent of train.steps, so the reference's 20-step run is the same run.
  log = _run_two(workdir, *text_file, "--config.train.steps=20")
  assert "resumed from" in log and "step 10" in log.split("resumed from", 1)[1].splitlines()[0]
  losses = _losses(workdir)
  assert sorted(losses) == list(range(1, 21))
  np.testing.assert_allclose([losses[s] for s in range(1, 21)],
                             [expected[s] for s in range(1, 21)], rtol=0, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               _params(workdir, 20), _params(reference, 20))


def test_lost_worker_stops_the_coordinator_and_the_run_resumes(tmp_path):
  # The grain pipeline (synthetic_text): each process reads its own records and has its own
  # iterator state, so the checkpoint must hold both.
  workdir = tmp_path / "run"
  processes = _start_two(workdir, "--config.data.num_docs=300", "--config.train.steps=1000",
                         "--config.train.checkpoint_every=2")
  _wait_for(lambda: (workdir / "checkpoints" / "2").is_dir(), processes, "checkpoint 2")
  processes[1].send_signal(signal.SIGKILL)
  killed = time.monotonic()
  assert processes[0].wait(timeout=60) != 0
  assert time.monotonic() - killed < HEARTBEAT + 20
  assert "The following tasks are unhealthy (stopped sending heartbeats):\n1\n" in _log(workdir, 0)

  log = _run_two(workdir, "--config.data.num_docs=300", "--config.train.steps=4",
                 "--config.train.checkpoint_every=2")
  assert "resumed from" in log
  meta = _manager(workdir).restore(4, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  states = meta["meta"]["data"]["processes"]
  assert [s["settings"]["process_index"] for s in states] == [0, 1]
  assert states[0]["grain"] != states[1]["grain"]


def test_lost_coordinator_stops_the_worker(tmp_path, text_file):
  workdir = tmp_path / "run"
  processes = _start_two(workdir, *text_file, "--config.train.steps=100000")
  _wait_for(lambda: "step 3/" in _log(workdir, 0), processes, "step 3")
  processes[0].send_signal(signal.SIGKILL)
  killed = time.monotonic()
  assert processes[1].wait(timeout=60) != 0
  assert time.monotonic() - killed < HEARTBEAT + 20
  assert "the leader task was preempted/died" in _log(workdir, 1)
