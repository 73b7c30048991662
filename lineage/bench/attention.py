"""Attention forward+backward per implementation: time, TFLOP/s, compiled temporaries, and
gradient error against fp32 xla, each against a baseline measured in the same run, alternating:
jax.nn.dot_product_attention (its xla implementation; cuDNN's on GPU in half precision)."""

import functools
import statistics

import jax
import jax.numpy as jnp
from absl import logging

from kernels import flash_attention_mgpu, ops
from lineage.bench import timing
from lineage.models import config as model_config_lib
from lineage.models import gpt


def _attention_grads(implementation):
  """Jitted forward+backward of causal attention, the work one training layer does.

  "pallas:QxKV" is the Mosaic GPU kernel with block_q=Q, block_kv=KV, for tuning;
  "jax.nn:IMPL" is jax.nn.dot_product_attention with implementation=IMPL, the baseline.
  """
  attend = functools.partial(ops.attention, implementation=implementation)
  if implementation.startswith("jax.nn:"):
    attend = lambda q, k, v, causal: jax.nn.dot_product_attention(
        q, k, v, is_causal=causal, implementation=implementation.split(":")[1])
  elif implementation.startswith("pallas:"):
    block_q, block_kv = (int(n) for n in implementation.split(":")[1].split("x"))
    attend = functools.partial(flash_attention_mgpu.flash_attention_mgpu, block_q=block_q,
                               block_kv=block_kv)

  def loss(q, k, v):
    return attend(q, k, v, causal=True).astype(jnp.float32).sum()
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def _relative_error(got, want):
  """max |got - want| / max |want| over the gradients, in fp32."""
  return max(float(jnp.abs(g.astype(jnp.float32) - w).max() / jnp.abs(w).max())
             for g, w in zip(got, want))


def bench_attention(cfg, seq_lens, batch, steps, warmup, seed=0, head_dims=(), pallas_tiles=(),
                    pairs=3):
  """Forward+backward time, TFLOP/s, compiled temporaries, error and ratio per implementation.

  Heads and dtype are the config's model's; head sizes too unless `head_dims`
  is given. Implementations: xla everywhere, pallas on TPU and on CPU (interpret
  mode, so slow) and on GPU in half precision (the Mosaic GPU kernel). The
  baseline, alternating with them in `pairs` rounds, is jax.nn.dot_product_attention:
  cuDNN's on GPU in half precision, else its xla one. Each is checked against the
  fp32 xla gradients first. FLOPs count the causal half of the four attention
  matmuls, forward plus a backward of 2.5 forwards (FlashAttention's convention).
  The top-level ratio is, per shape, our fastest implementation's, then the median.
  """
  model_cfg = model_config_lib.from_config(gpt.GPTConfig, cfg.model)
  dtype = jnp.dtype(model_cfg.dtype)
  backend = jax.default_backend()
  half = dtype in (jnp.float16, jnp.bfloat16)
  implementations = ["xla"]
  if backend in ("cpu", "tpu") or (backend == "gpu" and half):
    implementations.append("pallas")
  if backend == "gpu" and half:
    implementations += [f"pallas:{tiles}" for tiles in pallas_tiles]
  baseline = "jax.nn:cudnn" if backend == "gpu" and half else "jax.nn:xla"
  rows, best = [], []
  for head_dim in head_dims or [model_cfg.head_dim]:
    for seq_len in seq_lens:
      shape = (batch, seq_len, model_cfg.num_heads, head_dim)
      q, k, v = (jax.random.normal(key, shape).astype(dtype)
                 for key in jax.random.split(jax.random.PRNGKey(seed), 3))
      exact = _attention_grads("xla")(*(t.astype(jnp.float32) for t in (q, k, v)))
      flops = 3.5 * 4 * batch * model_cfg.num_heads * seq_len * seq_len * head_dim / 2
      compiled, errors = {}, {}
      for implementation in implementations + [baseline]:
        try:
          compiled[implementation] = _attention_grads(implementation).lower(q, k, v).compile()
        except NotImplementedError as unsupported:  # e.g. the GPU kernel's head_dim % 64
          logging.warning("skipping %s: %s", implementation, unsupported)
          continue
        errors[implementation] = _relative_error(compiled[implementation](q, k, v), exact)
      del exact
      rounds = timing.alternating(
          {name: lambda i, fn=fn: fn(q, k, v) for name, fn in compiled.items()},
          pairs, steps, warmup)
      versus = timing.compare(rounds, baseline, batch * seq_len)
      for implementation, fn in compiled.items():
        seconds = statistics.median(rounds[implementation])
        ratio = None if implementation == baseline else 1 / versus[implementation]["ratio"]
        rows.append({"implementation": implementation, "seq_len": seq_len,
                     "head_dim": head_dim, "seconds_median": seconds,
                     "tflops_per_sec": flops / seconds / 1e12,
                     "grad_rel_error": errors[implementation],
                     "temp_bytes": fn.memory_analysis().temp_size_in_bytes,
                     "baseline": implementation == baseline, "ratio": ratio,
                     "pair_ratios": None if ratio is None else
                     [1 / r for r in versus[implementation]["pair_ratios"]]})
      best.append(max((r for r in rows[-len(compiled):] if not r["baseline"]),
                      key=lambda r: r["ratio"]))
  fastest = {"tokens_per_sec": statistics.median(
                 r["seq_len"] * batch / r["seconds_median"] for r in best),
             "ratio": statistics.median(r["ratio"] for r in best),
             "pair_ratios": [r["ratio"] for r in best]}
  return {"what": "attention", "backend": backend, "batch": batch,
          "heads": model_cfg.num_heads, "dtype": dtype.name, "causal": True, "results": rows,
          "tokens_per_sec": fastest["tokens_per_sec"], "baseline": baseline, "ratio": fastest["ratio"],
          "baselines": {baseline: {**fastest, "tokens_per_sec": statistics.median(
              r["seq_len"] * batch / r["seconds_median"] for r in rows if r["baseline"])}}}
