"""Where a train step's time goes, ours against a PyTorch baseline, by category.

Ours: jax's profiler traces a few calls of the compiled step; each XLA operation it records is
mapped, through the compiled HLO's `op_name` metadata (the jax/flax call path that emitted it),
onto a category by the first rule whose pattern it matches. The baseline: torch.profiler's self
time per operator (with inductor's generated kernels recorded under their fused names), mapped
the same way by name and, for matrix products, by whether an input has the vocabulary's size.
The rules come from the caller, which knows its model's names; this module knows no model.
"""

import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax


def _op_names(hlo_text):
  """{instruction name: op_name metadata} for the entry computation's instructions."""
  entry = hlo_text[hlo_text.find("\nENTRY"):]
  names = {}
  for match in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?op_name=\"([^\"]*)\"", entry,
                           re.MULTILINE):
    names[match.group(1)] = match.group(2)
  return names


def categorise(seconds_by_label, rules, other="other"):
  """{category: seconds}, each label going to the first (category, regex) that searches it."""
  totals = collections.Counter()
  for label, seconds in seconds_by_label.items():
    category = next((name for name, pattern in rules if re.search(pattern, label)), other)
    totals[category] += seconds
  return dict(totals)


def jax_op_seconds(compiled, call, calls):
  """{op_name: seconds per call} of `calls` calls of call(i) running `compiled` (its HLO names
  the operations the trace records)."""
  op_names = _op_names(compiled.as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    try:
      for i in range(calls):
        jax.block_until_ready(call(i))
    finally:
      jax.profiler.stop_trace()
    trace_file, = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*",
                                         "perfetto_trace.json.gz"))
    with gzip.open(trace_file) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  seconds = collections.Counter()
  for event in events:
    if event.get("ph") == "X" and event.get("name") in op_names:
      seconds[op_names[event["name"]]] += event["dur"] * 1e-6 / calls
  return dict(seconds)


def torch_op_seconds(call, calls, vocab_size):
  """{label: seconds per call} of torch.profiler's self CPU time per operator over `calls`
  calls of call(i); a matrix product with an input dimension of `vocab_size` is labelled
  "lm_head:" and the operator's name."""
  import torch  # pylint: disable=import-outside-toplevel
  activities = [torch.profiler.ProfilerActivity.CPU]
  with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
    for i in range(calls):
      call(i)
  seconds = collections.Counter()
  for event in prof.key_averages(group_by_input_shape=True):
    shapes = [d for shape in (event.input_shapes or []) if isinstance(shape, list) for d in shape]
    is_product = re.search(r"aten::(mm|addmm|bmm|baddbmm|matmul|linear)$", event.key)
    label = f"lm_head:{event.key}" if is_product and vocab_size in shapes else event.key
    seconds[label] += event.self_cpu_time_total * 1e-6 / calls
  return dict(seconds)
