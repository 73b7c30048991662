"""GPT-1 (Radford et al. 2018): generative pre-training of a post-LN decoder, then discriminative
fine-tuning with task input transformations and an auxiliary language-modelling loss.

Tiny (the default; CPU, the embedded corpus and synthetic tasks): pre-training about 40 s,
one fine-tuning about 15 s, the ablations about 2 minutes on 2 cores; expect the pre-trained
model with the auxiliary loss about 13 points above the one trained from scratch on
synthetic_choice (which ending continues a count or a copied phrase):
  python -m experiments.gpt1 --config=configs/gpt1.py:tiny --workdir=runs/gpt1 --mode=pretrain
  python -m experiments.gpt1 --config=configs/gpt1.py:tiny --workdir=runs/gpt1_ft \
      --mode=finetune --config.init_from=runs/gpt1
  python -m experiments.gpt1 --config=configs/gpt1.py:tiny --workdir=runs/gpt1_ablate \
      --mode=ablate --config.finetune.pretrained=runs/gpt1
Real tasks (--config.finetune.task=sst2|rte|story_cloze|stsb, files under
$LINEAGE_MANUAL_DIR/<dataset>/ as in ../shared/data) with GPT-1's BPE need a model pre-trained
with it (--config.data.tokenizer=gpt1) or the released weights
(--config.init_from=hf:DIR, an OpenAIGPTLMHeadModel directory, with the 117m preset).
117m: the paper's shape and schedules (pre-training: Adam 2.5e-4, 2,000 warmup updates,
cosine to 0, 64 x 512 tokens; fine-tuning: 6.25e-5, warmup 0.2%, linear decay, batch 32,
3 epochs, lambda 0.5); pre-training it needs BooksCorpus and accelerators.
What was measured, and how: docs/results/gpt1.md.
"""

import dataclasses

import ml_collections

from configs import common
from lineage.data import tokenizers
from lineage.models import gpt


def _model(cfg: gpt.GPTConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  c.data = common.lm_data()  # Pre-training data; the fine-tuning tasks read its dirs too.
  c.train.update(steps=300, batch_size=16, lr=2e-3, warmup_steps=100, schedule="cosine",
                 min_lr_ratio=0.0, weight_decay=0.01, log_every=25, eval_every=100,
                 eval_batches=8, checkpoint_every=100)
  # Fine-tuning (--mode=finetune and each run of --mode=ablate), from --config.init_from:
  # task: lineage.milestones.gpt1.tasks.SPECS; lm_coef: lambda of the auxiliary LM loss;
  # max_len 0: the longest example (within the model's context); num_synthetic / num_eval:
  # examples of a synthetic task's train / validation split; limit caps a real task's;
  # transfer_layers -1: every block of a pretrained:DIR source (0 ... L: the embeddings and
  # that many blocks, the paper's Figure 2 left); pretrained: the run --mode=ablate starts from.
  c.finetune = ml_collections.ConfigDict(dict(
      task="synthetic_grammar", lm_coef=0.5, epochs=3, batch_size=32, lr=6.25e-5,
      warmup_fraction=0.002, weight_decay=0.01, head_dropout=0.1, max_len=0,
      num_synthetic=2000, num_eval=500, limit=0, transfer_layers=-1, pretrained="", seed=0,
      log_every=25, eval_batch_size=64))
  # The zero-shot heuristics logged while pre-training (Figure 2 right), by the eval hook.
  c.zero_shot = ml_collections.ConfigDict(dict(tasks="synthetic_choice", max_examples=200,
                                               batch_size=32))

  if preset == "tiny":
    # Bytes (256 + end of text) and GPT-1's three special tokens.
    c.model = _model(gpt.GPTConfig(vocab_size=260, context=128, num_layers=4, num_heads=4,
                                   embed_dim=128, mlp_dim=512, dropout=0.0, pre_ln=False,
                                   scaled_residual_init=False))
    c.finetune.update(task="synthetic_choice", num_synthetic=640, num_eval=400, epochs=2,
                      batch_size=16,
                      lr=1e-3, warmup_fraction=0.1, head_dropout=0.0)
  elif preset == "117m":
    c.model = _model(dataclasses.replace(
        gpt.PRESETS["gpt1"], vocab_size=tokenizers.GPT1BPE.base_vocab_size +
        len(tokenizers.GPT1_SPECIAL_TOKENS)))
    # BooksCorpus has no builder here: pre-train on a local text file of it
    # (--config.data.path=...), 100 epochs of 64 x 512 tokens; --config.train.steps is
    # 100 x the file's tokens / 32,768.
    c.data.update(name="text_file", tokenizer="gpt1", seq_len=512)
    c.train.update(batch_size=64, lr=2.5e-4, warmup_steps=2000, schedule="cosine",
                   min_lr_ratio=0.0, weight_decay=0.01, log_every=10, eval_every=1000,
                   eval_batches=50, checkpoint_every=1000)
    c.finetune.task = "sst2"
    c.zero_shot.tasks = "sst2,story_cloze"
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny or 117m")
  return c
