"""DALL-E's modes: train_dvae (stage one), train (stage two) and sample (generation for the
dataset's prompts, the judge, CLIP reranking, the grids and summary.json)."""

import json
import os

from lineage.milestones.dalle import datasets, stages
from lineage.milestones.dalle import sample as sample_lib
from lineage.train import metrics as metrics_lib


def run_train_dvae(cfg, workdir):
  """Stage one; its summary says whether the held-out bounds of the config are met."""
  params, summary = stages.train_dvae(cfg, workdir)
  return params, dvae_acceptance(cfg, summary)


def dvae_acceptance(cfg, summary):
  dc = cfg.dvae
  return {"recon_mse": summary["eval_recon_mse"], "recon_bound": dc.recon_bound,
          "recon_within_bound": summary["eval_recon_mse"] < dc.recon_bound,
          "token_roundtrip": summary["eval_token_roundtrip"],
          "roundtrip_bound": dc.roundtrip_bound,
          "roundtrip_within_bound": summary["eval_token_roundtrip"] >= dc.roundtrip_bound,
          "roundtrip_image_mse": summary["eval_roundtrip_image_mse"],
          "codes_used": summary["eval_codes_used"]}


def run_train(cfg, workdir, dvae_params=None):
  return stages.train_transformer(cfg, workdir, dvae_params)


def run_sample(cfg, workdir, dvae_params=None, params=None, score=None):
  """Samples, judges and reranks; writes summary.json and the two grids into workdir."""
  dvae_params = stages.load_dvae(cfg, workdir) if dvae_params is None else dvae_params
  params = stages.load_transformer(cfg, workdir) if params is None else params
  data = datasets.load(cfg.data)
  judge, judge_summary = data.train_judge(cfg.sample)
  judge_summary["recon_match_rate"] = sample_lib.reconstruction_match(cfg, dvae_params, judge,
                                                                      data=data)
  result, shown = sample_lib.evaluate(cfg, params, dvae_params, judge, score, data)
  if cfg.sample.bench_rounds:
    result.update(sample_lib.benchmark(cfg, params, cfg.sample.bench_rounds,
                                       cfg.sample.bench_batch))
  dvae_summary = json.load(open(os.path.join(workdir, stages.DVAE_DIR, "summary.json")))
  summary = {**dvae_acceptance(cfg, dvae_summary), **judge_summary, **result,
             "match_bound": cfg.sample.match_bound,
             "match_within_bound": result["match_rate"] >= cfg.sample.match_bound}
  rows = list(range(0, result["prompts"], max(1, result["prompts"] // cfg.sample.grid_captions)))
  rows = rows[:cfg.sample.grid_captions]
  sample_lib.plot_grid(shown, os.path.join(workdir, "samples.png"), rows, reranked=False)
  if score is not None:
    sample_lib.plot_grid(shown, os.path.join(workdir, "samples_reranked.png"), rows, True)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  metrics_lib.console("samples: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()
                                               if isinstance(v, float)))
  return summary
