"""Attention forward+backward per implementation: time, TFLOP/s, compiled temporaries, and
gradient error against fp32 xla, measured in one run so the ratios are fair."""

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

  "pallas:QxKV" is the Mosaic GPU kernel with block_q=Q, block_kv=KV, for tuning.
  """
  attend = functools.partial(ops.attention, implementation=implementation)
  if implementation.startswith("pallas:"):
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


def bench_attention(cfg, seq_lens, batch, steps, warmup, seed=0, head_dims=(), pallas_tiles=()):
  """Forward+backward time, TFLOP/s, compiled temporaries and error per implementation.

  Heads and dtype are the config's model's; head sizes too unless `head_dims`
  is given. Implementations: xla everywhere, pallas on TPU and on CPU (interpret
  mode, so slow) and on GPU in half precision (the Mosaic GPU kernel), cudnn on
  GPU in half precision. Each is checked against the fp32 xla gradients first.
  FLOPs count the causal half of the four attention matmuls, forward plus a
  backward of 2.5 forwards (FlashAttention's convention).
  """
  model_cfg = model_config_lib.from_config(gpt.GPTConfig, cfg.model)
  dtype = jnp.dtype(model_cfg.dtype)
  backend = jax.default_backend()
  implementations = ["xla"]
  if backend in ("cpu", "tpu") or (backend == "gpu" and dtype in (jnp.float16, jnp.bfloat16)):
    implementations.append("pallas")
  if backend == "gpu" and dtype in (jnp.float16, jnp.bfloat16):
    implementations += [f"pallas:{tiles}" for tiles in pallas_tiles] + ["cudnn"]
  rows = []
  for head_dim in head_dims or [model_cfg.head_dim]:
    for seq_len in seq_lens:
      shape = (batch, seq_len, model_cfg.num_heads, head_dim)
      q, k, v = (jax.random.normal(key, shape).astype(dtype)
                 for key in jax.random.split(jax.random.PRNGKey(seed), 3))
      exact = _attention_grads("xla")(*(t.astype(jnp.float32) for t in (q, k, v)))
      flops = 3.5 * 4 * batch * model_cfg.num_heads * seq_len * seq_len * head_dim / 2
      for implementation in implementations:
        try:
          compiled = _attention_grads(implementation).lower(q, k, v).compile()
        except NotImplementedError as unsupported:  # e.g. the GPU kernel's head_dim % 64
          logging.warning("skipping %s: %s", implementation, unsupported)
          continue
        error = _relative_error(compiled(q, k, v), exact)
        seconds = statistics.median(timing.timed(lambda i: compiled(q, k, v), steps, warmup))
        rows.append({"implementation": implementation, "seq_len": seq_len,
                     "head_dim": head_dim, "seconds_median": seconds,
                     "tflops_per_sec": flops / seconds / 1e12, "grad_rel_error": error,
                     "temp_bytes": compiled.memory_analysis().temp_size_in_bytes})
      del exact
  return {"what": "attention", "backend": backend, "batch": batch,
          "heads": model_cfg.num_heads, "dtype": dtype.name, "causal": True, "results": rows}
