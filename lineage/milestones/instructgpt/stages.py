"""InstructGPT's training stages, each a run of the generic loop, chained by init_from:
SFT (from a GPT checkpoint or scratch), the reward model (from the SFT run), PPO (policy from
the SFT run, value function from the reward model) and DPO (from the SFT run)."""

import copy
import functools
import json
import os
import time

import jax
import numpy as np

from lineage.milestones.gpt1 import pretrain
from lineage.milestones.instructgpt import data as data_lib
from lineage.models import config as model_config_lib
from lineage.models import gpt
from lineage.rlhf import dpo, kl, layout, ppo, reward, sft
from lineage.train import loop
from lineage.train import metrics as metrics_lib
from lineage.train import weights

SFT_IMPORT = "sft"  # PPO's init_from=sft:DIR: the policy from DIR, the value from the RM


def model_config(cfg):
  return model_config_lib.from_config(gpt.GPTConfig, cfg.model)


def stage_config(cfg, stage, train):
  """A copy of cfg for one stage: its name, and its training keys in train.*."""
  out = copy.deepcopy(cfg)
  out.stage = stage
  out.train.update(**train)
  return out


def write_summary(workdir, summary):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def _padded_batches(arrays, batch_size, weight_keys):
  """Every row once, in batches of `batch_size`; the last is filled with copies of row 0
  whose weights (`weight_keys`) are zero, so they count for nothing."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    real = idx < n
    batch = {k: v[np.where(real, idx, 0)] for k, v in arrays.items()}
    for key in weight_keys:
      batch[key] = batch[key] * real.reshape(-1, *([1] * (batch[key].ndim - 1)))
    yield batch


def _split(items, fraction=0.1):
  cut = max(1, int(len(items) * fraction))
  return items[cut:], items[:cut]


# --- SFT -------------------------------------------------------------------------------------

def run_sft(cfg, workdir):
  """Supervised fine-tuning on the demonstrations (a tenth held out for the eval loss)."""
  data = data_lib.load(cfg)
  model_cfg = model_config(cfg)
  eot = data.tokenizer.eot_id
  train_demos, eval_demos = _split(data.demonstrations)
  train_examples, skipped = sft.examples(train_demos, eot)
  eval_examples, eval_skipped = sft.examples(eval_demos, eot)
  packed = sft.pack(train_examples, cfg.data.seq_len)
  eval_packed = sft.pack(eval_examples, cfg.data.seq_len)
  stage = stage_config(cfg, "sft", cfg.sft)
  bs = stage.train.batch_size
  task = pretrain.gpt_task(model_cfg, tokens_per_batch=bs * cfg.data.seq_len)
  task.train_data = sft.EpochBatches(packed.arrays, bs, stage.train.seed)
  task.eval_data = lambda: _padded_batches(eval_packed.arrays, bs, ["weights"])
  _, summary = loop.train(stage, workdir, task)
  if skipped + eval_skipped:
    metrics_lib.console(f"skipped {skipped + eval_skipped} demonstrations with an empty "
                        "response")
  return write_summary(workdir, {**summary, "demonstrations": len(train_demos),
                                 "packed_rows": len(packed), "skipped_empty":
                                 skipped + eval_skipped, "truncated": data.truncated})


# --- reward model ----------------------------------------------------------------------------

def rm_task(model_cfg):
  model = reward.RewardModel(model_cfg)
  return loop.Task(init_params=functools.partial(reward.init_params, model),
                   loss_fn=reward.loss_fn(model))


def demonstration_rows(cfg, data):
  prompts = [p for p, _ in data.demonstrations]
  responses = [list(r) + [data.tokenizer.eot_id] for _, r in data.demonstrations]
  return layout.rows(prompts, responses, cfg.data.prompt_len, cfg.data.response_len)


def run_rm(cfg, workdir):
  """The reward model on the training comparisons, its held-out pair accuracy by the loop's
  evaluation hook; summary: that accuracy, the normalising bias, what was left out."""
  data = data_lib.load(cfg)
  model_cfg = model_config(cfg)
  d, eot = cfg.data, data.tokenizer.eot_id
  train, counts = reward.encode_comparisons(data.comparisons, d.prompt_len, d.response_len, eot)
  held_out, eval_counts = reward.encode_comparisons(data.eval_comparisons, d.prompt_len,
                                                    d.response_len, eot)
  stage = stage_config(cfg, "rm", cfg.rm)
  bs = stage.train.batch_size
  model = reward.RewardModel(model_cfg)
  task = rm_task(model_cfg)
  task.train_data = sft.EpochBatches(train, bs, stage.train.seed)
  task.evaluate = reward.evaluator(model, held_out, bs)
  task.tokens_per_batch = int(bs * np.prod(train["tokens"].shape[1:]))
  state, summary = loop.train(stage, workdir, task)
  _, shift = reward.normalised(model, state.params, demonstration_rows(cfg, data), bs)
  for name, c in (("training", counts), ("held-out", eval_counts)):
    if c["identical_pairs"] or c["skipped"]:
      metrics_lib.console(f"{name} comparisons: {c['identical_pairs']} pairs of identical "
                          f"responses dropped, {c['skipped']} comparisons left with no pair")
  return write_summary(workdir, {
      **summary, "comparisons": len(train["tokens"]), "held_out": len(held_out["tokens"]),
      "responses_per_prompt": int(train["tokens"].shape[1]), "normalising_bias": -shift,
      "dropped": {"training": counts, "held_out": eval_counts}, "truncated": data.truncated})


# --- loading the stages' parameters ----------------------------------------------------------

def _stage_of(run_dir):
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{run_dir} holds no run (no config.json); train it first")
  with open(path) as f:
    return json.load(f).get("stage", "")


def ppo_params(cfg, run_dir, step=None):
  """{"policy", "value"} of a PPO run."""
  return weights.restore_params(cfg, run_dir, ppo_task(model_config(cfg)), step)


def policy_params(cfg, run_dir):
  """The policy of an SFT, DPO or PPO run (or a GPT pre-training run): DIR or DIR@STEP."""
  run_dir, _, step = run_dir.partition("@")
  step = int(step) if step else None
  if _stage_of(run_dir) == "ppo":
    return ppo_params(cfg, run_dir, step)["policy"]
  return weights.restore_params(cfg, run_dir, pretrain.gpt_task(model_config(cfg)), step)


def reward_params(cfg, run_dir, data):
  """The reward model of an rm run, its bias set so the demonstrations score 0 on average."""
  if not run_dir:
    raise ValueError("this mode needs the reward model: --config.ppo.reward_model=DIR (an "
                     "--mode=rm run)")
  if _stage_of(run_dir) != "rm":
    raise ValueError(f"--config.ppo.reward_model={run_dir} is not a reward-model run "
                     "(--mode=rm)")
  model_cfg = model_config(cfg)
  params = weights.restore_params(cfg, run_dir, rm_task(model_cfg))
  return reward.normalised(reward.RewardModel(model_cfg), params, demonstration_rows(cfg, data),
                           cfg.eval.batch_size)[0]


# --- PPO -------------------------------------------------------------------------------------

def ppo_task(model_cfg, settings=None):
  return loop.Task(init_params=functools.partial(ppo.init_params, model_cfg, model_cfg),
                   loss_fn=ppo.loss_fn(model_cfg, model_cfg, settings or ppo.Settings()))


def ppo_settings(cfg):
  p, d = cfg.ppo, cfg.data
  return ppo.Settings(rollout_batch=p.rollout_batch, minibatch=p.minibatch, epochs=p.epochs,
                      prompt_len=d.prompt_len, max_new_tokens=d.response_len,
                      clip_ratio=p.clip_ratio, value_clip=p.value_clip, vf_coef=p.vf_coef,
                      gamma=p.gamma, lam=p.lam, no_end_penalty=p.no_end_penalty,
                      ptx_coef=p.ptx_coef)


def _ptx_batches(cfg, data, seed):
  """PPO-ptx's pretraining batches: the demonstrations read as plain text, every token."""
  texts = [list(p) + list(r) + [data.tokenizer.eot_id] for p, r in data.demonstrations]
  packed = sft.pack([(t, [1] * len(t)) for t in texts], cfg.data.seq_len)
  return sft.EpochBatches(packed.arrays, cfg.ppo.ptx_batch, seed)


def _check_ppo_steps(train, settings):
  updates = settings.updates_per_rollout
  for key in ("steps", "checkpoint_every"):
    if train[key] % updates:
      raise ValueError(f"ppo.train.{key}={train[key]} is not a multiple of the updates per "
                       f"rollout ({updates} = epochs * rollout_batch / minibatch): a checkpoint "
                       "must fall between rollouts")


def run_ppo(cfg, workdir):
  """PPO from the SFT run (init_from) against the reward model (ppo.reward_model)."""
  if not cfg.init_from:
    raise ValueError("--mode=ppo needs --config.init_from=DIR, the SFT run")
  data = data_lib.load(cfg)
  model_cfg = model_config(cfg)
  settings = ppo_settings(cfg)
  _check_ppo_steps(cfg.ppo.train, settings)
  stage = stage_config(cfg, "ppo", cfg.ppo.train)
  stage.train.batch_size = settings.minibatch
  stage.init_from = f"{SFT_IMPORT}:{cfg.init_from}"
  reference = policy_params(cfg, cfg.init_from)
  rm = reward_params(cfg, cfg.ppo.reward_model, data)
  p = cfg.ppo
  rollouts = ppo.Rollouts(
      model_cfg, model_cfg, settings, data.prompts, reference, rm, data.tokenizer.eot_id,
      kl.controller(p.kl_controller, p.kl_coef, p.kl_target, p.kl_horizon), stage.train.seed,
      judge=data.judge,
      ptx=_ptx_batches(cfg, data, stage.train.seed) if p.ptx_coef else None)
  task = ppo_task(model_cfg, settings)
  task.train_data = rollouts
  task.import_params = {SFT_IMPORT: lambda path: {"policy": jax.device_get(reference),
                                                  "value": jax.device_get(rm)}}
  task.tokens_per_batch = settings.minibatch * (settings.prompt_len + settings.max_new_tokens)
  start = time.perf_counter()
  _, summary = loop.train(stage, workdir, task)
  total = time.perf_counter() - start
  t = rollouts.timings
  if t["rollout_seconds"]:
    updates = len(t["rollout_seconds"]) * settings.updates_per_rollout
    summary.update(
        rollout_tokens_per_sec=sum(t["rollout_tokens"]) / sum(t["rollout_seconds"]),
        rollout_seconds=sum(t["rollout_seconds"]) / len(t["rollout_seconds"]),
        update_seconds_per_batch=(total - sum(t["rollout_seconds"]) -
                                  sum(t["score_seconds"])) / updates)
  return write_summary(workdir, summary)


# --- DPO -------------------------------------------------------------------------------------

def run_dpo(cfg, workdir):
  """DPO from the SFT run (init_from, also the frozen reference) on the comparisons' pairs."""
  if not cfg.init_from:
    raise ValueError("--mode=dpo needs --config.init_from=DIR, the SFT run (the reference)")
  data = data_lib.load(cfg)
  model_cfg = model_config(cfg)
  d, eot = cfg.data, data.tokenizer.eot_id
  stage = stage_config(cfg, "dpo", cfg.dpo.train)
  bs = stage.train.batch_size
  reference = policy_params(cfg, cfg.init_from)
  encoded = {}
  for name, comparisons in (("train", data.comparisons), ("eval", data.eval_comparisons)):
    pairs, identical = dpo.pairs_from_comparisons(comparisons)
    arrays = dpo.encode_pairs(pairs, d.prompt_len, d.response_len, eot)
    encoded[name] = (dpo.add_reference(model_cfg, reference, arrays, bs), identical)
  task = pretrain.gpt_task(model_cfg, tokens_per_batch=2 * bs * (d.prompt_len + d.response_len))
  task.loss_fn = dpo.loss_fn(gpt.GPT(model_cfg), cfg.dpo.beta)
  task.train_data = sft.EpochBatches(encoded["train"][0], bs, stage.train.seed)
  task.eval_data = lambda: _eval_pairs(encoded["eval"][0], bs)
  _, summary = loop.train(stage, workdir, task)
  return write_summary(workdir, {**summary, "pairs": len(encoded["train"][0]["ref_chosen"]),
                                 "identical_pairs_dropped": encoded["train"][1]})


def _eval_pairs(arrays, batch_size):
  """Held-out pairs in full batches (a partial last batch is left out: DPO's loss has no
  per-pair weight to mask it with)."""
  n = len(arrays["ref_chosen"]) // batch_size * batch_size
  if n == 0:
    raise ValueError(f"fewer held-out pairs than one batch of {batch_size}")
  for start in range(0, n, batch_size):
    yield {k: v[start:start + batch_size] for k, v in arrays.items()}
