"""DALL-E (Ramesh et al. 2021) at small scale: a discrete VAE, a transformer over [caption;
image tokens], sampling per prompt, a ground-truth judge and CLIP reranking, on the synthetic
shapes (held-out shape-colour pairs) or the real digits. experiments/dalle.py is its binary;
every mode works in one workdir (dvae/, transformer/, clip/ when it trains its own reranker,
then the samples, summary.json and the grids at its top)."""

from lineage.milestones.dalle import modes, rerank

# --mode=NAME, in the order a run goes through them; each reads what the one before wrote.
MODES = ("train_dvae", "train", "sample")


def run(mode, cfg, workdir):
  if mode == "train_dvae":
    return modes.run_train_dvae(cfg, workdir)
  if mode == "train":
    return modes.run_train(cfg, workdir)
  if mode == "sample":
    score, _ = rerank.scorer(cfg, workdir)
    return modes.run_sample(cfg, workdir, score=score)
  raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
