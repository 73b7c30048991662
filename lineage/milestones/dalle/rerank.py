"""CLIP reranking: how well each sample matches its caption, by a CLIP run of the clip
milestone (DALL-E comes after CLIP in the lineage, so it may import it).

The paper draws 512 samples per caption and keeps the ones CLIP scores highest; here the
score of an image and its caption is the cosine similarity of their CLIP embeddings.
"""

import os

import numpy as np

from lineage.milestones import clip as clip_milestone
from lineage.train import metrics as metrics_lib

TOUR_RUN = os.path.join("clip", "shapes")  # where the clip tour section trains its model


def pair_scores(encoder, images, texts):
  """Cosine similarity of each image with its own caption: [n]."""
  unique = sorted(set(texts))
  text_emb = encoder.embed_texts(unique)
  rows = np.asarray([unique.index(t) for t in texts])
  return np.sum(encoder.embed_images(images) * text_emb[rows], axis=-1)


def _has_run(run_dir):
  return bool(run_dir) and os.path.isdir(os.path.join(run_dir, "checkpoints"))


def scorer(cfg, run_dir, tour_dir=None):
  """(score(images, texts) -> [n], a description of the CLIP used).

  sample.clip_dir when set; else, for the shapes, the clip tour section's run under tour_dir
  when the tour made one; else the config's `clip` section trained under run_dir/clip (once:
  a rerun finds it).
  """
  clip_dir = cfg.sample.clip_dir
  if clip_dir and not _has_run(clip_dir):
    raise FileNotFoundError(f"sample.clip_dir={clip_dir!r} holds no CLIP run (no checkpoints/); "
                            "train one with python -m experiments.clip --mode=train, or leave "
                            "clip_dir empty to train a tiny one here")
  tour_run = tour_dir and cfg.data.name == "shapes" and os.path.join(tour_dir, TOUR_RUN)
  if not clip_dir and tour_run and _has_run(tour_run):
    clip_dir, source = tour_run, "the clip section's"
  elif clip_dir:
    source = clip_dir
  else:
    clip_dir = os.path.join(run_dir, "clip")
    clip_cfg = cfg.clip.copy_and_resolve_references()
    clip_cfg.unlock()  # a copy of its own, free of the binary's lock on the DALL-E config
    if not _has_run(clip_dir) or not os.path.exists(os.path.join(clip_dir, "summary.json")):
      metrics_lib.console(f"training a {clip_cfg.preset} CLIP under {clip_dir} to "
                          "rerank with")
      clip_milestone.run("train", clip_cfg, clip_dir)
    source = f"configs/clip.py:{clip_cfg.preset}, trained here"
  encoder = clip_milestone.load(clip_dir)
  return (lambda images, texts: pair_scores(encoder, images, texts)), source
