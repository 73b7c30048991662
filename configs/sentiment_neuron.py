"""The sentiment neuron (Radford, Jozefowicz, Sutskever 2017): a byte mLSTM language model
whose single cell unit turns out to track sentiment.

Tiny (the default; CPU, embedded synthetic reviews 3.1.0): 128 units with initial memories of
up to 64 bytes, 14,000 steps of 4 x 256 bytes at a constant Adam 3e-3 (on a CPU the bytes per
second barely depend on the batch, and small steps at an undecayed rate got furthest in a fixed
budget), and weight decay 0.1 on the weight-norm gains (lineage.models.mlstm.decay_mask).
Why the decay: within its first 100 steps, training turns most long-memory units into
saturated integrators (|c| in the tens, so tanh passes them no gradient), and the mood the
untrained state held at each opinion word is gone from h. Without decay, the LM started to use
the mood only when a unit happened to come back (after a loss spike, for the one seed in three
that switched on synthetic reviews 3.0.0); decaying the gains pulls such units back, and on
3.0.0 the two seeds that had not switched by 14,000 steps did so by 5,000.
Measured on one CPU core (taskset -c N), seeds 0 to 4 (train.seed): train about 7.8 min
(34k bytes/s), probe and generation about 35 s each. The LM switched to using the mood for
every seed: its prefix gap (summary.json's lm_prefix_gap_nats, lineage.eval.mood_memory: how
much likelier the next sentence's opinion word is after a same-mood sentence than after an
other-mood one) was at most 0.5 nats at 4,000 steps and over 1 nat by 6,000 (seed 1: 0.73 at
8,000, 1.32 at 10,000).
On 300 held-out reviews (clamped: the mean lexicon score of 32 samples with the unit clamped
positive / negative / free):
  seed 0: unit #40 1.000, 0.580 at init; L1 probe 1.000 with 1 of 128 units; gap +3.85 nats;
          clamped +0.98 / -0.97 / +0.30; held-out LM loss 0.246 nats/byte
  seed 1: unit #11 0.967, 0.553 at init; L1 probe 0.987 with 78 units; gap +2.00;
          clamped +0.71 / +0.64 / +0.47 (switched last, at about 8,000 steps: the mood is
          spread over units and clamping one does not steer; probe 2.7 min)
  seed 2: unit #26 1.000, 0.650 at init; L1 1.000 with 1 unit; gap +3.86; +0.88 / -0.52 / +0.54
  seed 3: unit #71 1.000, 0.577 at init; L1 1.000 with 1 unit; gap +4.64; +0.99 / -0.95 / -0.18
  seed 4: unit #88 1.000, 0.600 at init; L1 1.000 with 2 units; gap +3.41; +0.89 / -0.95 / +0.63
Bag of words reads 1.000 for every seed. `make tour` on a 2-core machine (seed 0, two threads,
so other floating-point sums than the one-core run): unit #117 1.000, 0.580 at init; L1 1.000
with 2 units; gap +4.68; +0.95 / -0.96 / -0.67; training 7.2 min. Without the decay, seed 1 had
not switched by 14,000 steps (gap +0.000, held-out loss 0.269 against 0.250); weight decay 0.3
switched later or not at all (seed 2 not by 12,000 steps). A run whose lm_prefix_gap_nats stays
near 0 has not switched.
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=train
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=probe       # summary.json, *.png
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_tiny --mode=generate    # generate.json
SST binary (real data from $LINEAGE_MANUAL_DIR/sst_binary): an LM on the SST training
sentences plus synthetic reviews and tiny_shakespeare, then the probe on SST. Measured with
the tiny preset (train 8.3 min on one core, probe about 3 to 5 min): L1 probe 0.593 test
accuracy on the 1,821 test sentences (66 of 128 units), single unit 0.528 (0.523 at init), bag
of words 0.807, prefix gap +0.09 nats; at this scale the LM learns little sentiment from real
text:
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_sst --mode=train --config.data.name=sst_binary \
      --config.data.text_key=sentence --config.data.extra=synthetic_reviews,tiny_shakespeare
  python -m experiments.sentiment_neuron --config=configs/sentiment_neuron.py:tiny \
      --workdir=runs/sentiment_sst --mode=probe --config.probe.dataset=sst_binary
Paper: 4096 units, a 64-dimensional byte embedding, batch 128 x 256 bytes, Adam at 5e-4
decayed linearly to 0 over 1M updates (one epoch of 82M Amazon reviews, which lineage does
not ship: point data.name at any text builder). It needs accelerators.
"""

import dataclasses

import ml_collections

from lineage.models import mlstm


def _model(cfg: mlstm.MLSTMConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def get_config(preset="tiny"):
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.init_from = ""
  c.peak_flops = 0.0  # 0: known accelerator table, or a measured matmul rate on CPU

  # name: synthetic_reviews (num_reviews from seed) or any builder of lineage.data.builders,
  # whose text_key field holds the text; extra: more builders ("name" or "name:field",
  # comma-separated) whose training splits join the LM's text; or text_file, one text per
  # line of `path` (the last 5% held out). Texts go through the paper's preprocessing
  # (lineage.eval.probe.preprocess); seq_len is the truncated-BPTT chunk.
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic_reviews", text_key="text", extra="", num_reviews=20000, seed=0,
      seq_len=256, path="", data_dir="", manual_dir=""))
  c.train = ml_collections.ConfigDict(dict(
      steps=14000, batch_size=4, micro_batches=1, lr=3e-3, warmup_steps=0, schedule="constant",
      min_lr_ratio=0.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
      log_every=200, eval_every=2000, eval_batches=32, checkpoint_every=2000, keep_checkpoints=2,
      seed=0, mu_dtype=""))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
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
  c.debug = ml_collections.ConfigDict(dict(nan_at_step=-1))

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
