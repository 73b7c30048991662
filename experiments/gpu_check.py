"""The GPU acceptance run: the Hopper attention kernel, attention TFLOP/s against cuDNN, the
GPT-2 124M train step's MFU, and decoding against transformers, in one command.

  python -m experiments.gpu_check [--time_limit=450] [--workdir=runs/gpu_check]
      [--checks=kernel,attention,train_step,decode] [--smoke]

Prints one JSON line per check as it ends, then a summary line; progress goes to stderr
and each check's own output to WORKDIR/CHECK.log. Off a GPU every check reports "no GPU";
--smoke runs them at toy sizes on any backend. It imports neither ml_collections nor the
data pipeline, so it runs on a machine with only jax, flax, optax, absl-py, pytest, torch
and transformers (BUILD.md, GPU section). The checks live in lineage/bench/gpu_check.py and
gpu_gpt2.py; each runs in a child process of this binary (--check=NAME).
"""

import signal
import sys

from absl import app, flags

from lineage.bench import gpu_check

FLAGS = flags.FLAGS
flags.DEFINE_list("checks", list(gpu_check.CHECKS), "Which checks to run, in this order.")
flags.DEFINE_float("time_limit", 450, "Seconds for the whole run; each check gets a share, "
                   "and what one leaves unused passes to the next (with --check: its own).")
flags.DEFINE_string("workdir", "runs/gpu_check", "Where each check's log and result go.")
flags.DEFINE_bool("smoke", False, "Run every check at toy sizes, on any backend (a rehearsal "
                  "of the code paths on CPU).")
flags.DEFINE_string("check", None, "Internal: run this one check in this process.")
flags.DEFINE_string("result_file", None, "Internal: where --check writes its result.")


def _child_command(check, result_file, time_limit):
  return [sys.executable, "-m", "experiments.gpu_check", f"--check={check}",
          f"--result_file={result_file}", f"--time_limit={time_limit}"] + (
              ["--smoke"] if FLAGS.smoke else [])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.check:
    if not FLAGS.result_file:
      raise app.UsageError("--check needs --result_file")
    gpu_check.run_one(FLAGS.check, FLAGS.smoke, FLAGS.result_file, FLAGS.time_limit)
    return 0
  # `timeout` (gpu_check.sh) sends SIGTERM: exit through Python, which stops the running check.
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  results = gpu_check.run_checks(FLAGS.checks, _child_command, FLAGS.workdir, FLAGS.time_limit,
                                 emit=lambda line: print(line, flush=True))
  return 1 if any(r["status"] in gpu_check.FAILED for r in results) else 0


if __name__ == "__main__":
  sys.exit(app.run(main))
