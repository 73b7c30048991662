"""GPT-2's train step, input pipeline, training memory and KV-cache decoding, measured through
the same builders a run uses (task.build, lineage.train.loop, lineage.decode), so a number
here is what a run would get, each against a baseline measured in the same run
(lineage.bench.torch_baselines; the train step's demand for the pipeline; optax's loss for
the fused cross-entropy). experiments/bench.py is their flags."""

import contextlib
import dataclasses
import statistics
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lineage import decode
from lineage.bench import profile as profile_lib
from lineage.bench import timing, torch_baselines
from lineage.milestones.gpt1 import pretrain
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


@contextlib.contextmanager
def _our_train_step(cfg, seed):
  """Our jitted train step as step(i) -> loss on batch i mod 4 of a few random batches already
  on the device (host-to-device copies are not timed), with the task, the initial parameters
  (each step donates the state), the batches on the host, and compiled() -> its executable."""
  task = gpt2_task.build(cfg).task
  trainer = loop.build_trainer(cfg, task)
  with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    state = trainer.init_state(jax.random.PRNGKey(cfg.train.seed))
    host_batches = list(random_batches(cfg, 4, seed))
    batches = [loop.device_batch(b, trainer.mesh) for b in host_batches]

    def step(i):
      nonlocal state
      state, metrics = trainer.train_step(state, batches[i % len(batches)])
      return metrics["loss"]
    yield types.SimpleNamespace(task=task, step=step, initial_params=jax.device_get(state.params),
                                host_batches=host_batches, compiled=lambda: trainer.train_step.lower(
                                    trainer.abstract_state, batches[0]).compile())


def _with_baselines(result, rounds, ours, tokens, primary):
  """`result` plus each baseline's tokens/s and ratio, and the primary one's ratio on top."""
  baselines = timing.compare(rounds, ours, tokens)
  return {**result, "baseline": primary, "ratio": baselines[primary]["ratio"],
          "pairs": len(rounds[ours]), "baselines": baselines}


def bench_train_step(cfg, steps, warmup, seed=0, pairs=3, compiled=True, profile_steps=0):
  """Tokens/s and MFU of the full train step (forward, backward, AdamW), and its ratio to the
  same step of a transformers GPT2LMHeadModel with the same weights, trained with torch's
  AdamW: eager, and (`compiled`) under torch.compile, the baseline the ratio names.

  Ours and the baselines alternate in `pairs` rounds of `steps` steps (see lineage.bench.timing).
  Each side's first loss is reported: the same weights on the same batch give the same number.
  `profile_steps` > 0 (with `compiled`) then profiles that many steps of ours and of the
  compiled baseline: where the time goes, by category.
  """
  model_cfg = pretrain.model_config(cfg)
  if profile_steps:
    import torch._inductor.config  # pylint: disable=import-outside-toplevel
    torch._inductor.config.cpp.enable_kernel_profile = True  # fused kernels under their names
  with _our_train_step(cfg, seed) as ours:
    task, batches = ours.task, ours.host_batches
    torch_steps = {"transformers": torch_baselines.train_step(
        torch_baselines.hf_model(model_cfg, ours.initial_params), cfg.train, compiled=False)}
    if compiled:
      torch_steps["transformers_compiled"] = torch_baselines.train_step(
          torch_baselines.hf_model(model_cfg, ours.initial_params), cfg.train, compiled=True)
    first_loss = {"lineage": float(ours.step(0))}
    first_loss.update({name: step(batches[0]) for name, step in torch_steps.items()})
    candidates = {"lineage": ours.step}
    candidates.update({name: lambda i, step=step: step(batches[i % len(batches)])
                       for name, step in torch_steps.items()})
    rounds = timing.alternating(candidates, pairs, steps, warmup)
    profile = (_profile(ours, candidates["transformers_compiled"], profile_steps,
                        model_cfg.vocab_size) if compiled and profile_steps else None)
  peak = metrics_lib.peak_flops_per_device(cfg.get("peak_flops", 0.0)) * jax.device_count()
  seconds = statistics.median(rounds["lineage"])
  tokens_per_sec = task.tokens_per_batch / seconds
  model_flops = tokens_per_sec * task.flops_per_token
  result = {"what": "train_step", "tokens_per_sec": tokens_per_sec,
            "mfu": model_flops / peak, "step_seconds_median": seconds,
            "model_gflops_per_sec": model_flops / 1e9, "peak_gflops_per_sec": peak / 1e9,
            "flops_per_token": task.flops_per_token, "tokens_per_step": task.tokens_per_batch,
            "first_loss": first_loss, "torch_threads": torch_baselines.torch_threads(),
            "devices": jax.device_count(), "backend": jax.default_backend()}
  if profile:
    result["profile"] = profile
  primary = "transformers_compiled" if compiled else "transformers"
  return _with_baselines(result, rounds, "lineage", task.tokens_per_batch, primary)


def bench_decode(cfg, prompt_len, new_tokens, batch, steps, warmup, seed=0, pairs=3):
  """New tokens/s (summed over the batch) of greedy KV-cache generation with no stop tokens,
  and its ratio to transformers' generate (greedy, KV cache) on the same weights and prompts,
  alternating in `pairs` rounds. `tokens_agree` is the share of new tokens both chose."""
  model_cfg = pretrain.model_config(cfg)
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
  hf_generate = torch_baselines.greedy_generate(torch_baselines.hf_model(model_cfg, params),
                                                prompts, new_tokens)
  agree = float(np.mean(np.array(generated) == hf_generate()))
  rounds = timing.alternating({"lineage": generate, "transformers": lambda i: hf_generate()},
                              pairs, steps, warmup)
  seconds = statistics.median(rounds["lineage"])
  result = {"what": "decode", "tokens_per_sec": batch * new_tokens / seconds,
            "new_tokens_per_sec": batch * new_tokens / seconds, "batch": batch,
            "prompt_len": prompt_len, "new_tokens": new_tokens,
            "generate_seconds_median": seconds, "tokens_agree": agree,
            "torch_threads": torch_baselines.torch_threads(), "backend": jax.default_backend()}
  return _with_baselines(result, rounds, "lineage", batch * new_tokens, "transformers")


def bench_data(cfg, steps, warmup, seed=0, pairs=3):
  """Tokens/s the training input pipeline delivers (tokenize, pack, batch) for the config, and
  its ratio to the train step's demand: the same config's train step, alternating with it. Above
  1, the pipeline keeps up (on one host process, without workers overlapping the step)."""
  train_data = gpt2_task.build(cfg).task.train_data
  with _our_train_step(cfg, seed) as ours:
    rounds = timing.alternating({"pipeline": lambda i: next(train_data),
                                 "train_step": ours.step}, pairs, steps, warmup)
  tokens = cfg.train.batch_size * cfg.data.seq_len
  seconds = statistics.median(rounds["pipeline"])
  result = {"what": "data", "tokens_per_sec": tokens / seconds, "batch_seconds_median": seconds,
            "dataset": cfg.data.name, "tokenizer": cfg.data.tokenizer,
            "worker_count": cfg.data.worker_count}
  return _with_baselines(result, rounds, "pipeline", tokens, "train_step")


# Categories of where a train step's time goes, for ours (by the jax/flax call path of each XLA
# operation) and for transformers (by operator or fused-kernel name): first match wins.
PROFILE_RULES = {
    "lineage": [("LM head matmuls", r"wte\.attend"),
                ("cross-entropy over the vocabulary", r"cross_entropy"),
                ("attention: scores, softmax, values", r"/attn/(?!c_attn|c_proj)"),
                ("projections and MLP", r"/attn/c_|/mlp/"),
                ("layer norms", r"/ln_"),
                ("AdamW, clipping", r"^jit\(train_step\)/(?!.*GPT)")],
    "transformers": [("LM head matmuls", r"^lm_head:"),
                     ("cross-entropy over the vocabulary", r"log_softmax|nll_loss|cross_entropy"),
                     ("attention: scores, softmax, values",
                      r"scaled_dot_product|flash_attention|efficient_attention|bmm"),
                     ("projections and MLP", r"gelu|tanh|aten::(mm|addmm|matmul|linear)$"),
                     ("layer norms", r"layer_norm"),
                     ("AdamW, clipping",
                      r"(?i)_foreach|adam|optimizer|clip|aten::norm|linalg_vector_norm")],
}


def _profile(ours, torch_step, steps, vocab_size):
  """Seconds per step by category (PROFILE_RULES) and the costliest operations, ours against
  the torch.compile'd baseline, over `steps` profiled steps of each."""
  ops = {"lineage": profile_lib.jax_op_seconds(ours.compiled(), ours.step, steps),
         "transformers_compiled": profile_lib.torch_op_seconds(torch_step, steps, vocab_size)}
  rules = {"lineage": PROFILE_RULES["lineage"],
           "transformers_compiled": PROFILE_RULES["transformers"]}
  return {"steps": steps,
          "categories": {name: profile_lib.categorise(ops[name], rules[name]) for name in ops},
          "top_ops": {name: sorted(ops[name].items(), key=lambda item: -item[1])[:8]
                      for name in ops}}


def _reference_loss_fn(model):
  """lm_loss_fn as it was before the fused cross-entropy: optax's loss and an argmax."""
  def loss_fn(params, batch, rng, deterministic):
    logits = model.apply({"params": params}, batch["inputs"], deterministic=deterministic,
                         rngs=None if deterministic else {"dropout": rng})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    correct = logits.argmax(-1) == batch["targets"]
    return losses.sum(), {"weight": jnp.float32(losses.size), "accuracy": correct.sum()}
  return loss_fn


def bench_numerics(cfg, steps, seed=0):
  """The fused cross-entropy against optax's (lm_loss.cross_entropy, and the loss before it):
  `steps` train steps of each from the same initial parameters on the same random batches,
  alternating step by step; the largest difference of their losses, and optax's step time
  over ours per step (the speed the fused loss gained)."""
  task = gpt2_task.build(cfg).task
  reference = dataclasses.replace(task, loss_fn=_reference_loss_fn(gpt.GPT(
      pretrain.model_config(cfg))))
  trainers = {"lineage": loop.build_trainer(cfg, task),
              "optax_cross_entropy": loop.build_trainer(cfg, reference)}
  losses = {name: [] for name in trainers}
  with jax.set_mesh(trainers["lineage"].mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    batches = [loop.device_batch(b, trainers["lineage"].mesh)
               for b in random_batches(cfg, steps, seed)]
    states = {name: trainer.init_state(jax.random.PRNGKey(cfg.train.seed))
              for name, trainer in trainers.items()}

    def stepper(name):
      def step(i):
        states[name], metrics = trainers[name].train_step(states[name], batches[i])
        losses[name].append(metrics["loss"])
        return metrics["loss"]
      return step
    rounds = timing.alternating({name: stepper(name) for name in trainers}, steps, 1, 0)
  rounds = {name: seconds[1:] for name, seconds in rounds.items()}  # the first one compiles
  curves = {name: [float(loss) for loss in values] for name, values in losses.items()}
  difference = max(abs(a - b) for a, b in zip(*curves.values()))
  result = {"what": "numerics", "steps": steps, "max_abs_loss_difference": difference,
            "first_loss": curves["lineage"][0], "last_loss": curves["lineage"][-1],
            "tokens_per_sec": task.tokens_per_batch / statistics.median(rounds["lineage"]),
            "backend": jax.default_backend()}
  return _with_baselines(result, rounds, "lineage", task.tokens_per_batch, "optax_cross_entropy")


def bench_memory(cfg, meshes, model_preset=None, compile=False):
  """Per-device parameter, optimizer and (compiled) temporary bytes of training on each mesh."""
  model_cfg = gpt.PRESETS[model_preset] if model_preset else pretrain.model_config(cfg)
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
