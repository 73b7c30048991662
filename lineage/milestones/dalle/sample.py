"""Sampling N images per prompt, judging them, and reranking them with CLIP.

For the shapes every prompt names a held-out (shape, colour) pair, one the transformer never
saw in a caption or an image; for the digits, a digit in one of the caption templates
(datasets.py). The transformer samples `per_caption` image-token grids per prompt
through `lineage.decode.Generator` (one compiled call for the whole batch), the dVAE decodes
them, and the judge reads in each what its prompt asked for. The match rate is the share of all
samples that show what their prompt asked for: the rate of one sample drawn at random. The
reranked rate keeps, per prompt, the sample CLIP scores highest against the prompt: the rate
of the paper's reranking with one image kept.
"""

import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lineage.decode import Generator, Sampling  # noqa: E402
from lineage.milestones.dalle import datasets, stages  # noqa: E402
from lineage.models import dalle  # noqa: E402


def generate(cfg, params, dvae_params, texts, per_caption, seed=0, data=None):
  """uint8 images [len(texts), per_caption, H, W, C] sampled for each caption."""
  m, d, s = stages.transformer_config(cfg), stages.dvae_config(cfg), cfg.sample
  prompts = np.repeat(stages.caption_tokens(cfg, texts, data), per_caption, axis=0)
  generator = Generator(*dalle.decoding(m), m.context)
  codes = generator.generate(params, prompts.tolist(), m.image_len,
                             sampling=Sampling(temperature=s.temperature, top_k=s.top_k),
                             rng=jax.random.PRNGKey(seed))
  images = stages.decode_tokens(d, dvae_params, np.asarray(codes, np.int32))
  return images.reshape(len(texts), per_caption, *images.shape[1:])


def evaluate(cfg, params, dvae_params, judge, score=None, data=None):
  """{match_rate, reranked_match_rate (with `score`), ...} over the dataset's prompts, and
  the images, their matches and the reranking order for the grids.

  score(images uint8 [n, H, W, C], texts [n]) -> similarities [n] (CLIP's).
  """
  data = data or datasets.load(cfg.data)
  texts, targets = data.prompts()
  per = cfg.sample.per_caption
  images = generate(cfg, params, dvae_params, texts, per, cfg.sample.seed, data)
  flat = images.reshape(-1, *images.shape[2:])
  ok = judge.matches(flat, np.repeat(targets, per, axis=0)).reshape(-1, per)
  result = {"prompts": len(texts), "per_caption": per, "match_rate": float(ok.mean()),
             "match_rate_stderr": float(np.sqrt(ok.mean() * (1 - ok.mean()) / ok.size))}
  order = np.tile(np.arange(per), (len(texts), 1))
  if score is not None:
    sims = np.asarray(score(flat, [t for t in texts for _ in range(per)])).reshape(-1, per)
    order = np.argsort(-sims, axis=1, kind="stable")
    result["reranked_match_rate"] = float(ok[np.arange(len(texts)), order[:, 0]].mean())
  return result, {"texts": texts, "images": images, "ok": ok, "order": order}


def plot_grid(shown, path, rows, reranked):
  """A PNG: one row per caption, its samples in drawn order or CLIP's order (best first),
  each titled by whether the judge found the asked-for shape and colour."""
  texts, images, ok, order = (shown[k] for k in ("texts", "images", "ok", "order"))
  picks = [order[i] if reranked else np.arange(images.shape[1]) for i in rows]
  cols = images.shape[1]
  fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 2.2, 1.2 * len(rows)),
                           squeeze=False)
  for r, (i, pick) in enumerate(zip(rows, picks)):
    for c, j in enumerate(pick):
      ax = axes[r][c]
      image = images[i, j]
      ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                interpolation="nearest")
      ax.set_xticks([]), ax.set_yticks([])
      for side in ax.spines.values():
        side.set_color("green" if ok[i, j] else "red")
        side.set_linewidth(2)
    axes[r][0].set_ylabel(texts[i].removeprefix("a "), rotation=0, ha="right", va="center",
                          fontsize=7)
  title = "CLIP-reranked, best first" if reranked else "as sampled"
  fig.suptitle(f"DALL-E samples per prompt ({title}; green: the judge agrees)",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def benchmark(cfg, params, rounds=3, batch=8):
  """Images/s sampled with the KV cache (Generator) and without (every step reruns the whole
  stream), in alternating rounds after a compiling call of each; the median of the per-round
  ratios."""
  m, s = stages.transformer_config(cfg), cfg.sample
  texts, _ = datasets.load(cfg.data).prompts()
  text = stages.caption_tokens(cfg, (texts * batch)[:batch])
  sampling = Sampling(temperature=s.temperature, top_k=s.top_k)
  generator = Generator(*dalle.decoding(m), m.context)
  cached = lambda: np.asarray(generator.generate(params, text.tolist(), m.image_len,
                                                 sampling=sampling, rng=jax.random.PRNGKey(1)))
  uncached = lambda: np.asarray(dalle.sample_without_cache(
      m, params, text, jax.random.PRNGKey(1), sampling.values(), sampling.flags))
  cached(), uncached()
  with_cache, without = [], []
  for _ in range(rounds):
    for fn, times in ((cached, with_cache), (uncached, without)):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  ratios = np.asarray(without) / np.asarray(with_cache)
  return {"images_per_sec_kv_cache": float(len(text) / np.median(with_cache)),
          "images_per_sec_no_cache": float(len(text) / np.median(without)),
          "kv_cache_speedup": float(np.median(ratios)), "bench_batch": len(text),
          "bench_rounds": rounds, "kv_cache_round_ratios": [float(r) for r in ratios]}


def reconstruction_match(cfg, dvae_params, judge, n=200, data=None):
  """The share of held-out images whose dVAE reconstruction, decode(encode(x)), the judge
  still reads as what they show: the ceiling of any sample's match."""
  data = data or datasets.load(cfg.data)
  held = data.eval(n)
  d = stages.dvae_config(cfg)
  recon = stages.decode_tokens(d, dvae_params, stages.encode_images(d, dvae_params, held.images))
  return float(judge.matches(recon, data.eval_targets(len(held.images))).mean())
