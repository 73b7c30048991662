"""Throughput of the jitted train step and of KV-cache decoding on the current backend.

  python -m experiments.bench --what=train_step --config=configs/gpt2.py:tiny \
      [--config.model.num_layers=6 ...] [--steps=20 --warmup=3]
  python -m experiments.bench --what=decode --config=configs/gpt2.py:tiny \
      --prompt_len=16 --new_tokens=112 --batch=1   # prompt + new tokens within the context
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
The measurements live in lineage/milestones/gpt2/bench.py and lineage/bench/ (attention.py,
zero_shot.py); this binary is their flags. Warm-up calls absorb compilation; the timed calls
each end with block_until_ready, and medians resist the noise of a shared machine. The last
stdout line is one JSON object, for scripts to parse.
"""

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from configs import gpt2 as gpt2_config
from lineage.bench import attention as attention_bench
from lineage.bench import zero_shot as zero_shot_bench
from lineage.milestones.gpt2 import bench as gpt2_bench

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every phase at INFO
  cfg = FLAGS.config
  gpt2_config.resolve_dtype(cfg)
  if FLAGS.what == "train_step":
    result = gpt2_bench.bench_train_step(cfg, FLAGS.steps, FLAGS.warmup, FLAGS.seed)
    print(f"{result['tokens_per_sec']:,.0f} tok/s, {result['step_seconds_median']:.3f} s/step, "
          f"{result['model_gflops_per_sec']:.1f} model GFLOP/s of a "
          f"{result['peak_gflops_per_sec']:.1f} GFLOP/s peak: MFU {100 * result['mfu']:.1f}%")
  elif FLAGS.what == "data":
    result = gpt2_bench.bench_data(cfg, FLAGS.steps, FLAGS.warmup)
    print(f"{result['tokens_per_sec']:,.0f} tok/s from the {cfg.data.name} pipeline "
          f"({cfg.data.tokenizer} tokenizer, {cfg.data.worker_count} workers)")
  elif FLAGS.what == "attention":
    result = attention_bench.bench_attention(
        cfg, [int(n) for n in FLAGS.seq_lens], FLAGS.batch, FLAGS.steps, FLAGS.warmup,
        FLAGS.seed, [int(n) for n in FLAGS.head_dims], FLAGS.pallas_tiles)
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
    result = gpt2_bench.bench_memory(cfg, FLAGS.meshes, FLAGS.model_preset, FLAGS.compile)
    gib = lambda n: "n/a" if n is None else f"{n / 2**30:.2f}"
    print(f"{result['model']}: {result['results'][0]['num_params'] / 1e6:,.0f}M parameters; "
          "GiB per device (data x fsdp x tensor)")
    print("mesh        params  optimizer  temporaries")
    for row in result["results"]:
      print(f"{row['mesh']:<10} {gib(row['params_bytes']):>7} {gib(row['optimizer_bytes']):>10} "
            f"{gib(row['temp_bytes']):>12}")
  elif FLAGS.what == "zero_shot":
    result = zero_shot_bench.bench_zero_shot(cfg, FLAGS.batch, FLAGS.steps, FLAGS.warmup,
                                             FLAGS.seed)
    print(f"zero-shot scoring of {result['windows']} WikiText-2 windows of {result['context']}: "
          f"ours {result['tokens_per_sec']:,.0f} tok/s, transformers "
          f"{result['hf_tokens_per_sec']:,.0f} tok/s, ratio {result['speedup']:.2f}x "
          f"(window log-probs agree to {result['max_abs_logprob_difference']:.1e} nats)")
  else:
    result = gpt2_bench.bench_decode(cfg, FLAGS.prompt_len, FLAGS.new_tokens, FLAGS.batch,
                                 FLAGS.steps, FLAGS.warmup, FLAGS.seed)
    print(f"{result['new_tokens_per_sec']:,.1f} new tok/s at batch {result['batch']}, "
          f"{result['generate_seconds_median']:.3f} s per generate call")
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  sys.exit(app.run(main))
