"""GPT-3 (Brown et al. 2020): the model-size table, its training recipe, in-context learning
from K demonstrations, and scaling curves.

Tiny (the default; CPU, no data files): in-context learning emerging in a small GPT trained on
sequences that each hold their own random mapping of item symbols to labels (Table 2.1's
alternating dense and banded attention against dense), both variants 2,500 steps, about 7 CPU
minutes (393 s measured); expect accuracy on held-out mappings near chance (0.25) at K=0 and
at least 0.8 at K=16 with dense attention (measured 0.242 and 0.978; banded 0.233 and 0.793):
  python -m experiments.gpt3 --config=configs/gpt3.py:tiny --workdir=runs/gpt3 --mode=train
The scaling sweep (five sizes, one token budget, power laws of held-out loss against size and
compute, few-shot accuracy against size), about 4 CPU minutes (228 s measured; power law
R^2 0.987 against non-embedding parameters):
  python -m experiments.gpt3 --config=configs/gpt3.py:tiny --workdir=runs/gpt3_scaling \
      --mode=scaling
Few-shot evaluation (lineage.eval.few_shot: the paper's prompts and scoring rules) of a
trained LM, a table of zero-, one- and few-shot accuracy and a plot against K:
  python -m experiments.gpt3 --config=configs/gpt3.py:tiny --workdir=runs/gpt3_fs \
      --mode=few_shot --config.init_from=runs/gpt3_scaling/<size>
Paper presets 125m, 350m, 760m, 1.3b, 2.7b, 6.7b, 13b, 175b: Table 2.1's shapes (from
lineage.models.gpt.PRESETS), batch and learning rate, context 2048, Adam beta2 0.95, clip 1.0,
weight decay 0.1, warmup over 375M tokens, cosine to 10% over 260B of the 300B training
tokens (all in steps of the preset's batch); --mode=train pre-trains the LM on data.* (the
paper's corpus is not here; give a text_file or a TFDS dataset), which needs accelerators.
What was measured, and how: docs/results/gpt3.md.
"""

import dataclasses
import math

import ml_collections

from configs import common
from lineage.models import gpt

CONTEXT = 2048
# Table 2.1: batch size in tokens (the paper's 0.5M, 1M, 2M and 3.2M, whole 2048-token
# sequences) and learning rate; the shapes are lineage.models.gpt.PRESETS["gpt3_<name>"].
TABLE = {
    "125m": (256 * CONTEXT, 6.0e-4),
    "350m": (256 * CONTEXT, 3.0e-4),
    "760m": (256 * CONTEXT, 2.5e-4),
    "1.3b": (512 * CONTEXT, 2.0e-4),
    "2.7b": (512 * CONTEXT, 1.6e-4),
    "6.7b": (1024 * CONTEXT, 1.2e-4),
    "13b": (1024 * CONTEXT, 1.0e-4),
    "175b": (1536 * CONTEXT, 0.6e-4),
}
# The sizes Table 2.1 names them by (its n_params column).
REPORTED_PARAMS = {"125m": 125e6, "350m": 350e6, "760m": 760e6, "1.3b": 1.3e9, "2.7b": 2.7e9,
                   "6.7b": 6.7e9, "13b": 13.0e9, "175b": 175.0e9}
WARMUP_TOKENS, DECAY_TOKENS, TRAIN_TOKENS = 375e6, 260e9, 300e9


def _model(cfg: gpt.GPTConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def paper_schedule(batch_tokens):
  """(steps, warmup_steps, decay_steps) for the paper's token counts at this batch."""
  return (math.ceil(TRAIN_TOKENS / batch_tokens), math.ceil(WARMUP_TOKENS / batch_tokens),
          math.ceil(DECAY_TOKENS / batch_tokens))


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  # --mode=train: "icl" (the mapping task below) or "lm" (pre-training on data.*).
  c.task = "icl"
  c.data = common.lm_data()
  c.train.update(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0,
                 schedule="cosine", min_lr_ratio=0.1, decay_steps=0)
  # The in-context mapping task (lineage.milestones.gpt3.icl): items [0, num_items) and labels
  # after them; a training sequence holds `pairs` (item, label) pairs of 1..ways items; the
  # last heldout_items items never occur in training; one mapping in heldout_every is held
  # out for evaluation. shots: the K evaluated; variants: dense and/or banded (every odd
  # layer attends to the last `window` tokens only); tour_steps: the tour's shorter schedule.
  c.icl = ml_collections.ConfigDict(dict(
      num_items=64, num_labels=4, ways=4, pairs=17, heldout_items=16, heldout_every=8,
      shots="0,1,2,4,8,16", variants="dense,banded", window=8, eval_examples=1000,
      eval_seed=1234, tour_steps=1000))
  # Few-shot evaluation (lineage.eval.few_shot) of a trained LM (--mode=few_shot, and the
  # accuracy of each size in --mode=scaling): tasks among lineage.eval.few_shot_tasks.TASKS;
  # on_too_few: error | clip when K exceeds the demonstrations a task has; rules: "" for
  # all of lineage.eval.few_shot.RULES or a comma-separated subset; model_name: the table's block
  # (default: the source directory's name).
  c.few_shot = ml_collections.ConfigDict(dict(
      tasks="synthetic_cloze,synthetic_compare", shots="0,1,4",
      max_examples=64, limit=64, batch_size=16, seed=0, on_too_few="error", rules="",
      model_name=""))
  # --mode=scaling: GPT sizes "layers x width" (heads = width / head_dim), dense, each
  # trained on data.* with the same steps and batch (the same tokens); vocab_size: the
  # tokenizer's (257: bytes and end of text).
  c.scaling = ml_collections.ConfigDict(dict(
      sizes="2x32,2x48,2x64,3x96,4x128", head_dim=16, steps=300, batch_size=16, lr=3e-3,
      warmup_steps=50, power_law_offset=False, vocab_size=257))

  if preset == "tiny":
    # Three layers: dense, banded, dense in the banded variant, so that a dense layer can
    # still find the query's earlier occurrence after a banded one.
    c.model = _model(gpt.GPTConfig(vocab_size=68, context=34, num_layers=3, num_heads=4,
                                   embed_dim=64, mlp_dim=256, dropout=0.0, local_window=8))
    c.train.update(steps=2500, batch_size=64, lr=3e-3, warmup_steps=100, log_every=100,
                   eval_every=500, checkpoint_every=2500, eval_batches=8)
    c.data.update(seq_len=128)
  elif preset in TABLE:
    batch_tokens, lr = TABLE[preset]
    steps, warmup, decay = paper_schedule(batch_tokens)
    c.task = "lm"
    c.model = _model(gpt.PRESETS[f"gpt3_{preset}"])
    c.data.update(tokenizer="gpt2", seq_len=CONTEXT)
    c.train.update(steps=steps, batch_size=batch_tokens // CONTEXT, lr=lr, warmup_steps=warmup,
                   decay_steps=decay, log_every=10, eval_every=1000, checkpoint_every=1000,
                   eval_batches=50)
    c.few_shot.update(tasks="lambada,story_cloze,rte,sst2", shots="0,1,8", max_examples=0,
                      limit=0)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny or one of {', '.join(TABLE)}")
  return c
