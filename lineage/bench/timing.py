"""Timing jitted work on a shared machine: warm-up calls absorb compilation, each timed call
ends with block_until_ready, and callers take medians, which resist the noise.

A speed is only ever reported as a ratio to a baseline measured in the same run, in
alternating rounds (ours, then each baseline, then ours again...), so that a slow minute of a
shared machine falls on both sides of a ratio rather than on one."""

import statistics
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


def alternating(candidates, pairs, steps, warmup):
  """{name: [median seconds of each round]}: every candidate warmed up, then `pairs` rounds
  in which each candidate in turn makes `steps` timed calls fn(i)."""
  for fn in candidates.values():
    timed(fn, 0, warmup)
  rounds = {name: [] for name in candidates}
  for r in range(pairs):
    for name, fn in candidates.items():
      calls = timed(lambda i, fn=fn: fn(warmup + r * steps + i), steps, 0)
      rounds[name].append(statistics.median(calls))
  return rounds


def compare(rounds, ours, tokens):
  """Each baseline of `rounds` against `ours`, both doing the work of `tokens` tokens a call:
  its tokens/s, and the median over rounds of its seconds over ours (above 1: ours is faster)."""
  baselines = {}
  for name, seconds in rounds.items():
    if name == ours:
      continue
    pair_ratios = [theirs / mine for theirs, mine in zip(seconds, rounds[ours])]
    baselines[name] = {"tokens_per_sec": tokens / statistics.median(seconds),
                       "seconds_median": statistics.median(seconds),
                       "ratio": statistics.median(pair_ratios), "pair_ratios": pair_ratios}
  return baselines
