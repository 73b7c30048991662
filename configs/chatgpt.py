"""ChatGPT (OpenAI 2022) and the GPT-3.5 chain in small: pre-training on text plus code,
multi-turn dialogue SFT with the loss on assistant turns only, a reward model and PPO on
replies in multi-turn context, and an interactive streaming chat (lineage.milestones.chatgpt).

Tiny (the default; CPU, embedded data, a byte-level 4-layer GPT of 128 tokens whose
vocabulary holds the chat template's four special ids): the whole chain from an empty
directory, each stage a run started from the previous one by init_from, resumable stage by
stage, plus the same chain pre-trained without code for the code-share comparison
(docs/results/chatgpt.md has the times and numbers):
  python -m experiments.chatgpt --config=configs/chatgpt.py:tiny --workdir=runs/chatgpt \
      --mode=chain
  python -m experiments.chatgpt --config=configs/chatgpt.py:tiny --mode=chat \
      --config.init_from=runs/chatgpt/ppo [--prompt_file=conversation.txt]
Stage by stage (each writes summary.json; --mode=sft also scores the model it starts from):
  --mode=pretrain --workdir=runs/pre
  --mode=sft --workdir=runs/sft --config.init_from=runs/pre
  --mode=rm --workdir=runs/rm --config.init_from=runs/sft
  --mode=ppo --workdir=runs/ppo --config.init_from=runs/sft --config.ppo.reward_from=runs/rm
Expect the SFT model's accuracy on history-dependent turns of the shopping-list dialogues far
above the base model's (0), and PPO's not below SFT's.
"""

import dataclasses

import ml_collections

from configs import common
from lineage.models import gpt


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  c.data = common.lm_data()  # tokenizer and seq_len; the corpus is pretrain.* below
  c.data.update(seq_len=128, eval_fraction=0.05)
  # Pre-training (c.train): a stream of corpus_tokens, code_share of them code.
  c.train.update(steps=400, batch_size=16, lr=2e-3, warmup_steps=40, schedule="cosine",
                 min_lr_ratio=0.1, b2=0.95, weight_decay=0.1, log_every=50, eval_every=400,
                 eval_batches=4, checkpoint_every=100)
  c.pretrain = ml_collections.ConfigDict(dict(code_share=0.3, corpus_tokens=400_000, seed=0))
  # Zero-shot probes of the pre-trained models (lineage.milestones.chatgpt.pretrain_mix).
  c.probes = ml_collections.ConfigDict(dict(num=200, steps=3, retrieval_pairs=16, seed=1))
  # Multi-turn SFT on the shopping-list dialogues (lineage.data.synthetic_dialogue).
  c.sft = ml_collections.ConfigDict(dict(
      steps=300, batch_size=16, lr=1e-3, warmup_steps=30, num_dialogues=4000,
      eval_dialogues=48, max_exchanges=3, seed=0, max_new_tokens=32, eval_batch_size=64,
      checkpoint_every=100))
  # The reward model: the right reply against a plausible wrong one, in multi-turn context.
  c.rm = ml_collections.ConfigDict(dict(
      steps=150, batch_size=16, lr=5e-4, warmup_steps=15, num_comparisons=2000,
      eval_comparisons=200, seed=1, checkpoint_every=50))
  # PPO from the SFT model against the reward model (reward_from: the RM run);
  # rollouts * epochs * rollout_batch / minibatch updates. ptx_coef: PPO-ptx with the dialogue
  # demonstrations as the mix (without it, 24 updates lost a turn or two of SFT's accuracy;
  # at lr 1e-4 a fifth of it: the reward model has seen one kind of wrong reply only).
  c.ppo = ml_collections.ConfigDict(dict(
      reward_from="", rollouts=6, rollout_batch=32, minibatch=16, epochs=2, lr=2e-5,
      kl_kind="adaptive", kl_coef=0.05, kl_target=2.0, kl_horizon=2000, ptx_coef=1.0,
      prompt_len=96, num_prompts=1000, seed=2))
  # The chat session: system prompt, temperature (0 greedy), reply length.
  c.chat = ml_collections.ConfigDict(dict(system="Keep my list.", temperature=0.0,
                                          max_new_tokens=32, seed=0))
  # --mode=chain: compare_code also pre-trains with no_code_share (same token budget) and
  # probes both; the tour's prompt goes through base, SFT and PPO models.
  c.chain = ml_collections.ConfigDict(dict(compare_code=True, no_code_share=0.0,
                                           instruction="Explain ChatGPT"))

  if preset == "tiny":
    # Bytes (256 + end of text) and the chat template's four special ids.
    c.model = ml_collections.ConfigDict(dataclasses.asdict(gpt.GPTConfig(
        vocab_size=261, context=128, num_layers=4, num_heads=4, embed_dim=128, mlp_dim=512,
        dropout=0.0)))
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny")
  return c
