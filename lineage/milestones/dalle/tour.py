"""DALL-E's part of `make tour`: on the real handwritten digits (the `digits` preset), train
the dVAE and the transformer, sample images for every caption, judge them, rerank them with
a digits CLIP trained here, and show a grid per caption before and after reranking. The
shapes' held-out pairs need a longer run than the section's 3 minutes on 2 CPU cores; the
section says where its numbers are."""

import os

from lineage import milestones
from lineage.milestones.dalle import modes, rerank

SHAPES_RESULTS = "docs/results/dalle.md"


def run(cfg, workdir):
  run_dir = os.path.join(workdir, "dalle")
  dvae_params, _ = modes.run_train_dvae(cfg, run_dir)
  params, train_summary = modes.run_train(cfg, run_dir, dvae_params)
  score, clip_source = rerank.scorer(cfg, run_dir, tour_dir=workdir)
  s = modes.run_sample(cfg, run_dir, dvae_params, params, score)
  for name in ("samples", "samples_reranked"):
    os.replace(os.path.join(run_dir, f"{name}.png"), os.path.join(workdir, f"dalle_{name}.png"))
  d, m = cfg.dvae.model, cfg.model
  judge = ", ".join(f"{k.removeprefix('judge_').replace('_', ' ')} {v:.1%}" for k, v in s.items()
                    if k.startswith("judge_"))
  return f"""## DALL-E (2021): images as tokens, drawn by a transformer, reranked by CLIP

Data: `{cfg.data.name}`. A discrete VAE ({d.image_size}x{d.image_size} images to a {
d.image_size // d.downsample}x{d.image_size // d.downsample} grid of {d.num_codes} codes;
Gumbel-softmax temperature 1 -> {cfg.dvae.tau_end:.4g}, KL weight 0 -> {cfg.dvae.beta_max})
trained for {cfg.dvae.train.steps} steps: held-out reconstruction error {s['recon_mse']:.4f}
per pixel (bound {s['recon_bound']}), encode(decode(tokens)) == tokens on {
s['token_roundtrip']:.1%} of held-out grid cells (bound {s['roundtrip_bound']:.0%}), {
s['codes_used']:.0f} codes in use. Then a {m.num_layers}-layer, {m.embed_dim}-wide transformer
over {m.text_len} caption words and the image tokens, {cfg.train.steps} steps (loss 1/8 text
+ 7/8 image; held-out eval loss {train_summary['eval_loss']:.3f}).

{s['prompts']} prompts, {s['per_caption']} samples each. The judge (trained on the data's
ground truth, never CLIP; {judge} on held-out real images; {s['recon_match_rate']:.1%} on
the dVAE's reconstructions, the ceiling of any sample) finds what the caption asked for in
**{s['match_rate']:.1%}** of the samples; keeping the one CLIP ({clip_source}) scores highest
per prompt: **{s['reranked_match_rate']:.1%}**. Sampling with the KV cache: {
s['images_per_sec_kv_cache']:.1f} images/s, without it {s['images_per_sec_no_cache']:.1f}
({s['kv_cache_speedup']:.1f}x).

The synthetic shapes, prompted only with shape-colour pairs never seen in training, take a
longer run (`--config=configs/dalle.py:tiny`); its numbers are in {SHAPES_RESULTS}.

![samples](dalle_samples.png)

![reranked](dalle_samples_reranked.png)
"""


SECTION = milestones.TourSection("dalle", "configs/dalle.py:digits", run)
