"""experiments/bench.py --what=dalle_sampling: images/s drawn with the KV cache
(lineage.decode.Generator) against the same sampling with no cache, where every new image
token reruns the whole stream, in alternating rounds of one run (sample.benchmark). The
weights are freshly initialised: the speed of a step does not depend on what the model has
learned, and every image has all its tokens sampled either way."""

import jax
from flax import linen as nn

from lineage.milestones.dalle import sample, stages
from lineage.models import dalle


def bench_dalle_sampling(cfg, batch, pairs, seed=0):
  model_cfg = stages.transformer_config(cfg)
  params = nn.unbox(dalle.init_params(model_cfg, jax.random.PRNGKey(seed)))
  result = sample.benchmark(cfg, params, rounds=pairs, batch=batch)
  tokens = lambda images_per_sec: images_per_sec * model_cfg.image_len
  return {"what": "dalle_sampling", "batch": result["bench_batch"], "pairs": pairs,
          "text_len": model_cfg.text_len, "image_len": model_cfg.image_len,
          "images_per_sec": result["images_per_sec_kv_cache"],
          "tokens_per_sec": tokens(result["images_per_sec_kv_cache"]),
          "baseline": "no_kv_cache", "ratio": result["kv_cache_speedup"],
          "backend": jax.default_backend(),
          "baselines": {"no_kv_cache": {
              "images_per_sec": result["images_per_sec_no_cache"],
              "tokens_per_sec": tokens(result["images_per_sec_no_cache"]),
              "ratio": result["kv_cache_speedup"],
              "pair_ratios": result["kv_cache_round_ratios"]}}}
