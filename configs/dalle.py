"""DALL-E (Ramesh et al. 2021): a discrete VAE turns images into grids of tokens, a decoder-only
transformer models [caption tokens; image tokens], and CLIP reranks the samples.

Tiny (the default; CPU, the embedded synthetic shapes): a dVAE from 32x32 scenes to a 16x16
grid of 64 codes, then a 4-layer, 128-wide transformer over 12 caption words and 256 image
tokens, 3,000 steps, trained on scenes that never show the held-out shape-colour pairs
(circle-red, square-green, ...). Sampling draws images for prompts naming only held-out pairs;
a small CNN trained on the renderer's ground truth judges whether each shows the shape and
colour asked for, before and after CLIP reranks the samples of each prompt:
  python -m experiments.dalle --config=configs/dalle.py:tiny --workdir=runs/dalle --mode=train_dvae
  python -m experiments.dalle --config=configs/dalle.py:tiny --workdir=runs/dalle --mode=train
  python -m experiments.dalle --config=configs/dalle.py:tiny --workdir=runs/dalle --mode=sample \
      [--config.sample.clip_dir=runs/clip_tiny]
Without clip_dir, sample first trains the CLIP of the `clip` section (configs/clip.py's preset
for the same data) under workdir/clip.
Digits (`:digits`, the tour's): scikit-learn's real 8x8 digits to a 4x4 grid, 600 steps, every
digit prompted in each caption template, judged by a classifier of the real digits.
Expected: held-out reconstruction error below dvae.recon_bound with the token round trip above
dvae.roundtrip_bound, and at least sample.match_bound of the samples matching their caption,
more after reranking (summary.json; docs/results/dalle.md has the measured numbers and
runtimes: the tiny preset takes about 40 minutes on 2 CPU cores, digits about 2).
Paper (12b): a 256x256 dVAE to 32x32 grids of 8,192 codes (KL weight 0 -> 6.6 over 5,000
updates, temperature 1 -> 1/16 over 150,000), a 64-layer, 3,968-wide transformer with 62
heads over 256 BPE text tokens and 1,024 image tokens, 512 samples per caption reranked by
CLIP: the shapes here, not the paper's 250M pairs; accelerators only.
"""

import ml_collections

from configs import clip as clip_config
from configs import common


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  # name: shapes | digits (lineage/milestones/dalle/datasets.py). For shapes, num_train
  # training scenes (never a held-out pair) and num_eval held-out-pair scenes for the eval
  # loss; the digits use their builder's splits whole (data_dir: where it is prepared).
  c.data = ml_collections.ConfigDict(dict(name="shapes", seed=0, num_train=6000, num_eval=256,
                                          data_dir=""))
  # Stage one. tau: 1 -> tau_end over tau_fraction of the steps; beta: 0 -> beta_max over
  # beta_fraction (0.1 here: against our Gaussian reconstruction term, 1.0 kept the codes near
  # uniform and the held-out reconstructions blurred; docs/results/dalle.md). The bounds are
  # the acceptance: held-out squared error per pixel channel (pixels in [0, 1]) below
  # recon_bound, and encode(decode(tokens)) == tokens on at least roundtrip_bound of the grid
  # cells of held-out images. downsample 2: a 16x16 grid (at 8x8, red and yellow shapes
  # decoded alike).
  c.dvae = ml_collections.ConfigDict(dict(
      model=dict(image_size=32, channels=3, downsample=2, num_codes=64, hidden=32, code_dim=32,
                 sigma=0.1),
      train=common.get_config().train, tau_end=1 / 16, tau_fraction=0.8, beta_max=0.1,
      beta_fraction=0.3, num_train=4000, num_eval=256, recon_bound=0.01,
      roundtrip_bound=0.85))
  c.dvae.train.update(steps=400, batch_size=32, lr=2e-3, warmup_steps=20, schedule="cosine",
                      min_lr_ratio=0.1, log_every=50, eval_every=400, checkpoint_every=400)
  # Stage two: the transformer's shape (text_vocab, image_vocab and image_grid come from the
  # tokenizer and the dVAE).
  c.model = ml_collections.ConfigDict(dict(text_len=12, num_layers=4, num_heads=4,
                                           embed_dim=128, mlp_dim=512, dropout=0.0,
                                           dtype="float32", attention_impl="auto"))
  # 3,000 steps: at 500 the samples were blobs of the right colour (shape at chance), at
  # 1,000 half the held-out samples matched (docs/results/dalle.md).
  c.train.update(steps=3000, batch_size=32, lr=2e-3, warmup_steps=50, schedule="cosine",
                 min_lr_ratio=0.1, weight_decay=0.01, log_every=100, eval_every=500,
                 eval_batches=8, checkpoint_every=500)
  # Sampling: per_caption images for each prompt (16: 640 samples of the 40 held-out-pair
  # prompts, every pair at every size and position, a standard error of about 0.02 on the
  # match rate; and CLIP keeps the best of 16); clip_dir: a CLIP run (experiments/clip.py) to rerank with, or "" to train
  # the `clip` section's CLIP under workdir/clip. judge: the shape-and-colour CNN's scenes
  # and steps. match_bound: the acceptance's share of samples that must match their caption.
  # bench_rounds: alternating rounds of sampling bench_batch images with and without the KV
  # cache (0 skips the benchmark).
  c.sample = ml_collections.ConfigDict(dict(
      per_caption=16, temperature=1.0, top_k=0, seed=0, clip_dir="",
      judge_scenes=3000, judge_steps=200, match_bound=0.6, grid_captions=5, bench_rounds=3,
      bench_batch=8))

  # The CLIP that reranks when sample.clip_dir is empty (configs/clip.py's preset for the
  # same data), trained under workdir/clip; --config.clip.train.steps=... and so on apply.
  c.clip = clip_config.get_config("tiny")

  if preset == "tiny":
    pass
  elif preset == "digits":
    c.data.update(name="digits")
    c.dvae.model.update(image_size=8, channels=1, downsample=2, num_codes=64)
    # The whole test split (num_train is capped at the 1,437 training digits); 2x2 patches of
    # 17 grey levels in a few dozen codes blur more than the shapes' flat colours do.
    c.dvae.update(num_eval=360, recon_bound=0.02)
    c.model.update(text_len=8)
    c.train.update(steps=600, lr=1e-3, log_every=50, eval_every=300, checkpoint_every=300)
    c.sample.update(per_caption=8, grid_captions=10)
    c.clip = clip_config.get_config("digits")
  elif preset == "12b":
    c.dvae.model.update(image_size=256, downsample=8, num_codes=8192, hidden=256, code_dim=256)
    c.dvae.update(beta_max=6.6)
    c.dvae.train.update(steps=3_000_000, batch_size=512, lr=4e-4)
    c.dvae.update(tau_fraction=150_000 / 3_000_000, beta_fraction=5000 / 3_000_000)
    c.model.update(text_len=256, num_layers=64, num_heads=62, embed_dim=3968,
                   mlp_dim=4 * 3968, dtype="bfloat16")
    c.train.update(steps=430_000, batch_size=1024, lr=4.5e-4, warmup_steps=5000,
                   weight_decay=4.5e-2)
    c.sample.update(per_caption=512)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny, digits or 12b")
  return c
