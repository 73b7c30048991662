"""The 2017 Transformer's training task: translation pairs in one shared byte-pair vocabulary,
batched by token count, a label-smoothed loss, and BLEU of beam-searched translations as the
loop's evaluation hook.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import sacrebleu

from lineage.data import builders, pair_batches, tokenizers
from lineage.milestones.transformer import language
from lineage.models import config as model_config_lib
from lineage.models import transformer
from lineage.train import loop, sharding
from lineage.train import metrics as metrics_lib


def model_config(cfg, vocab_size=None):
  """The model's config; vocab_size, when given, is the tokenizer's."""
  model_cfg = model_config_lib.from_config(transformer.TransformerConfig, cfg.model)
  if vocab_size is not None and vocab_size > model_cfg.vocab_size:
    raise ValueError(f"the tokenizer has {vocab_size} tokens but model.vocab_size is "
                     f"{model_cfg.vocab_size}; raise --config.model.vocab_size")
  return model_cfg


# Real language pairs: their builders' name for the test split (the paper's test sets).
TEST_SPLITS = {"multi30k": "test2016", "wmt14": "test"}


def text_pairs(data_cfg, split):
  """(source, target) strings of a split: the synthetic pair, Multi30k, or WMT14 (data.source
  and data.target name the real pairs' languages; WMT14's test split is newstest2014)."""
  if data_cfg.name == "synthetic":
    count, seed = {"train": (data_cfg.train_pairs, data_cfg.seed),
                   "validation": (data_cfg.eval_pairs, data_cfg.seed + 1),
                   "test": (data_cfg.eval_pairs, data_cfg.seed + 2)}[split]
    return language.pairs(count, seed)
  if data_cfg.name in TEST_SPLITS:
    split = TEST_SPLITS[data_cfg.name] if split == "test" else split
    source = builders.load(data_cfg.name, split, data_dir=data_cfg.data_dir or None,
                           manual_dir=data_cfg.manual_dir or None)
    return [(r[data_cfg.source].decode(), r[data_cfg.target].decode())
            for r in (source[i] for i in range(len(source)))]
  raise ValueError(f"unknown data.name {data_cfg.name!r}; choose synthetic, "
                   f"{', '.join(TEST_SPLITS)}")


def tokenizer(cfg, workdir, train_pairs=None):
  """One byte-level BPE for both languages, trained on the training pairs and kept in the
  workdir (its ids must not change on resume)."""
  texts = None if train_pairs is None else [t for pair in train_pairs for t in pair]
  return tokenizers.make_tokenizer("bpe", workdir=workdir, train_texts=texts,
                                   vocab_size=cfg.model.vocab_size)


def encode(tok, pairs):
  return [(tok.encode(s), tok.encode(t)) for s, t in pairs]


def loss_fn(model_cfg, label_smoothing):
  """Label-smoothed cross-entropy summed over real target tokens; `nll` is the unsmoothed
  one, whose mean is the perplexity's log."""
  model = transformer.Transformer(model_cfg)

  def loss(params, batch, rng, deterministic):
    logits = model.apply({"params": params}, batch["source"], batch["target_input"],
                         batch["source_segment_ids"], batch["target_segment_ids"],
                         deterministic=deterministic, rngs={"dropout": rng})
    weights = (batch["target_segment_ids"] > 0).astype(jnp.float32)
    labels = jax.nn.one_hot(batch["target"], model_cfg.vocab_size)
    smoothed = optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, label_smoothing))
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["target"])
    return (smoothed * weights).sum(), {"weight": weights.sum(), "nll": (nll * weights).sum()}
  return loss


def source_ids(tok, text):
  """A source's ids as training feeds them to the encoder: with the end token."""
  return tok.encode(text) + [tok.eot_id]


def translations(model_cfg, params, tok, sources, decode_cfg):
  """Beam-searched translations (text) of source id lists, decode_cfg.batch_size a call."""
  out = []
  for start in range(0, len(sources), decode_cfg.batch_size):
    ids = transformer.translate(model_cfg, params, sources[start:start + decode_cfg.batch_size],
                                bos_id=tok.eot_id, eos_id=tok.eot_id,
                                beam_size=decode_cfg.beam_size, alpha=decode_cfg.alpha,
                                extra_length=decode_cfg.extra_length)
    out += [tok.decode(h) for h in ids]
  return out


def bleu(model_cfg, params, tok, pairs, decode_cfg):
  """Corpus BLEU (sacrebleu, its default 13a tokenization) of beam-searched translations,
  and the translations."""
  hypotheses = translations(model_cfg, params, tok, [source_ids(tok, s) for s, _ in pairs],
                            decode_cfg)
  references = [t for _, t in pairs]
  return sacrebleu.corpus_bleu(hypotheses, [references]).score, hypotheses


def _row_multiple(cfg):
  mesh = sharding.make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if cfg.train.batch_size % shards:
    raise ValueError(f"train.batch_size={cfg.train.batch_size} (the row multiple of every "
                     f"batch) must be divisible by the {shards} data-parallel devices")
  return cfg.train.batch_size


def build_task(cfg, workdir, with_data=True):
  """The loop's Task. with_data=False skips the data (for modes that only restore weights),
  and then needs the workdir's tokenizer."""
  train = text_pairs(cfg.data, "train") if with_data else None
  tok = tokenizer(cfg, workdir, train)
  model_cfg = model_config(cfg, tok.vocab_size)
  model = transformer.Transformer(model_cfg)
  dummy = jnp.zeros((1, 8), jnp.int32)
  init_params = lambda rng: model.init(rng, dummy, dummy)["params"]
  # A source token runs through the encoder and a target token through the decoder, each
  # about half the weights: 6N FLOPs for a pair of them, 3N a token (attention left out).
  parameters = transformer.count_params(jax.eval_shape(init_params, jax.random.PRNGKey(0)))
  task = loop.Task(init_params=init_params,
                   loss_fn=loss_fn(model_cfg, cfg.train.label_smoothing),
                   tokens_per_batch=2 * cfg.data.max_tokens, flops_per_token=3 * parameters)
  if not with_data:
    return task
  buckets = [int(b) for b in cfg.data.buckets.split(",")]
  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  batching = dict(max_tokens=cfg.data.max_tokens, bucket_lengths=buckets, bos_id=tok.eot_id,
                  eos_id=tok.eot_id, row_multiple=_row_multiple(cfg), **process)
  task.train_data = pair_batches.TokenBatches(encode(tok, train), seed=cfg.train.seed,
                                              **batching)
  validation = text_pairs(cfg.data, "validation")
  eval_batches = pair_batches.TokenBatches(encode(tok, validation), seed=0, shuffle=False,
                                           **batching)
  task.eval_data = eval_batches.one_pass
  metrics_lib.console(f"translation data: {len(train)} training pairs "
                      f"({task.train_data.dropped} longer than {buckets[-1]} tokens left "
                      f"out), {len(validation)} validation pairs, {tok.vocab_size} tokens")
  bleu_pairs = validation[:cfg.eval.bleu_pairs]
  task.evaluate = lambda params, step: {
      "bleu": bleu(model_cfg, params, tok, bleu_pairs, cfg.decode)[0]}
  return task


def average_params(trees):
  """The element-wise mean of parameter trees (the paper averages its last checkpoints),
  summed in float64."""
  def mean(*leaves):
    return (sum(np.asarray(x, np.float64) for x in leaves) / len(leaves)).astype(
        np.asarray(leaves[0]).dtype)
  return jax.tree.map(mean, *trees)
