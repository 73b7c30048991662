"""GPT-2's train step, input pipeline, training memory and KV-cache decoding, measured through
the same builders a run uses (task.build, lineage.train.loop, lineage.decode), so a number
here is what a run would get. experiments/bench.py is their flags."""

import statistics

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lineage import decode
from lineage.bench import timing
from lineage.milestones.gpt2 import task as gpt2_task
from lineage.models import gpt
from lineage.train import loop, memory, sharding
from lineage.train import metrics as metrics_lib


def random_batches(cfg, count, seed):
  """`count` batches of uniformly random tokens, the shape training would feed."""
  rng = np.random.default_rng(seed)
  shape = (cfg.train.batch_size, cfg.data.seq_len + 1)
  for _ in range(count):
    tokens = rng.integers(0, cfg.model.vocab_size, shape, dtype=np.int32)
    yield {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


def bench_train_step(cfg, steps, warmup, seed=0):
  """Tokens/s, step time and MFU of the full train step (forward, backward, AdamW)."""
  task = gpt2_task.build(cfg).task
  trainer = loop.build_trainer(cfg, task)
  peak = metrics_lib.peak_flops_per_device(cfg.get("peak_flops", 0.0)) * jax.device_count()
  with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    state = trainer.init_state(jax.random.PRNGKey(cfg.train.seed))
    # A few distinct batches, on device before timing, so host-to-device copies are not timed.
    batches = [loop.device_batch(b, trainer.mesh) for b in random_batches(cfg, 4, seed)]

    def step(i):
      nonlocal state
      state, metrics = trainer.train_step(state, batches[i % len(batches)])
      return state, metrics
    seconds = statistics.median(timing.timed(step, steps, warmup))
  tokens_per_sec = task.tokens_per_batch / seconds
  model_flops = tokens_per_sec * task.flops_per_token
  return {"what": "train_step", "tokens_per_sec": tokens_per_sec,
          "mfu": model_flops / peak, "step_seconds_median": seconds,
          "model_gflops_per_sec": model_flops / 1e9, "peak_gflops_per_sec": peak / 1e9,
          "flops_per_token": task.flops_per_token, "tokens_per_step": task.tokens_per_batch,
          "devices": jax.device_count(), "backend": jax.default_backend()}


def bench_decode(cfg, prompt_len, new_tokens, batch, steps, warmup, seed=0):
  """New tokens/s (summed over the batch) of greedy KV-cache generation with no stop tokens."""
  model_cfg = gpt2_task.model_config(cfg)
  dummy = jnp.zeros((1, prompt_len), jnp.int32)
  init = lambda rng: nn.unbox(gpt.GPT(model_cfg).init(rng, dummy)["params"])
  params = jax.jit(init)(jax.random.PRNGKey(seed))
  generator = decode.Generator(*gpt.decoding(model_cfg), model_cfg.context)
  greedy = decode.Sampling(temperature=0)
  rng = np.random.default_rng(seed)
  prompts = rng.integers(0, model_cfg.vocab_size, (batch, prompt_len)).tolist()
  # The bucket equals the prompt length, so exactly `prompt_len` tokens are prefilled.
  generate = lambda i: generator.generate(params, prompts, new_tokens, sampling=greedy,
                                          bucket=prompt_len)
  generated = generate(0)
  if any(len(c) != new_tokens for c in generated):
    raise RuntimeError("a sequence stopped early; the benchmark expects no stop tokens")
  seconds = statistics.median(timing.timed(generate, steps, warmup))
  return {"what": "decode", "new_tokens_per_sec": batch * new_tokens / seconds,
          "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
          "generate_seconds_median": seconds, "backend": jax.default_backend()}


def bench_data(cfg, steps, warmup):
  """Tokens/s the training input pipeline delivers (tokenize, pack, batch) for the config."""
  train_data = gpt2_task.build(cfg).task.train_data
  seconds = timing.timed(lambda i: next(train_data), steps, warmup)
  tokens = cfg.train.batch_size * cfg.data.seq_len
  return {"what": "data", "tokens_per_sec": tokens / statistics.median(seconds),
          "batch_seconds_median": statistics.median(seconds), "dataset": cfg.data.name,
          "tokenizer": cfg.data.tokenizer, "worker_count": cfg.data.worker_count}


def bench_memory(cfg, meshes, model_preset=None, compile=False):
  """Per-device parameter, optimizer and (compiled) temporary bytes of training on each mesh."""
  model_cfg = gpt.PRESETS[model_preset] if model_preset else gpt2_task.model_config(cfg)
  rows = []
  for mesh in meshes:
    data, fsdp, tensor = (int(n) for n in mesh.split("x"))
    fits = compile and data * fsdp * tensor <= jax.device_count()
    result = memory.analyse(gpt2_task.gpt_task(model_cfg), cfg.train, cfg.data.seq_len, data,
                            fsdp, tensor, fits)
    rows.append({"mesh": mesh, "params_bytes": result.params,
                 "optimizer_bytes": result.optimizer, "temp_bytes": result.temporaries,
                 "num_params": result.num_params})
  return {"what": "memory", "model": model_preset or cfg.preset, "batch_size": cfg.train.batch_size,
          "micro_batches": cfg.train.micro_batches, "seq_len": cfg.data.seq_len,
          "mu_dtype": cfg.train.mu_dtype or "float32", "results": rows}
