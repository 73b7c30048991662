"""GPT-2 (Radford et al. 2019): a pre-LN decoder LM trained by next-token prediction.

Tiny (the default; CPU, embedded synthetic corpus): about 45 s on 2 cores; expect a held-out
loss of about 0.5 nats/byte (82% next-byte accuracy) against a unigram entropy of 2.87:
  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/gpt2_tiny
Any local text file, byte-level:
  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/shakespeare \
      --config.data.name=text_file --config.data.path=input.txt
Paper sizes (117m, 345m, 762m, 1542m): the paper's shapes, context 1024, vocabulary
50257 and batch 512 x 1024 tokens; they need the GPT-2 BPE and an OpenWebText
builder from the data layer, and accelerators (see BUILD.md for meshes).
Sample from a run (seconds; tokens stream as they come; --temperature (0: greedy), --top_k,
--top_p, --max_new_tokens, --num_samples and --seed override config.sample):
  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/gpt2_tiny \
      --mode=sample --prompt="the red fox"
Sample the released GPT-2 weights (a Hugging Face directory, safetensors; no training run),
here with the paper's TL;DR summarization protocol on an article in a file:
  python -m experiments.gpt2 --config=configs/gpt2.py:117m --mode=sample \
      --config.init_from=hf:/models/gpt2 --config.data.vocab_dir=/models/gpt2_bpe \
      --sample_preset=tldr --prompt_file=article.txt
Export a run (or --config.init_from=DIR[@STEP]) for transformers (seconds):
  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/gpt2_tiny \
      --mode=export --export_dir=runs/gpt2_tiny_hf
What was measured, and how: docs/results/gpt2.md.
"""

import dataclasses

import jax
import ml_collections

from configs import common
from lineage.models import gpt

# Peak learning rates: GPT-2 does not publish them; these are GPT-3's for the nearest size.
PAPER_LR = {"117m": 6e-4, "345m": 3e-4, "762m": 2.5e-4, "1542m": 2e-4}


def _model(cfg: gpt.GPTConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def resolve_dtype(cfg):
  """model.dtype "auto" (the paper presets): bf16 compute on GPU and TPU, fp32 on CPU, whose
  bf16 matmuls are slow; parameters and optimizer state stay fp32 either way (see
  train.mu_dtype). Call after jax.distributed.initialize: it asks for the backend."""
  if cfg.model.dtype == "auto":
    cfg.model.dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset

  c.data = common.lm_data()
  c.train.update(steps=300, batch_size=16, lr=3e-3, warmup_steps=30, schedule="cosine",
                 min_lr_ratio=0.1, b2=0.95, weight_decay=0.1, log_every=25, eval_every=100,
                 eval_batches=8, checkpoint_every=100)
  # temperature 0 is greedy decoding.
  c.sample = ml_collections.ConfigDict(dict(
      prompt="the ", max_new_tokens=100, num_samples=4, temperature=0.8, top_k=0,
      top_p=0.95, seed=0))
  # --sample_preset=tldr, GPT-2's summarization protocol (section 3.6): the article, then
  # "\nTL;DR:", 100 tokens of top-k random sampling with k=2; the first 3 generated
  # sentences are the summary.
  c.sample.tldr = ml_collections.ConfigDict(dict(
      suffix="\nTL;DR:", max_new_tokens=100, top_k=2, top_p=1.0, temperature=1.0,
      summary_sentences=3))
  # GPT-2's zero-shot Table 3 (lineage.milestones.gpt2.zero_shot). datasets: comma-separated
  # keys of its DATASETS; context 0 = the model's; stride 0 = context // 2; max_examples caps
  # passages, questions or lines and max_bytes the enwik8/text8 test bytes (0: all) for quick
  # runs; manual_dir: root of the upstream files ("" = $LINEAGE_MANUAL_DIR); detokenize=False
  # scores the benchmarks' own tokenization instead of the invertible detokenizers' prose;
  # eot_prefix: every text starts after <|endoftext|> (False: as lm-evaluation-harness's
  # loglikelihood requests); documents: stream (context crosses WikiText's articles) or
  # article (context restarts at each article, as lm-evaluation-harness's wikitext).
  c.zero_shot = ml_collections.ConfigDict(dict(
      datasets="lambada,cbt_cn,cbt_ne,wikitext2,ptb,enwik8,text8,wikitext103,1bw",
      context=0, stride=0, batch_size=8, max_examples=0, max_bytes=0, manual_dir="",
      lambada_normalize_quotes=False, detokenize=True, eot_prefix=True, documents="stream"))

  if preset == "tiny":
    c.model = _model(gpt.GPTConfig(vocab_size=257, context=128, num_layers=4, num_heads=4,
                                   embed_dim=128, mlp_dim=512, dropout=0.0))
  elif preset in PAPER_LR:
    c.model = _model(gpt.PRESETS[f"gpt2_{preset}"])
    c.model.dtype = "auto"
    c.data.update(name="openwebtext", tokenizer="gpt2", seq_len=1024)
    c.train.update(steps=600_000, batch_size=512, lr=PAPER_LR[preset], warmup_steps=2000,
                   log_every=10, eval_every=1000, eval_batches=50, checkpoint_every=1000)
    c.sample.update(max_new_tokens=256, top_k=40, top_p=1.0, temperature=1.0)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny, {', '.join(PAPER_LR)}")
  return c
