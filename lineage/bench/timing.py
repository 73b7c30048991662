"""Timing jitted work on a shared machine: warm-up calls absorb compilation, each timed call
ends with block_until_ready, and callers take medians, which resist the noise."""

import time

import jax


def timed(fn, steps, warmup):
  """Seconds of each of `steps` calls fn(i) after `warmup` untimed ones."""
  for i in range(warmup):
    jax.block_until_ready(fn(i))
  seconds = []
  for i in range(warmup, warmup + steps):
    start = time.perf_counter()
    jax.block_until_ready(fn(i))
    seconds.append(time.perf_counter() - start)
  return seconds
