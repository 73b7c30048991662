"""Throughput, model FLOPs utilisation, and where the metrics of a run are written.

MFU = model FLOPs per second / peak FLOPs per second, with model FLOPs per token
= 6N + 12 * layers * heads * head_dim * context (the PaLM paper's convention,
also nanoGPT's). Peak comes from the config, a table of known accelerators
(dense bf16), or, on CPU, a matmul rate measured once per process.
"""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA A100": 312e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
}


@functools.cache
def measured_matmul_flops(size=1024, repeats=30):
  """Best fp32 matmul FLOP/s of the default device, measured with jit."""
  a = jnp.ones((size, size), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best


def peak_flops_per_device(configured=0.0):
  """Peak FLOP/s of one device: the configured value, a known chip's, or a measured rate."""
  if configured:
    return float(configured)
  kind = jax.devices()[0].device_kind
  for name, flops in PEAK_FLOPS.items():
    if kind.startswith(name):
      return flops
  return measured_matmul_flops()


def mfu(tokens_per_sec, flops_per_token, peak_per_device, num_devices):
  return tokens_per_sec * flops_per_token / (peak_per_device * num_devices)


class MetricWriter:
  """Writes metrics.jsonl and TensorBoard events under the workdir (process 0 only).

  On resume from step `resume_step`, records logged after that step by the
  interrupted run are dropped, since the resumed run logs those steps again.
  The TensorBoard writer is opened on the first scalar: tensorboardX creates an
  event file per writer, so a rerun that logs nothing would leave an empty one.
  """

  def __init__(self, workdir, enabled=True, resume_step=0):
    self.enabled = enabled
    if not enabled:
      return
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
      kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
      with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    self._jsonl = open(path, "a")
    self._tb_dir = os.path.join(workdir, "tb")
    self._tb = None

  def write(self, step, metrics):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
    if not scalars:
      return
    if self._tb is None:
      from tensorboardX import SummaryWriter  # imported here: only the writing process needs it
      self._tb = SummaryWriter(self._tb_dir)
    for key, value in scalars.items():
      self._tb.add_scalar(key, value, step)
    self._tb.flush()

  def close(self):
    if self.enabled:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()


def _plain(value):
  if isinstance(value, (np.ndarray, jax.Array, np.generic)):
    return np.asarray(value).item()
  return value


def console(message):
  """One line on stdout, from process 0 only."""
  if jax.process_index() == 0:
    print(message, flush=True)


def format_duration(seconds):
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def read_metrics(workdir):
  """The records of a run's metrics.jsonl, in order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
