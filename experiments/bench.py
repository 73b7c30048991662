"""Speed of the train step, decoding, attention, the input pipeline and zero-shot scoring, each
as a ratio to a baseline measured in the same run, alternating with ours (see README).

  python -m experiments.bench --what=train_step --config=configs/gpt2.py:tiny \
      [--config.model.num_layers=6 ...] [--steps=1 --warmup=2 --pairs=5] [--profile_steps=2]
  python -m experiments.bench --what=decode --config=configs/gpt2.py:tiny \
      --prompt_len=16 --new_tokens=112 --batch=1   # prompt + new tokens within the context
  python -m experiments.bench --what=data --config=configs/gpt2.py:tiny \
      --config.data.name=ptb --config.data.tokenizer=gpt2 --config.model.vocab_size=50304
  python -m experiments.bench --what=attention --config=configs/gpt2.py:tiny \
      --seq_lens=256,512,1024 --batch=1 [--head_dims=64,128]
  python -m experiments.bench --what=numerics --config=configs/gpt2.py:tiny --steps=30
  python -m experiments.bench --what=memory --config=configs/gpt2.py:1542m \
      --meshes=1x8x1,1x4x2 [--model_preset=gpt3_175b] [--compile]
  LINEAGE_MANUAL_DIR=../shared/data python -m experiments.bench --what=zero_shot \
      --config=configs/gpt2.py:tiny --config.model.num_layers=6 --config.model.embed_dim=384 \
      --config.model.num_heads=6 --config.model.mlp_dim=1536 --config.model.context=512 \
      --config.model.vocab_size=50257 --batch=4 --steps=4 --warmup=1
  LINEAGE_MANUAL_DIR=../shared/data python -m experiments.bench --what=few_shot \
      --config=configs/gpt2.py:tiny --config.model.vocab_size=50257 \
      --config.model.context=512 --few_shot_task=sst2 --few_shot_k=4 --few_shot_examples=64 \
      --batch=8 --pairs=3 --warmup=1   # against lm-evaluation-harness where it has the task
  python -m experiments.bench --what=dalle_sampling --config=configs/dalle.py:tiny --batch=8 \
      --pairs=3   # images/s with the KV cache against without
  python -m experiments.bench --what=report --results=runs/bench/results.jsonl  # the page
`make bench` runs the CPU set and writes docs/results/bench.md. The measurements live in
lineage/milestones/gpt2/bench.py and lineage/bench/; this binary is their flags. Warm-up calls
absorb compilation; the timed calls each end with block_until_ready. The last stdout line is
one JSON object, for scripts to parse.
"""

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from configs import gpt2 as gpt2_config
from lineage.bench import attention as attention_bench
from lineage.bench import few_shot as few_shot_bench
from lineage.bench import report
from lineage.bench import zero_shot as zero_shot_bench
from lineage.milestones.dalle import bench as dalle_bench
from lineage.milestones.gpt2 import bench as gpt2_bench

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/gpt2.py:PRESET", lock_config=True)
flags.DEFINE_enum("what", "train_step", ["train_step", "decode", "data", "attention",
                                           "memory", "zero_shot", "few_shot", "numerics",
                                           "dalle_sampling", "report"],
                  "What to measure; report writes --report_to from the --results of earlier runs.")
flags.DEFINE_string("results", None, "Append the result, with the command, the config and the "
                    "machine's state, as one JSON line to this file (report: read it).")
flags.DEFINE_string("report_to", "docs/results/bench.md", "report: the page to write.")
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
flags.DEFINE_integer("pairs", 3, "Alternating rounds of ours and the baselines; each ratio is "
                     "the median of the rounds' ratios.")
flags.DEFINE_bool("torch_compile", True, "train_step: also measure the torch.compile'd "
                  "transformers step, the baseline its ratio names (else the eager one).")
flags.DEFINE_integer("profile_steps", 0, "train_step: then profile this many steps of ours and "
                     "of the compiled baseline (where the time goes, by category).")
flags.DEFINE_integer("seed", 0, "Seed of the random tokens and parameters.")
flags.DEFINE_list("meshes", ["1x1x1"], "memory: meshes as DATAxFSDPxTENSOR.")
flags.DEFINE_string("model_preset", None, "memory: a lineage.models.gpt.PRESETS name in place "
                    "of the config's model (e.g. gpt3_175b).")
flags.DEFINE_string("few_shot_task", "sst2", "few_shot: a lineage.eval.few_shot_tasks name "
                    "(sst2 and rte also run lm-evaluation-harness).")
flags.DEFINE_integer("few_shot_k", 4, "few_shot: demonstrations per prompt.")
flags.DEFINE_integer("few_shot_examples", 64, "few_shot: test examples scored per call.")
flags.DEFINE_bool("compile", False, "memory: also compile the train step for activation and "
                  "temporary memory (needs as many local devices as the mesh).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every phase at INFO
  if FLAGS.what == "report":
    if not FLAGS.results:
      raise app.UsageError("--what=report reads --results=FILE")
    with open(FLAGS.report_to, "w") as f:
      f.write(report.markdown(report.read(FLAGS.results)))
    print(f"wrote {FLAGS.report_to}")
    return
  if FLAGS.config is None:
    raise app.UsageError("--config=configs/gpt2.py:PRESET is required")
  cfg = FLAGS.config
  gpt2_config.resolve_dtype(cfg)
  with report.Machine() as machine:
    result = measure(cfg)
  print(json.dumps(result), flush=True)
  if FLAGS.results:
    command = " ".join(["python -m experiments.bench"] + sys.argv[1:])
    report.append(FLAGS.results, {"command": command,
                                  "config": cfg.to_dict(), "machine": machine.info,
                                  "result": result})


def measure(cfg):
  """Runs --what on the config, prints a line for people and returns the JSON result."""
  if FLAGS.what == "train_step":
    result = gpt2_bench.bench_train_step(cfg, FLAGS.steps, FLAGS.warmup, FLAGS.seed,
                                         FLAGS.pairs, FLAGS.torch_compile, FLAGS.profile_steps)
    print(f"{result['tokens_per_sec']:,.0f} tok/s, {result['step_seconds_median']:.3f} s/step, "
          f"{result['model_gflops_per_sec']:.1f} model GFLOP/s of a "
          f"{result['peak_gflops_per_sec']:.1f} GFLOP/s peak: MFU {100 * result['mfu']:.1f}%; "
          f"{result['ratio']:.2f}x {result['baseline']}")
    for category, row in report.profile_rows(result.get("profile")):
      print(f"{category:>36}: " + ", ".join(f"{name} {1e3 * s:,.0f} ms" for name, s in row))
  elif FLAGS.what == "data":
    result = gpt2_bench.bench_data(cfg, FLAGS.steps, FLAGS.warmup, FLAGS.seed, FLAGS.pairs)
    print(f"{result['tokens_per_sec']:,.0f} tok/s from the {cfg.data.name} pipeline "
          f"({cfg.data.tokenizer} tokenizer, {cfg.data.worker_count} workers)")
  elif FLAGS.what == "attention":
    result = attention_bench.bench_attention(
        cfg, [int(n) for n in FLAGS.seq_lens], FLAGS.batch, FLAGS.steps, FLAGS.warmup,
        FLAGS.seed, [int(n) for n in FLAGS.head_dims], FLAGS.pallas_tiles, FLAGS.pairs)
    for row in result["results"]:
      versus = "" if row["baseline"] else f", {row['ratio']:.2f}x {result['baseline']}"
      print(f"{row['implementation']:>14} at {row['seq_len']:>5} tokens, head_dim "
            f"{row['head_dim']}: {1e3 * row['seconds_median']:.2f} ms forward+backward, "
            f"{row['tflops_per_sec']:.3g} TFLOP/s{versus}, gradient error "
            f"{row['grad_rel_error']:.1e}, {row['temp_bytes'] / 2**20:.1f} MiB temporaries")
  elif FLAGS.what == "numerics":
    result = gpt2_bench.bench_numerics(cfg, FLAGS.steps, FLAGS.seed)
    print(f"{FLAGS.steps} steps: losses of the fused and optax's cross-entropy differ by at most "
          f"{result['max_abs_loss_difference']:.1e}; step time ratio {result['ratio']:.2f}x")
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
  elif FLAGS.what == "few_shot":
    result = few_shot_bench.bench_few_shot(cfg, FLAGS.few_shot_task, FLAGS.few_shot_k,
                                           FLAGS.few_shot_examples, FLAGS.batch, FLAGS.pairs,
                                           FLAGS.warmup, FLAGS.seed)
    versus = ", ".join(f"{b['ratio']:.2f}x {name}" for name, b in result["baselines"].items())
    print(f"{result['task']} at K={result['k']}: {result['examples_per_sec']:.1f} examples/s "
          f"({versus}); accuracy {result['accuracy']}, lm-eval {result['lm_eval_accuracy']}")
  elif FLAGS.what == "dalle_sampling":
    result = dalle_bench.bench_dalle_sampling(cfg, FLAGS.batch, FLAGS.pairs, FLAGS.seed)
    print(f"DALL-E, {result['batch']} images of {result['image_len']} tokens: "
          f"{result['images_per_sec']:.1f} images/s with the KV cache, "
          f"{result['baselines']['no_kv_cache']['images_per_sec']:.2f} without "
          f"({result['ratio']:.1f}x)")
  else:
    result = gpt2_bench.bench_decode(cfg, FLAGS.prompt_len, FLAGS.new_tokens, FLAGS.batch,
                                     FLAGS.steps, FLAGS.warmup, FLAGS.seed, FLAGS.pairs)
    print(f"{result['new_tokens_per_sec']:,.1f} new tok/s at batch {result['batch']}, "
          f"{result['generate_seconds_median']:.3f} s per generate call")
  return result


if __name__ == "__main__":
  sys.exit(app.run(main))
