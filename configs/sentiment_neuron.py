"""The sentiment neuron (Radford, Jozefowicz, Sutskever 2017): a byte mLSTM language model
whose single cell unit turns out to track sentiment.

Tiny (the default; CPU, embedded synthetic reviews): 128 units, 14,000 steps of 4 x 256 bytes,
weight decay 0.1 on the weight-norm gains. Train about 8 min on 2 cores, probe and generate
about 40 s each. Expect the best single unit at about 1.00 test accuracy on held-out reviews
(0.55 to 0.65 for the same model at initialisation), the L1 probe at 1.00 with 1 or 2 units,
and clamping the unit to steer samples (mean lexicon score about +0.9 / -0.9):
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=train
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=probe       # summary.json, *.png
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=generate    # generate.json
SST binary (real data from $LINEAGE_MANUAL_DIR/sst_binary), train about 8 min and probe 3 to 5
min; expect an L1 probe near 0.59 (at this scale the LM learns little sentiment from real text):
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_sst --mode=train --config.data.name=sst_binary \
      --config.data.text_key=sentence --config.data.extra=synthetic_reviews,tiny_shakespeare
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_sst --mode=probe --config.probe.dataset=sst_binary
Paper (4096 units, batch 128 x 256 bytes, 1M updates on 82M Amazon reviews, which lineage
does not ship: point data.name at any text builder): accelerators only.
Per-seed tables, ablations and data versions: docs/results/sentiment_neuron.md.
"""

import dataclasses

import ml_collections

from configs import common
from lineage.models import mlstm


def _model(cfg: mlstm.MLSTMConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset

  # name: synthetic_reviews (num_reviews from seed) or any builder of lineage.data.builders,
  # whose text_key field holds the text; extra: more builders ("name" or "name:field",
  # comma-separated) whose training splits join the LM's text; or text_file, one text per
  # line of `path` (the last 5% held out). Texts go through the paper's preprocessing
  # (lineage.eval.probe.preprocess); seq_len is the truncated-BPTT chunk.
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic_reviews", text_key="text", extra="", num_reviews=20000, seed=0,
      seq_len=256, path="", data_dir="", manual_dir=""))
  c.train.update(steps=14000, batch_size=4, lr=3e-3, schedule="constant", log_every=200,
                 eval_every=2000, eval_batches=32, checkpoint_every=2000, keep_checkpoints=2)
  # dataset: synthetic_reviews (its own num_reviews and seed, held out from the LM's) or
  # sst_binary (or another labelled builder: text_key, label_key); max_examples caps each
  # split (0: all); num_traced test texts get a per-character picture of the unit.
  c.probe = ml_collections.ConfigDict(dict(
      dataset="synthetic_reviews", text_key="", label_key="label", num_reviews=6000, seed=1,
      max_examples=0, num_traced=4, batch_size=64))
  # The sentiment unit comes from the probe run's summary.json. The clamp holds it past its
  # threshold by clamp_scale times the distance to the 1st / 99th percentile of its values on
  # the probe's training texts (c is unbounded, so values beyond that range are allowed).
  # Each sample follows burn_in bytes of free text, so it starts from a state reached by reading.
  c.generate = ml_collections.ConfigDict(dict(
      clamp_scale=1.0, num_samples=8, num_bytes=200, temperature=1.0, prompt="", seed=0,
      burn_in=200))

  if preset == "tiny":
    # Memories of up to 64 bytes at initialisation: long enough for the mood to carry from one
    # sentence to the next (at 32 the model never used it), short enough that an untrained
    # model's final state does not sum up the whole review (at 256 its best unit read 0.67).
    c.model = _model(mlstm.MLSTMConfig(hidden_dim=128, embed_dim=64, max_timescale=64.0))
    # Weight decay on the weight-norm gains (lineage.models.mlstm.decay_mask): it revives
    # units whose cells saturated early in training; without it the unit emerged for 1 seed
    # in 3.
    c.train.weight_decay = 0.1
  elif preset == "paper":
    c.model = _model(mlstm.MLSTMConfig(hidden_dim=4096, embed_dim=64))
    c.data.update(num_reviews=1_000_000)
    c.train.update(steps=1_000_000, batch_size=128, lr=5e-4, schedule="linear", log_every=100,
                   eval_every=5000, eval_batches=50, checkpoint_every=5000, keep_checkpoints=3)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny or paper")
  return c
