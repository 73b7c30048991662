"""Multi-process start-up: the flags of `jax.distributed.initialize`, shared by every binary.

On TPU pods and under SLURM, JAX finds the coordinator itself, so the flags can
stay empty; elsewhere give all three, the same coordinator to every process.
"""

import os

import jax
from absl import flags
from jax.experimental import multihost_utils


def define_flags():
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
  flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
  flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes-1.")
  flags.DEFINE_integer("heartbeat_timeout_seconds", 100,
                       "A process silent this long counts as dead, and the others stop.")


def _auto_detected():
  return "SLURM_JOB_ID" in os.environ and "SLURM_NTASKS" in os.environ and \
      int(os.environ["SLURM_NTASKS"]) > 1 or "TPU_WORKER_HOSTNAMES" in os.environ


def initialize_from_flags():
  """Joins the multi-process runtime when flags or the environment ask for it."""
  f = flags.FLAGS
  given = [f.coordinator_address, f.num_processes, f.process_id]
  if any(v is not None for v in given):
    if any(v is None for v in given):
      raise flags.ValidationError("multi-process runs need all of --coordinator_address, "
                                  "--num_processes and --process_id")
    # Asking for the backend here would initialise it too early; gloo only affects CPU
    # devices, whose cross-process collectives need it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f.coordinator_address,
                               num_processes=f.num_processes, process_id=f.process_id,
                               heartbeat_timeout_seconds=f.heartbeat_timeout_seconds)
  elif _auto_detected():
    jax.distributed.initialize(heartbeat_timeout_seconds=f.heartbeat_timeout_seconds)


def process_zero_first(build, what):
  """build() on process 0, then on the others: it prepares datasets and trains tokenizers
  that the other processes then read rather than race to write."""
  if jax.process_count() == 1:
    return build()
  result = build() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices(f"{what}: data prepared")
  return build() if result is None else result
