"""InstructGPT (Ouyang et al. 2022): supervised fine-tuning, a reward model from comparisons,
PPO against it with a KL penalty to the SFT model and the pretraining mix (PPO-ptx), and DPO
(Rafailov et al. 2023) as the later alternative; chained by --config.init_from.

Tiny (the default, what the tour runs: about 70 CPU seconds for the chain) and synthetic (the
acceptance run: about 5 CPU minutes for the chain) use the embedded synthetic task
(lineage.data.synthetic_preferences: additions, a hidden labeller preferring correct and
concise answers):
  python -m experiments.instructgpt --config=configs/instructgpt.py:synthetic --mode=sft \
      --workdir=runs/ig/sft
  python -m experiments.instructgpt --config=configs/instructgpt.py:synthetic --mode=rm \
      --workdir=runs/ig/rm --config.init_from=runs/ig/sft
  python -m experiments.instructgpt --config=configs/instructgpt.py:synthetic --mode=ppo \
      --workdir=runs/ig/ppo --config.init_from=runs/ig/sft --config.ppo.reward_model=runs/ig/rm
  python -m experiments.instructgpt --config=configs/instructgpt.py:synthetic --mode=dpo \
      --workdir=runs/ig/dpo --config.init_from=runs/ig/sft
  python -m experiments.instructgpt --config=configs/instructgpt.py:synthetic --mode=eval \
      --workdir=runs/ig/eval_ppo --config.init_from=runs/ig/sft \
      --config.ppo.reward_model=runs/ig/rm --config.eval.policy=runs/ig/ppo
Expect (synthetic): reward-model held-out pair accuracy 0.97; win rates against SFT by the
reward model / the true labeller about 0.68 / 0.68 for PPO and 0.66 / 0.65 for DPO (true
score 0.21 -> 0.58 and 0.52), PPO's KL to SFT about 1.6 nats; with
--config.ppo.kl_controller=fixed --config.ppo.kl_coef=0 the KL runs to about 3 (6 in late
rollouts) for a lower true score. hh_rlhf: a tiny byte-level reward model on hh-rlhf's
helpful-base test pairs (80% train, 20% held out; files in $LINEAGE_MANUAL_DIR/hh_rlhf as in
../shared/data):
  python -m experiments.instructgpt --config=configs/instructgpt.py:hh_rlhf --mode=rm \
      --workdir=runs/ig/hh_rm
gives a held-out accuracy of about 0.55 (chance 0.5) in about 2.5 CPU minutes.
1.3b: InstructGPT's smallest policy (GPT-3 1.3B's shape, GPT-2 BPE) with the paper's
hyper-parameters (Appendix C); it needs the paper's data and accelerators.
What was measured, and how: docs/results/instructgpt.md.
"""

import dataclasses

import ml_collections

from configs import common
from lineage.models import gpt


def _model(cfg: gpt.GPTConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def _stage(**kw):
  """A stage's training keys, copied into train.* by its mode."""
  base = dict(steps=200, batch_size=32, lr=1e-3, warmup_steps=10, schedule="cosine",
              weight_decay=0.0, log_every=10, eval_every=100, checkpoint_every=100)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  c.stage = ""  # set by each mode (sft, rm, ppo, dpo, eval); saved in config.json
  # name: synthetic (every mode) | hh_rlhf (rm: pairs of `subset`'s test split, the first
  # train_fraction for training) | self_instruct (sft: the seed tasks). prompt_len and
  # response_len (which includes the end-of-text token) fix the rows' layout and must fit
  # the context; seq_len: SFT's packed rows.
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic", tokenizer="byte", vocab_dir="", data_dir="", manual_dir="",
      prompt_len=8, response_len=20, seq_len=32, num_demonstrations=2000,
      num_comparisons=1500, num_eval_comparisons=300, max_operand=9, p_verbose=0.5,
      p_wrong=0.3, subset="helpful-base", train_fraction=0.8, limit=0, seed=0))
  c.sft = _stage(steps=600, batch_size=32, lr=3e-3)
  c.rm = _stage(steps=2500, batch_size=32, lr=2e-3, eval_every=500, checkpoint_every=500)
  # PPO: rollout_batch prompts a rollout, minibatches of `minibatch`, `epochs` passes; one loop
  # step per minibatch update, so steps = rollouts * epochs * rollout_batch / minibatch and
  # checkpoint_every must be a multiple of epochs * rollout_batch / minibatch.
  # kl_controller adaptive (kl_coef is beta's start, Ziegler et al.'s target in nats per
  # response and horizon in samples) or fixed (kl_coef throughout; 0 turns the penalty off).
  # ptx_coef: PPO-ptx's gamma, the pretraining LM loss on ptx_batch rows of the demonstrations
  # read as plain text (the synthetic task has no other corpus).
  c.ppo = ml_collections.ConfigDict(dict(
      reward_model="", rollout_batch=64, minibatch=32, epochs=2, clip_ratio=0.2,
      value_clip=0.2, vf_coef=0.5, gamma=1.0, lam=0.95, no_end_penalty=1.0,
      kl_controller="adaptive", kl_coef=0.2, kl_target=1.0, kl_horizon=200.0,
      ptx_coef=0.0, ptx_batch=16,
      train=_stage(steps=240, lr=3e-4, warmup_steps=0, schedule="constant", log_every=4,
                   eval_every=1000000, checkpoint_every=40)))
  c.dpo = ml_collections.ConfigDict(dict(
      beta=0.1, train=_stage(steps=150, batch_size=32, lr=3e-4, warmup_steps=10)))
  # eval: win rates of eval.policy (a PPO or DPO run) against the SFT model (init_from),
  # judged by the reward model (ppo.reward_model) and, on the synthetic task, the labeller;
  # samples_per_prompt responses at temperature 1 to each of the task's prompts.
  c.eval = ml_collections.ConfigDict(dict(policy="", samples_per_prompt=4, batch_size=100))

  if preset in ("tiny", "synthetic"):
    c.model = _model(gpt.GPTConfig(vocab_size=257, context=32, num_layers=2, num_heads=4,
                                   embed_dim=64, mlp_dim=256, dropout=0.0,
                                   attention_impl="xla"))
    if preset == "tiny":
      # Additions of 0..4 only: a reward model learns to check 25 sums in 200 steps.
      c.data.max_operand = 4
      c.sft.update(steps=150)
      c.rm.update(steps=200, eval_every=200, checkpoint_every=200)
      c.ppo.train.update(steps=64, checkpoint_every=32)
      c.dpo.train.update(steps=80)
      c.eval.samples_per_prompt = 2
  elif preset == "hh_rlhf":
    c.model = _model(gpt.GPTConfig(vocab_size=257, context=256, num_layers=2, num_heads=4,
                                   embed_dim=64, mlp_dim=256, dropout=0.0,
                                   attention_impl="xla"))
    c.data.update(name="hh_rlhf", prompt_len=192, response_len=64, seq_len=256)
    c.rm.update(steps=300, batch_size=16, lr=3e-4, eval_every=100)
  elif preset == "1.3b":
    # Ouyang et al. 2022, Appendix C: SFT 16 epochs, cosine decay, residual dropout 0.2;
    # RM: 6B in the paper, lr 9e-6, batch 64 prompts of K up to 9; PPO: batch 512 rollouts,
    # minibatch 64, one epoch, fixed beta 0.02, ptx gamma 27.8, lr 9.65e-6 (1.3B).
    c.model = _model(dataclasses.replace(gpt.PRESETS["gpt3_1.3b"], vocab_size=50304,
                                         dropout=0.2))
    c.data.update(name="hh_rlhf", tokenizer="gpt2", prompt_len=1536, response_len=512,
                  seq_len=2048)
    c.sft.update(steps=10_000, batch_size=32, lr=9.65e-6, warmup_steps=0, schedule="cosine")
    c.rm.update(steps=5_000, batch_size=64, lr=9e-6)
    c.ppo.update(rollout_batch=512, minibatch=64, epochs=1, kl_controller="fixed",
                 kl_coef=0.02, ptx_coef=27.8, ptx_batch=64)
    c.ppo.train.update(steps=256_000 // 64, lr=9.65e-6, checkpoint_every=8)
    c.dpo.train.update(steps=5_000, batch_size=64, lr=1e-6)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny, synthetic, hh_rlhf or 1.3b")
  return c
