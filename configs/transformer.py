"""The Transformer (Vaswani et al. 2017): an encoder-decoder translating between languages.

Tiny (the default; CPU, the embedded synthetic language pair): 2 + 2 layers of 128, no dropout,
800 steps of about 1,024 tokens a side, warmup 400. Train about 1.7 min on 2 busy cores (with
one BLEU evaluation), eval and average about 20 s each; the tour's section 2.3 min. Expect
validation BLEU 91.0, test BLEU 87.3 from the last checkpoint and 98.4 from the mean of the
last five (beam 4, alpha 0.6):
  python -m experiments.transformer --config=configs/transformer.py:tiny \
      --workdir=runs/transformer_tiny --mode=train
  python -m experiments.transformer --config=configs/transformer.py:tiny \
      --workdir=runs/transformer_tiny --mode=eval       # eval.json: test BLEU, translations
  python -m experiments.transformer --config=configs/transformer.py:tiny \
      --workdir=runs/transformer_tiny --mode=average    # average.json: the last checkpoints' mean
  python -m experiments.transformer --config=configs/transformer.py:tiny \
      --workdir=runs/transformer_tiny --mode=translate < sources.txt   # one line out per line
Multi30k en-de (real data from $LINEAGE_MANUAL_DIR/multi30k), the tiny model with
--config.data.name=multi30k --config.model.vocab_size=4000 --config.data.buckets=16,24,32,48,64
--config.data.max_tokens=1536 --config.train.steps=1500 --config.train.warmup_steps=600
--config.train.checkpoint_every=100: train about 10 min on 2 busy cores, test2016 BLEU 29.5
(30.6 from the mean of the last five checkpoints), measured when the tiny preset had dropout
0.1 (add --config.model.dropout=0.1) and test sources lacked their end token.
Paper (base, big: WMT14 en-de, data.name=wmt14, about 4.5M pairs from statmt.org or
$LINEAGE_MANUAL_DIR/wmt14; 37,000 shared BPE tokens, about 25,000 source and 25,000 target
tokens a batch, 100k steps for base and 300k for big on 8 P100s; BLEU 27.3 and 28.4 on
newstest2014): accelerators only.
Numbers and an example: docs/results/transformer.md.
"""

import dataclasses

import ml_collections

from configs import common
from lineage.models import transformer


def _model(cfg: transformer.TransformerConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  # name: synthetic (train_pairs / eval_pairs from seed; lineage.milestones.transformer.
  # language), multi30k or wmt14 (source and target name their languages). A batch holds about
  # max_tokens padded tokens a side; buckets are the padded lengths (pairs longer than the
  # last are left out). The shared BPE vocabulary is trained with model.vocab_size tokens.
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic", train_pairs=20000, eval_pairs=500, seed=0, source="en", target="de",
      max_tokens=1024, buckets="12,16,24,32", data_dir="", manual_dir=""))
  # The paper's optimiser: Adam (0.9, 0.98, 1e-9), the noam schedule whose lr is
  # d_model ** -0.5, no weight decay, no clipping; label smoothing 0.1. batch_size is the row
  # multiple of every batch (a multiple of the data-parallel devices): the rows themselves come
  # from data.max_tokens.
  c.train.update(schedule="noam", b1=0.9, b2=0.98, eps=1e-9, weight_decay=0.0, grad_clip=0.0,
                 batch_size=8, label_smoothing=0.1)
  # Beam search as in the paper: beam 4, length penalty alpha 0.6, at most the source's
  # length + 50 tokens; batch_size sources a call.
  c.decode = ml_collections.ConfigDict(dict(beam_size=4, alpha=0.6, extra_length=50,
                                            batch_size=100))
  # bleu_pairs validation pairs are translated at every eval; average_last checkpoints are
  # averaged by --mode=average; examples translations go to eval.json / average.json.
  c.eval = ml_collections.ConfigDict(dict(bleu_pairs=200, average_last=5, examples=5))

  if preset == "tiny":
    # No dropout: the synthetic pair is drawn afresh for every split, so 800 steps do not
    # overfit, and dropout 0.1 costs about 15 BLEU at this budget.
    c.model = _model(dataclasses.replace(transformer.PRESETS["tiny"], vocab_size=512,
                                         embed_dim=128, mlp_dim=256, dropout=0.0))
    c.data.update(eval_pairs=200)
    c.eval.bleu_pairs = 100
    c.train.update(steps=800, warmup_steps=400, lr=128 ** -0.5, log_every=100,
                   eval_every=800, checkpoint_every=50, keep_checkpoints=5)
  elif preset in ("base", "big"):
    model = transformer.PRESETS[preset]
    c.model = _model(model)
    c.data.update(name="wmt14", max_tokens=25000, buckets="16,24,32,48,64,96,128,192,256")
    c.train.update(steps=100_000 if preset == "base" else 300_000, warmup_steps=4000,
                   lr=model.embed_dim ** -0.5, log_every=100, eval_every=5000,
                   checkpoint_every=1000 if preset == "base" else 2000, keep_checkpoints=20)
    c.eval.average_last = 5 if preset == "base" else 20
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny, base or big")
  return c
