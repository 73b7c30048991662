"""GPT-2 124M on a GPU for experiments/gpu_check.sh: the train step's MFU and decoding against
transformers, built from lineage.models.gpt and lineage.train without the GPT-2 task, whose
data pipeline (TFDS, grain) the GPU machine lacks.

The train step is lineage.train.step's with the 117m preset's optimizer, on one device, on
random tokens already on the device, so the number is the model's and the optimizer's.
Decoding exports the same random weights through lineage.interop.hf_gpt2 and times
transformers' generate with a static KV cache beside ours, in the same process.
"""

import dataclasses
import statistics
import tempfile
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lineage import decode
from lineage.bench import gpu_check, timing
from lineage.interop import hf_gpt2
from lineage.models import gpt
from lineage.train import lm_loss, optim
from lineage.train import metrics as metrics_lib
from lineage.train import step as step_lib

MFU_GOAL = 0.5
# configs/gpt2.py's 117m optimizer (configs import ml_collections, absent on the GPU machine).
TRAIN_117M = types.SimpleNamespace(lr=6e-4, warmup_steps=2000, steps=600_000, schedule="cosine",
                                   min_lr_ratio=0.1, b1=0.9, b2=0.95, eps=1e-8,
                                   weight_decay=0.1, grad_clip=1.0, mu_dtype="")
# Off a GPU (smoke runs): a model small enough to compile and run in seconds on a CPU.
TOY = gpt.GPTConfig(vocab_size=256, context=64, num_layers=2, num_heads=2, embed_dim=64,
                    mlp_dim=256)


def _init_fn(model_cfg):
  """Parameters from a one-token call through the xla attention: they do not depend on the
  implementation, and the Mosaic GPU kernel refuses sequences shorter than its tiles."""
  model = gpt.GPT(dataclasses.replace(model_cfg, attention_impl="xla"))
  return lambda rng: nn.unbox(model.init(rng, jnp.zeros((1, 1), jnp.int32))["params"])


def _random_batches(vocab_size, batch, seq_len, count, seed=0):
  rng = np.random.default_rng(seed)
  tokens = [rng.integers(0, vocab_size, (batch, seq_len + 1), dtype=np.int32)
            for _ in range(count)]
  return [{"inputs": jnp.asarray(t[:, :-1]), "targets": jnp.asarray(t[:, 1:])} for t in tokens]


def _fill_batch(compiled, probe, max_batch, headroom=0.85):
  """The largest multiple of 8 (at most max_batch) whose compiled footprint, scaled from the
  probe batch's temporaries, fits `headroom` of the device's memory; the probe off a GPU."""
  stats = jax.devices()[0].memory_stats() or {}
  if "bytes_limit" not in stats:
    return probe
  memory = compiled.memory_analysis()
  fixed = (memory.argument_size_in_bytes + memory.output_size_in_bytes
           - memory.alias_size_in_bytes)
  per_example = memory.temp_size_in_bytes / probe
  fits = int((headroom * stats["bytes_limit"] - fixed) / per_example) // 8 * 8
  return max(probe, min(max_batch, fits))


def _is_out_of_memory(error):
  return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def build_train_step(model_cfg):
  """(init_state(rng), the jitted train step donating its state, FLOPs per token)."""
  init = _init_fn(model_cfg)
  tx, _ = optim.make_optimizer(TRAIN_117M)

  def init_state(rng):
    params = init(rng)
    return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=tx.init(params), rng=rng)
  flops_per_token = gpt.flops_per_token(model_cfg, jax.eval_shape(init, jax.random.PRNGKey(0)))
  step = jax.jit(step_lib.make_train_step(lm_loss.lm_loss_fn(gpt.GPT(model_cfg)), tx),
                 donate_argnums=0)
  return init_state, step, flops_per_token


def train_step_throughput(model_cfg, seq_len, batch, max_batch, steps, warmup, seed=0,
                          fill=True):
  """Tokens/s and MFU of the full train step, with the first and last losses to show it
  trains on sane numbers. With `fill`, `batch` is a probe from whose compiled memory the
  batch that fills the device is chosen; an out-of-memory error halves the batch."""
  init_state, step, flops_per_token = build_train_step(model_cfg)
  key = jax.random.PRNGKey(seed)
  abstract_state = jax.eval_shape(init_state, key)
  executables = {}

  def compiled_at(batch):
    if batch not in executables:
      tokens = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32)
      executables[batch] = step.lower(abstract_state, {"inputs": tokens,
                                                       "targets": tokens}).compile()
    return executables[batch]
  if fill:
    batch = _fill_batch(compiled_at(batch), batch, max_batch)
  out_of_memory = []
  while True:
    try:
      compiled = compiled_at(batch)
      batches = _random_batches(model_cfg.vocab_size, batch, seq_len, 4, seed)
      state = jax.jit(init_state)(key)
      losses = []

      def one_step(i):
        nonlocal state
        state, metrics = compiled(state, batches[i % len(batches)])
        losses.append(metrics["loss"])
        return state
      seconds = statistics.median(timing.timed(one_step, steps, warmup))
      break
    except Exception as error:
      if not _is_out_of_memory(error) or batch <= 8:
        raise
      out_of_memory.append(batch)
      executables.pop(batch, None)
      batch = max(8, batch // 2 // 8 * 8)
  tokens_per_sec = batch * seq_len / seconds
  peak = metrics_lib.peak_flops_per_device()
  return {"batch": batch, "seq_len": seq_len, "tokens_per_sec": tokens_per_sec,
          "mfu": tokens_per_sec * flops_per_token / peak, "step_seconds_median": seconds,
          "flops_per_token": flops_per_token, "peak_tflops_per_sec": peak / 1e12,
          "loss_first": float(losses[0]), "loss_last": float(losses[-1]),
          "out_of_memory_at": out_of_memory}


def check_train_step(run):
  """GPT-2 124M (bf16 compute, fp32 master weights and AdamW, the preset's dropout, context
  1024) with cudnn, then pallas attention at the batch cudnn's memory chose; the goal is 50%
  MFU."""
  if not (gpu_check.on_gpu() or run.smoke):
    return run.update(status="no GPU")
  if gpu_check.on_gpu():
    base = dataclasses.replace(gpt.PRESETS["gpt2_117m"], dtype="bfloat16")
    implementations, batch, sizes = ("cudnn", "pallas"), 8, dict(max_batch=128, steps=10,
                                                                  warmup=3)
  else:
    base, implementations, batch = TOY, ("xla",), 2
    sizes = dict(max_batch=2, steps=2, warmup=1)
  runs = {}
  run.update(status="running", model="gpt2_117m" if gpu_check.on_gpu() else "toy",
             dtype=base.dtype, dropout=base.dropout, vocab_size=base.vocab_size, goal=MFU_GOAL,
             runs=runs)
  chosen = None
  for implementation in implementations:
    model_cfg = dataclasses.replace(base, attention_impl=implementation)
    try:
      runs[implementation] = train_step_throughput(model_cfg, base.context, chosen or batch,
                                                   fill=chosen is None, **sizes)
      chosen = chosen or runs[implementation]["batch"]
    except Exception as error:  # the other implementation still runs
      runs[implementation] = {"error": f"{type(error).__name__}: {error}"[:2000]}
    run.update(runs=runs)
  measured = [r for r in runs.values() if "mfu" in r]
  sane = all(np.isfinite([r["loss_first"], r["loss_last"]]).all() for r in measured)
  if len(measured) < len(runs) or not sane:
    status = "fail"
  elif not gpu_check.on_gpu():
    status = "ran"
  else:
    status = "pass" if max(r["mfu"] for r in measured) >= MFU_GOAL else "below goal"
  run.update(status=status)


def _hf_generate(model, torch, prompts, new_tokens, eot_id, compile):
  """transformers' greedy generate with a static cache, which on a GPU it compiles with
  torch.compile unless told not to; `new_tokens` exactly (the end-of-text token cannot stop
  it)."""
  ids = torch.tensor(prompts, device=model.device)
  with torch.inference_mode():
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         cache_implementation="static", disable_compile=not compile,
                         pad_token_id=eot_id)
  if model.device.type == "cuda":
    torch.cuda.synchronize()
  if out.shape[1] != ids.shape[1] + new_tokens:
    raise RuntimeError(f"transformers generated {out.shape[1] - ids.shape[1]} tokens, not "
                       f"{new_tokens}")
  return out


def _timed_seconds(fn, steps):
  """(first call's seconds, the median of `steps` more): compilation shows in the first."""
  first = timing.timed(fn, 1, 0)[0]
  return first, statistics.median(timing.timed(fn, steps, 0))


def _hf_compiled(run, rows, generate, new_tokens, steps):
  """Adds transformers' torch.compiled generate to each row while the check has time."""
  for row in rows:
    if run.seconds_left() < 90:  # a torch.compile of GPT-2 takes about a minute
      row["hf_compiled"] = f"skipped: {run.seconds_left():.0f} s left"
      continue
    try:
      first, seconds = _timed_seconds(lambda i: generate(row["batch"]), steps)
    except Exception as error:  # e.g. no C compiler for torch.compile: the eager rows stand
      row["hf_compiled"] = f"error: {type(error).__name__}: {error}"[:1000]
      run.update(rows=rows)
      continue
    row.update(hf_compiled_tokens_per_sec=row["batch"] * new_tokens / seconds,
               hf_compiled_first_call_seconds=first)
    row["speedup_over_compiled"] = row["tokens_per_sec"] / row["hf_compiled_tokens_per_sec"]
    run.update(rows=rows)


def check_decode(run):
  """Greedy decoding of 512 new tokens after a 16-token prompt at batch 1 and 64: ours
  (lineage.decode, bf16 compute) against transformers' generate with a static cache (bf16
  weights), eager, then torch.compiled (generate's own choice on a GPU) while time allows.
  The same random weights go through our HF export; fp32 logits of both show they match."""
  import torch
  import transformers
  if not (gpu_check.on_gpu() or run.smoke):
    return run.update(status="no GPU")
  if gpu_check.on_gpu():
    model_cfg = dataclasses.replace(gpt.PRESETS["gpt2_117m"], dtype="bfloat16", dropout=0.0)
    batches, prompt_len, new_tokens, device = (1, 64), 16, 512, "cuda"
    steps, hf_steps = 3, 2  # transformers' eager generate takes seconds a call
  else:
    model_cfg = dataclasses.replace(TOY, dropout=0.0)
    batches, prompt_len, new_tokens, device, steps, hf_steps = (1, 2), 8, 8, "cpu", 1, 1
  params = jax.jit(_init_fn(model_cfg))(jax.random.PRNGKey(0))
  with tempfile.TemporaryDirectory(prefix="gpu_check_hf_") as export_dir:
    hf_gpt2.export_hf(model_cfg, params, export_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(export_dir).to(device).eval()
  prompt = np.random.default_rng(0).integers(0, model_cfg.vocab_size, (1, prompt_len))
  with jax.default_matmul_precision("float32"):  # not TF32, which jax allows by default on GPU
    ours = gpt.GPT(dataclasses.replace(model_cfg, dtype="float32")).apply(
        {"params": params}, jnp.asarray(prompt))
  with torch.inference_mode():
    theirs = hf(torch.tensor(prompt, device=device)).logits.float().cpu().numpy()
  logit_difference = float(np.abs(np.asarray(ours) - theirs).max())
  same_weights = logit_difference < 1e-3 * max(1.0, float(np.abs(theirs).max()))
  hf = hf.to(torch.bfloat16) if model_cfg.dtype == "bfloat16" else hf
  generator = decode.Generator(*gpt.decoding(model_cfg), model_cfg.context)
  greedy, eot_id = decode.Sampling(temperature=0), model_cfg.vocab_size - 1
  rows = []
  run.update(status="running", model="gpt2_117m" if gpu_check.on_gpu() else "toy",
             dtype=model_cfg.dtype, prompt_len=prompt_len, new_tokens=new_tokens,
             max_abs_logit_difference=logit_difference, transformers=transformers.__version__,
             torch=torch.__version__, rows=rows)
  prompts = {b: np.random.default_rng(b).integers(0, model_cfg.vocab_size,
                                                  (b, prompt_len)).tolist() for b in batches}
  for batch in batches:
    def ours_generate(i):
      generated = generator.generate(params, prompts[batch], new_tokens, sampling=greedy,
                                     bucket=prompt_len)
      if any(len(g) != new_tokens for g in generated):
        raise RuntimeError("a sequence stopped early; the benchmark expects no stop tokens")
      return generated
    row = {"batch": batch}
    rows.append(row)
    for name, fn, repeats in (("", ours_generate, steps), ("hf_", lambda i: _hf_generate(
        hf, torch, prompts[batch], new_tokens, eot_id, compile=False), hf_steps)):
      first, seconds = _timed_seconds(fn, repeats)
      row.update({f"{name}tokens_per_sec": batch * new_tokens / seconds,
                  f"{name}first_call_seconds": first})
      run.update(rows=rows)
    row["speedup"] = row["tokens_per_sec"] / row["hf_tokens_per_sec"]
  if device == "cuda":
    _hf_compiled(run, rows, lambda batch: _hf_generate(hf, torch, prompts[batch], new_tokens,
                                                       eot_id, compile=True), new_tokens,
                 hf_steps)
  status = "fail" if not same_weights else "pass" if gpu_check.on_gpu() else "ran"
  run.update(status=status)
