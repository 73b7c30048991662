"""The chain's stages, each a run of the generic loop in its own directory, started from the
previous stage's run by init_from: pretrain (text plus code), sft (multi-turn dialogues, the
loss on assistant turns), rm (the right reply against a wrong one, in context) and ppo (the
SFT policy against the reward model, with a KL penalty to the SFT model).

Each stage returns its summary (also written to its workdir's summary.json): the loop's, plus
what the stage measures (the probes, the dialogue accuracy of the model it starts from and
of the one it ends with, the reward model's held-out pair accuracy).
"""

import copy
import dataclasses
import functools
import json
import os

import jax
import ml_collections
import numpy as np

from lineage.data import synthetic_dialogue as sd
from lineage.data import tokenizers
from lineage.milestones.chatgpt import dialogue, pretrain_mix
from lineage.milestones.gpt1 import pretrain
from lineage.rlhf import kl as kl_lib
from lineage.rlhf import layout, ppo, reward, sft
from lineage.train import loop
from lineage.train import weights as weights_lib

RLHF_SOURCE = "sft_and_rm"  # init_from kind of the PPO stage: the SFT run, the RM beside it


def tokenizer_for(cfg):
  if cfg.data.tokenizer != "byte":
    raise ValueError(f"data.tokenizer={cfg.data.tokenizer!r}: the chat milestone's tiny chain "
                     "is byte-level; use data.tokenizer=byte")
  return tokenizers.ByteTokenizer()


def chat_model(cfg):
  return dialogue.chat_model(pretrain.model_config(cfg), tokenizer_for(cfg))


def stage_config(cfg, section, **extra):
  """The loop's config for a stage: train.* from the stage's section."""
  out = copy.deepcopy(cfg)
  steps = section.steps
  out.train.update(steps=steps, batch_size=section.batch_size, lr=section.lr,
                   warmup_steps=section.warmup_steps, schedule="cosine", min_lr_ratio=0.1,
                   log_every=max(1, min(25, steps // 4)), eval_every=steps,
                   checkpoint_every=section.checkpoint_every, seed=section.seed, **extra)
  return out


def _write(workdir, summary):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def restore_gpt(cfg, run_dir):
  """A GPT run's parameters (pre-trained, SFT)."""
  return weights_lib.restore_params(cfg, run_dir, pretrain.gpt_task(pretrain.model_config(cfg)))


def restore_policy(cfg, source):
  """The language model of any stage's run (DIR or DIR@STEP): a GPT run's parameters, or a
  PPO run's policy."""
  run_dir, _, step = source.partition("@")
  step = int(step) if step else None
  config = os.path.join(run_dir, "config.json")
  is_ppo = os.path.exists(config) and RLHF_SOURCE in open(config).read()
  if not is_ppo:
    return weights_lib.restore_params(cfg, run_dir,
                                      pretrain.gpt_task(pretrain.model_config(cfg)), step)
  model_cfg = pretrain.model_config(cfg)
  task = loop.Task(init_params=functools.partial(ppo.init_params, model_cfg, model_cfg),
                   loss_fn=None)
  return weights_lib.restore_params(cfg, run_dir, task, step)["policy"]


def run_pretrain(cfg, workdir, code_share=None):
  """Pre-trains on the text-and-code stream; probes the result."""
  if code_share is not None:
    cfg = copy.deepcopy(cfg)
    cfg.pretrain.code_share = code_share
  model = chat_model(cfg)
  train, evaluation, share = pretrain_mix.batches(model.tokenizer, cfg.data, cfg.pretrain,
                                                  cfg.train.batch_size, cfg.train.seed,
                                                  cfg.train.eval_batches)
  task = pretrain.gpt_task(model.model_cfg, train, evaluation,
                           cfg.data.seq_len * cfg.train.batch_size)
  state, summary = loop.train(cfg, workdir, task)
  probes = pretrain_mix.probes(model.model_cfg, model.tokenizer, state.params, cfg.probes)
  return _write(workdir, {**summary, "code_share": share,
                          **{f"probe_{k}": v for k, v in probes.items()}})


def _dialogues(c):
  train = sd.conversations(c.num_dialogues, c.seed, 1, c.max_exchanges)
  held_out = sd.conversations(c.eval_dialogues, c.seed + 10_000, 2, c.max_exchanges)
  return train, held_out


def run_sft(cfg, workdir):
  """Multi-turn SFT from init_from; scores the starting model on the dialogues first."""
  if not cfg.init_from:
    raise ValueError("--mode=sft starts from a pre-trained run: give --config.init_from=DIR")
  c = cfg.sft
  model = chat_model(cfg)
  train, held_out = _dialogues(c)
  dialogue.check_fits(model.template, train + held_out, cfg.data.seq_len)
  evaluate = dialogue.evaluator(model, held_out, c.max_new_tokens, c.eval_batch_size)
  base = evaluate(restore_policy(cfg, cfg.init_from), 0)
  batches = dialogue.sft_batches(model.template, train, cfg.data.seq_len, c.batch_size,
                                 c.seed)
  task = dataclasses.replace(
      pretrain.gpt_task(model.model_cfg, batches, None, c.batch_size * cfg.data.seq_len),
      evaluate=evaluate)
  _, summary = loop.train(stage_config(cfg, c), workdir, task)
  return _write(workdir, {**summary, **{f"base_{k}": v for k, v in base.items()},
                          "num_dialogues": len(train), "eval_dialogues": len(held_out)})


def comparisons(model, dialogues, seed):
  """(prompt ids, [right reply ids, wrong reply ids], [1, 0]) for every turn of the
  dialogues: the prompt is the conversation up to the user's request."""
  rng = np.random.default_rng(seed)
  tokenizer = model.tokenizer
  return [(model.template.encode(turns, generation_prompt=True)[0],
           [tokenizer.encode(sd.expected_reply(turns)),
            tokenizer.encode(sd.wrong_reply(turns, rng))], [1.0, 0.0])
          for turns in sd.contexts(dialogues)]


def _lengths(model, c_ppo):
  response_len = model.model_cfg.context - c_ppo.prompt_len
  return c_ppo.prompt_len, response_len


def run_rm(cfg, workdir):
  """The reward model from init_from (the SFT run; its head starts at zero)."""
  if not cfg.init_from:
    raise ValueError("--mode=rm starts from the SFT run: give --config.init_from=DIR")
  c = cfg.rm
  model = chat_model(cfg)
  rm = reward.RewardModel(model.model_cfg)
  prompt_len, response_len = _lengths(model, cfg.ppo)
  encode = lambda comps: reward.encode_comparisons(comps, prompt_len, response_len,
                                                   model.template.end_id)[0]
  train = encode(comparisons(model, sd.conversations(c.num_comparisons // 2, c.seed, 1,
                                                     cfg.sft.max_exchanges), c.seed))
  held_out = encode(comparisons(model, sd.conversations(
      c.eval_comparisons // 2, c.seed + 10_000, 1, cfg.sft.max_exchanges), c.seed + 1))
  abstract = pretrain.gpt_task(model.model_cfg)
  task = loop.Task(init_params=functools.partial(reward.init_params, rm),
                   loss_fn=reward.loss_fn(rm),
                   train_data=sft.EpochBatches(train, c.batch_size, c.seed),
                   evaluate=reward.evaluator(rm, held_out, 64),
                   flops_per_token=abstract.flops_per_token,
                   tokens_per_batch=c.batch_size * 2 * model.model_cfg.context)
  _, summary = loop.train(stage_config(cfg, c), workdir, task)
  return _write(workdir, {**summary, "num_comparisons": len(train["tokens"])})


def _rm_task(model_cfg):
  return loop.Task(init_params=functools.partial(reward.init_params,
                                                 reward.RewardModel(model_cfg)),
                   loss_fn=None)


def run_ppo(cfg, workdir):
  """PPO of the SFT policy (init_from) against the reward model (ppo.reward_from), the value
  model starting from the reward model; the true checker's score is logged beside it."""
  c = cfg.ppo
  if not cfg.init_from or not c.reward_from:
    raise ValueError("--mode=ppo needs the SFT run (--config.init_from=DIR) and the reward "
                     "model's (--config.ppo.reward_from=DIR)")
  model = chat_model(cfg)
  model_cfg = model.model_cfg
  prompt_len, response_len = _lengths(model, c)
  settings = ppo.Settings(rollout_batch=c.rollout_batch, minibatch=c.minibatch, epochs=c.epochs,
                          prompt_len=prompt_len, max_new_tokens=response_len,
                          ptx_coef=c.ptx_coef)
  sft_params = restore_gpt(cfg, cfg.init_from)
  rm_params = weights_lib.restore_params(cfg, c.reward_from, _rm_task(model_cfg))
  contexts = sd.contexts(sd.conversations(c.num_prompts, c.seed, 1, cfg.sft.max_exchanges))
  prompts = [model.template.encode(t, generation_prompt=True)[0] for t in contexts]
  demos = layout.rows(prompts[:256], [model.tokenizer.encode(sd.expected_reply(t)) +
                                      [model.template.end_id] for t in contexts[:256]],
                      prompt_len, response_len)
  rm_params, shift = reward.normalised(reward.RewardModel(model_cfg), rm_params, demos, 64)

  def judge(prompt, response):
    return float(sd.is_correct(model.template.decode(prompt)[:-1], model.text(response)))

  train_dialogues, held_out = _dialogues(cfg.sft)
  # PPO-ptx's mix: here the dialogue demonstrations themselves, which keeps what SFT taught
  # while the policy follows a reward model that has only seen one kind of wrong reply.
  ptx = (dialogue.sft_batches(model.template, train_dialogues, cfg.data.seq_len,
                              cfg.sft.batch_size, c.seed) if c.ptx_coef else None)
  rollouts = ppo.Rollouts(model_cfg, model_cfg, settings, prompts, sft_params, rm_params,
                          model.template.end_id,
                          kl_lib.controller(c.kl_kind, c.kl_coef, c.kl_target, c.kl_horizon),
                          c.seed, judge=judge, ptx=ptx)
  evaluate = dialogue.evaluator(model, held_out, cfg.sft.max_new_tokens,
                                cfg.sft.eval_batch_size)
  import_fn = lambda path: {"policy": restore_gpt(cfg, path), "value": rm_params}
  abstract = pretrain.gpt_task(model_cfg)
  task = loop.Task(init_params=functools.partial(ppo.init_params, model_cfg, model_cfg),
                   loss_fn=ppo.loss_fn(model_cfg, model_cfg, settings), train_data=rollouts,
                   evaluate=lambda params, step: evaluate(params["policy"], step),
                   import_params={RLHF_SOURCE: import_fn},
                   flops_per_token=abstract.flops_per_token,
                   tokens_per_batch=c.minibatch * model_cfg.context)
  steps = c.rollouts * settings.updates_per_rollout
  section = dict(steps=steps, batch_size=c.minibatch, lr=c.lr, warmup_steps=0,
                 checkpoint_every=settings.updates_per_rollout, seed=c.seed)
  stage_cfg = stage_config(cfg, ml_collections.ConfigDict(section), weight_decay=0.0)
  stage_cfg.init_from = f"{RLHF_SOURCE}:{cfg.init_from}"
  _, summary = loop.train(stage_cfg, workdir, task)
  return _write(workdir, {**summary, "rm_shift": shift, "reward_from": c.reward_from})

