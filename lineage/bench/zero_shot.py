"""Zero-shot scoring speed: our jitted Scorer against a plain transformers forward loop over the
same WikiText-2 windows and weights, measured in the same run. torch and transformers are
test-only dependencies, imported only when this runs."""

import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lineage.data import builders, tokenizers
from lineage.eval import detokenize, lm_metrics, scoring, zero_shot
from lineage.interop import hf_gpt2
from lineage.models import config as model_config_lib
from lineage.models import gpt


def _wikitext2_windows(cfg, tokenizer, context, count):
  """The first `count` zero-shot scoring windows of WikiText-2 test, as Table 3 scores them."""
  lines = [r["text"].decode() for r in builders.load(
      "wikitext2", "test", data_dir=cfg.data.data_dir or None,
      manual_dir=cfg.data.manual_dir or None)]
  ids = zero_shot.corpus_ids(tokenizer, lines, detokenize.wikitext)
  stride = cfg.zero_shot.stride or context // 2
  windows = lm_metrics.sliding_windows(zero_shot.with_bos(tokenizer, ids), context, stride)
  if len(windows) < count:
    raise ValueError(f"WikiText-2 test has {len(windows)} windows of {context}; ask for fewer")
  return windows[:count]


def _hf_window_logprobs(model, windows, batch):
  """Summed target log-probs per window with a plain transformers forward loop."""
  import torch  # pylint: disable=import-outside-toplevel
  sums = []
  with torch.no_grad():
    for first in range(0, len(windows), batch):
      rows = windows[first:first + batch]
      length = max(len(w.tokens) for w in rows) - 1
      inputs = torch.zeros((len(rows), length), dtype=torch.long)
      targets, weights = torch.zeros_like(inputs), torch.zeros(inputs.shape)
      for row, window in enumerate(rows):
        n = len(window.tokens) - 1
        inputs[row, :n] = torch.from_numpy(window.tokens[:-1].astype(np.int64))
        targets[row, :n] = torch.from_numpy(window.tokens[1:].astype(np.int64))
        weights[row, n - window.num_targets:n] = 1.0
      logp = torch.log_softmax(model(inputs).logits, dim=-1)
      sums.extend(((logp.gather(-1, targets[..., None])[..., 0]) * weights).sum(-1).tolist())
  return np.array(sums)


def bench_zero_shot(cfg, batch, steps, warmup, seed=0):
  """Zero-shot scoring tokens/s: our jitted Scorer against a transformers GPT2LMHeadModel
  forward loop (eval mode, no_grad) on the same WikiText-2 windows and the same weights."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  model_cfg = model_config_lib.from_config(gpt.GPTConfig, cfg.model)
  tokenizer = tokenizers.make_tokenizer("gpt2", vocab_dir=cfg.data.vocab_dir or None)
  context = cfg.zero_shot.context or model_cfg.context
  windows = _wikitext2_windows(cfg, tokenizer, context, batch * steps)
  tokens = sum(len(w.tokens) - 1 for w in windows)
  init = lambda rng: nn.unbox(gpt.GPT(model_cfg).init(rng, jnp.zeros((1, 8), jnp.int32))["params"])
  params = jax.jit(init)(jax.random.PRNGKey(seed))
  scorer = scoring.Scorer(model_cfg, params, batch_size=batch, max_len=context,
                          valid_vocab=tokenizer.vocab_size)
  for _ in range(warmup):  # Compiles both shapes: the first window scores all its tokens.
    scorer.score(windows[:batch] + windows[-batch:])
  start = time.perf_counter()
  our_sums = scorer.score(windows).logprob
  ours = time.perf_counter() - start
  with tempfile.TemporaryDirectory() as hf_dir:
    hf_gpt2.export_hf(model_cfg, params, hf_dir, eot_id=tokenizer.eot_id)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
  for _ in range(warmup):
    _hf_window_logprobs(hf_model, windows[:batch], batch)
  start = time.perf_counter()
  hf_sums = _hf_window_logprobs(hf_model, windows, batch)
  theirs = time.perf_counter() - start
  difference = float(np.abs(our_sums - hf_sums).max())
  return {"what": "zero_shot", "tokens_per_sec": tokens / ours,
          "hf_tokens_per_sec": tokens / theirs, "speedup": theirs / ours, "tokens": tokens,
          "windows": len(windows), "context": context, "batch": batch,
          "max_abs_logprob_difference": difference, "torch_threads": torch.get_num_threads(),
          "backend": jax.default_backend(), "baseline": "transformers", "ratio": theirs / ours,
          "pairs": 1, "baselines": {"transformers": {
              "tokens_per_sec": tokens / theirs, "seconds_median": theirs,
              "ratio": theirs / ours, "pair_ratios": [theirs / ours]}}}
