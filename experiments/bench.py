"""Throughput of the jitted train step and of KV-cache decoding on the current backend.

  python -m experiments.bench --what=train_step --config=configs/gpt2.py:tiny \
      [--config.model.num_layers=6 ...] [--steps=20 --warmup=3]
  python -m experiments.bench --what=decode --config=configs/gpt2.py:tiny \
      --prompt_len=16 --new_tokens=256 --batch=1
  python -m experiments.bench --what=data --config=configs/gpt2.py:tiny \
      --config.data.name=ptb --config.data.tokenizer=gpt2 --config.model.vocab_size=50304
  python -m experiments.bench --what=attention --config=configs/gpt2.py:tiny \
      --seq_lens=256,512,1024 --batch=1 [--head_dims=64,128]
  python -m experiments.bench --what=memory --config=configs/gpt2.py:1542m \
      --meshes=1x8x1,1x4x2 [--model_preset=gpt3_175b] [--compile]
  LINEAGE_MANUAL_DIR=../shared/data python -m experiments.bench --what=zero_shot \
      --config=configs/gpt2.py:tiny --config.model.num_layers=6 --config.model.embed_dim=384 \
      --config.model.num_heads=6 --config.model.mlp_dim=1536 --config.model.context=512 \
      --config.model.vocab_size=50257 --batch=4 --steps=4 --warmup=1
The model, optimizer and step come from the same builders as training
(lineage.train.lm.build, lineage.train.loop.build_trainer, lineage.sample.Decoder),
so a number here is what a run would get; the attention and zero-shot benchmarks live in
lineage/bench/. Warm-up calls absorb compilation; the
timed calls each end with block_until_ready, and medians resist the noise of a
shared machine. The last stdout line is one JSON object, for scripts to parse.
"""

import json
import statistics
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from configs import gpt2 as gpt2_config
from lineage import sample as sample_lib
from lineage.bench import attention as attention_bench
from lineage.bench import timing
from lineage.bench import zero_shot as zero_shot_bench
from lineage.models import gpt
from lineage.train import lm, loop, memory, sharding
from lineage.train import metrics as metrics_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/gpt2.py:PRESET", lock_config=True)
flags.DEFINE_enum("what", "train_step", ["train_step", "decode", "data", "attention",
                                           "memory", "zero_shot"],
                  "What to measure.")
flags.DEFINE_integer("steps", 20, "Timed repetitions (train steps, or generate calls).")
flags.DEFINE_integer("warmup", 3, "Untimed repetitions first (compilation, caches).")
flags.DEFINE_integer("prompt_len", 16, "decode: random prompt tokens per sequence.")
flags.DEFINE_integer("new_tokens", 256, "decode: tokens generated per sequence.")
flags.DEFINE_integer("batch", 1, "decode: sequences generated together; attention, zero_shot: "
                     "batch size.")
flags.DEFINE_list("seq_lens", ["256", "512", "1024"], "attention: sequence lengths to measure.")
flags.DEFINE_list("head_dims", [], "attention: head sizes to measure (default: the model's).")
flags.DEFINE_list("pallas_tiles", [], "attention on GPU: more BLOCK_QxBLOCK_KV tilings of the "
                  "Mosaic GPU kernel to time beside its default (e.g. 64x128,128x64).")
flags.DEFINE_integer("seed", 0, "Seed of the random tokens and parameters.")
flags.DEFINE_list("meshes", ["1x1x1"], "memory: meshes as DATAxFSDPxTENSOR.")
flags.DEFINE_string("model_preset", None, "memory: a lineage.models.gpt.PRESETS name in place "
                    "of the config's model (e.g. gpt3_175b).")
flags.DEFINE_bool("compile", False, "memory: also compile the train step for activation and "
                  "temporary memory (needs as many local devices as the mesh).")


def random_batches(cfg, count, seed):
  """`count` batches of uniformly random tokens, the shape training would feed."""
  rng = np.random.default_rng(seed)
  shape = (cfg.train.batch_size, cfg.data.seq_len + 1)
  for _ in range(count):
    tokens = rng.integers(0, cfg.model.vocab_size, shape, dtype=np.int32)
    yield {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


def bench_train_step(cfg, steps, warmup, seed=0):
  """Tokens/s, step time and MFU of the full train step (forward, backward, AdamW)."""
  task = lm.build(cfg).task
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
  model_cfg = lm.model_config(cfg)
  dummy = jnp.zeros((1, prompt_len), jnp.int32)
  init = lambda rng: nn.unbox(gpt.GPT(model_cfg).init(rng, dummy)["params"])
  params = jax.jit(init)(jax.random.PRNGKey(seed))
  decoder = sample_lib.Decoder(model_cfg, params, sample_lib.SamplingConfig(greedy=True))
  rng = np.random.default_rng(seed)
  prompts = rng.integers(0, model_cfg.vocab_size, (batch, prompt_len)).tolist()
  # The bucket equals the prompt length, so exactly `prompt_len` tokens are prefilled.
  generate = lambda i: decoder.generate(prompts, new_tokens, bucket=prompt_len)
  generated = generate(0)
  if any(len(c) != new_tokens for c in generated):
    raise RuntimeError("a sequence stopped early; the benchmark expects no stop tokens")
  seconds = statistics.median(timing.timed(generate, steps, warmup))
  return {"what": "decode", "new_tokens_per_sec": batch * new_tokens / seconds,
          "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
          "generate_seconds_median": seconds, "backend": jax.default_backend()}


def bench_data(cfg, steps, warmup):
  """Tokens/s the training input pipeline delivers (tokenize, pack, batch) for the config."""
  train_data = lm.build(cfg).task.train_data
  seconds = timing.timed(lambda i: next(train_data), steps, warmup)
  tokens = cfg.train.batch_size * cfg.data.seq_len
  return {"what": "data", "tokens_per_sec": tokens / statistics.median(seconds),
          "batch_seconds_median": statistics.median(seconds), "dataset": cfg.data.name,
          "tokenizer": cfg.data.tokenizer, "worker_count": cfg.data.worker_count}


def bench_memory(cfg, meshes, model_preset=None, compile=False):
  """Per-device parameter, optimizer and (compiled) temporary bytes of training on each mesh."""
  model_cfg = gpt.PRESETS[model_preset] if model_preset else lm.model_config(cfg)
  rows = []
  for mesh in meshes:
    data, fsdp, tensor = (int(n) for n in mesh.split("x"))
    fits = compile and data * fsdp * tensor <= jax.device_count()
    result = memory.analyse(model_cfg, cfg.train, cfg.data.seq_len, data, fsdp, tensor, fits)
    rows.append({"mesh": mesh, "params_bytes": result.params,
                 "optimizer_bytes": result.optimizer, "temp_bytes": result.temporaries,
                 "num_params": result.num_params})
  return {"what": "memory", "model": model_preset or cfg.preset, "batch_size": cfg.train.batch_size,
          "micro_batches": cfg.train.micro_batches, "seq_len": cfg.data.seq_len,
          "mu_dtype": cfg.train.mu_dtype or "float32", "results": rows}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every phase at INFO
  cfg = FLAGS.config
  gpt2_config.resolve_dtype(cfg)
  if FLAGS.what == "train_step":
    result = bench_train_step(cfg, FLAGS.steps, FLAGS.warmup, FLAGS.seed)
    print(f"{result['tokens_per_sec']:,.0f} tok/s, {result['step_seconds_median']:.3f} s/step, "
          f"{result['model_gflops_per_sec']:.1f} model GFLOP/s of a "
          f"{result['peak_gflops_per_sec']:.1f} GFLOP/s peak: MFU {100 * result['mfu']:.1f}%")
  elif FLAGS.what == "data":
    result = bench_data(cfg, FLAGS.steps, FLAGS.warmup)
    print(f"{result['tokens_per_sec']:,.0f} tok/s from the {cfg.data.name} pipeline "
          f"({cfg.data.tokenizer} tokenizer, {cfg.data.worker_count} workers)")
  elif FLAGS.what == "attention":
    result = attention_bench.bench_attention(cfg, [int(n) for n in FLAGS.seq_lens], FLAGS.batch, FLAGS.steps,
                             FLAGS.warmup, FLAGS.seed, [int(n) for n in FLAGS.head_dims],
                             FLAGS.pallas_tiles)
    cudnn = {(r["seq_len"], r["head_dim"]): r for r in result["results"]
             if r["implementation"] == "cudnn"}
    for row in result["results"]:
      baseline = cudnn.get((row["seq_len"], row["head_dim"]))
      versus = (f", {row['tflops_per_sec'] / baseline['tflops_per_sec']:.2f}x cudnn"
                if baseline else "")
      print(f"{row['implementation']:>14} at {row['seq_len']:>5} tokens, head_dim "
            f"{row['head_dim']}: {1e3 * row['seconds_median']:.2f} ms forward+backward, "
            f"{row['tflops_per_sec']:.3g} TFLOP/s{versus}, gradient error "
            f"{row['grad_rel_error']:.1e}, {row['temp_bytes'] / 2**20:.1f} MiB temporaries")
  elif FLAGS.what == "memory":
    result = bench_memory(cfg, FLAGS.meshes, FLAGS.model_preset, FLAGS.compile)
    gib = lambda n: "n/a" if n is None else f"{n / 2**30:.2f}"
    print(f"{result['model']}: {result['results'][0]['num_params'] / 1e6:,.0f}M parameters; "
          "GiB per device (data x fsdp x tensor)")
    print("mesh        params  optimizer  temporaries")
    for row in result["results"]:
      print(f"{row['mesh']:<10} {gib(row['params_bytes']):>7} {gib(row['optimizer_bytes']):>10} "
            f"{gib(row['temp_bytes']):>12}")
  elif FLAGS.what == "zero_shot":
    result = zero_shot_bench.bench_zero_shot(cfg, FLAGS.batch, FLAGS.steps, FLAGS.warmup, FLAGS.seed)
    print(f"zero-shot scoring of {result['windows']} WikiText-2 windows of {result['context']}: "
          f"ours {result['tokens_per_sec']:,.0f} tok/s, transformers "
          f"{result['hf_tokens_per_sec']:,.0f} tok/s, ratio {result['speedup']:.2f}x "
          f"(window log-probs agree to {result['max_abs_logprob_difference']:.1e} nats)")
  else:
    result = bench_decode(cfg, FLAGS.prompt_len, FLAGS.new_tokens, FLAGS.batch, FLAGS.steps,
                          FLAGS.warmup, FLAGS.seed)
    print(f"{result['new_tokens_per_sec']:,.1f} new tok/s at batch {result['batch']}, "
          f"{result['generate_seconds_median']:.3f} s per generate call")
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  sys.exit(app.run(main))
