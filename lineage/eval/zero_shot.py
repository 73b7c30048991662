"""GPT-2's zero-shot evaluation (Radford et al. 2019, Table 3) of any GPT and tokenizer.

Every text starts after an `<|endoftext|>` token, the state in which GPT-2 begins a
document. Per dataset:
- LAMBADA: the target is the passage's last space-separated word. Accuracy counts a
  passage when every BPE token of that word is the argmax given the passage and the
  word's earlier tokens (i.e. greedy decoding spells the word); perplexity is
  exp(mean over passages of the word's summed negative log-probability). The
  stop-word-filter variant (the paper's reported accuracy) excludes, at the word's
  first token, every token that is a whole English stop word (scikit-learn's list).
- CBT-CN/NE: each of the 10 candidates replaces XXXXX; the candidate whose completed
  query has the highest log-probability given the 20 context sentences wins.
- WikiText-2/103, PTB, 1BW: lines are detokenized and joined with newlines (one per
  line, standing for that line's `<eos>`), scored with sliding windows, and
  perplexity is normalised by the ORIGINAL word count with one `<eos>` per line, and
  also per BPE token.
- enwik8 / text8: bits per byte / per character of the original test split.
"""

import dataclasses
import math
import os
import pathlib
import time

import numpy as np
from absl import logging
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from lineage.data import builders
from lineage.data.builders import base
from lineage.eval import detokenize, lm_metrics, scoring, table3


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One Table 3 column group: which builder, how it is scored, how it is detokenized."""
  builder: str
  kind: str  # lambada | cbt | words | bytes | chars
  detokenizer: str


DATASETS = {
    "lambada": Dataset("lambada", "lambada", "lambada"),
    "cbt_cn": Dataset("cbt/CN", "cbt", "moses"),
    "cbt_ne": Dataset("cbt/NE", "cbt", "moses"),
    "wikitext2": Dataset("wikitext2", "words", "wikitext"),
    "ptb": Dataset("ptb", "words", "ptb"),
    "enwik8": Dataset("enwik8", "bytes", "identity"),
    "text8": Dataset("text8", "chars", "identity"),
    "wikitext103": Dataset("wikitext103", "words", "wikitext"),
    "1bw": Dataset("lm1b", "words", "moses"),
    # Not in Table 3: the embedded corpus's held-out documents, always present (generated),
    # so a fresh machine with no downloads still gets a zero-shot number.
    "synthetic_text": Dataset("synthetic_text", "words", "identity"),
}
SPLIT = "test"


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def with_bos(tokenizer, ids):
  return np.asarray([tokenizer.eot_id, *ids], np.int32)


def stop_word_mask(tokenizer, vocab_size):
  """[vocab] bool: tokens that are a whole stop word after a space (" the", " And")."""
  mask = np.zeros(vocab_size, bool)
  for token in range(min(vocab_size, tokenizer.vocab_size)):
    if token == tokenizer.eot_id:
      continue
    text = tokenizer.decode([token])
    mask[token] = text.startswith(" ") and text.strip().lower() in ENGLISH_STOP_WORDS
  return mask


def lambada_requests(tokenizer, passages, normalize_quotes=False):
  """One request per passage: its last word's tokens given everything before them."""
  requests = []
  for number, passage in enumerate(passages):
    text = detokenize.lambada(passage, normalize_quotes)
    context, space, word = text.rpartition(" ")
    if not space or not word:
      raise ValueError(f"LAMBADA passage {number} has no last word after a space: {text[-80:]!r}")
    target = tokenizer.encode(" " + word)
    requests.append(lm_metrics.Request(
        with_bos(tokenizer, tokenizer.encode(context) + target), len(target)))
  return requests


def lambada(scorer, tokenizer, passages, normalize_quotes=False):
  """Last-word accuracy (plain and stop-word filtered) and last-word perplexity."""
  requests = lambada_requests(tokenizer, passages, normalize_quotes)
  banned = stop_word_mask(tokenizer, scorer.vocab_size)
  scores = scorer.score(requests, banned_first=banned, with_greedy=True)
  return {"acc": float(scores.greedy.mean()),
          "acc_stopword_filter": float(scores.greedy_filtered.mean()),
          "ppl": math.exp(-float(scores.logprob.mean())), "num_examples": len(requests)}


def cbt(scorer, tokenizer, questions, detokenizer):
  """Accuracy of picking the answer by the log-probability of the completed query."""
  requests, answers = [], []
  for question in questions:
    candidates = [_text(c) for c in question["candidates"]]
    context = tokenizer.encode(detokenizer(_text(question["context"])) + "\n")
    query = _text(question["query"])
    if "XXXXX" not in query:
      raise ValueError(f"CBT query without the XXXXX blank: {query!r}")
    for candidate in candidates:
      completed = tokenizer.encode(detokenizer(query.replace("XXXXX", candidate)))
      requests.append(lm_metrics.Request(with_bos(tokenizer, context + completed),
                                         len(completed)))
    answers.append(candidates.index(_text(question["answer"])))
  scores = scorer.score(requests).logprob.reshape(len(answers), -1)
  return {"acc": float((scores.argmax(-1) == np.asarray(answers)).mean()),
          "num_examples": len(answers)}


def _corpus_nats(scorer, tokens, context, stride):
  requests = lm_metrics.sliding_windows(tokens, context, stride)
  return -float(scorer.score(requests).logprob.sum())


def corpus_ids(tokenizer, lines, detokenizer):
  """The detokenized lines joined by newlines (one per line, for its `<eos>`), as BPE ids."""
  return tokenizer.encode(detokenizer("\n".join(lines)) + "\n")


def words(scorer, tokenizer, lines, detokenizer, context, stride):
  """Perplexity per original word (one `<eos>` per line) and per BPE token."""
  ids = corpus_ids(tokenizer, lines, detokenizer)
  nats = _corpus_nats(scorer, with_bos(tokenizer, ids), context, stride)
  num_words = lm_metrics.word_count(lines)
  return {"word_ppl": lm_metrics.perplexity(nats, num_words),
          "token_ppl": lm_metrics.perplexity(nats, len(ids)), "num_words": num_words,
          "num_tokens": len(ids), "num_lines": len(lines), "nats": nats}


def units(scorer, tokenizer, data, context, stride):
  """Bits per unit of `data` (bytes: per byte; str: per character)."""
  text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
  ids = tokenizer.encode(text)
  nats = _corpus_nats(scorer, with_bos(tokenizer, ids), context, stride)
  return {"bits": lm_metrics.bits_per_unit(nats, len(data)), "num_units": len(data),
          "num_tokens": len(ids), "nats": nats}


def _test_source(builder):
  return builder.SOURCE if isinstance(builder, base.SplitStream) else builder.sources()[SPLIT]


def prepare_command(name, manual_root):
  """Shell commands that put a dataset's upstream test file where its builder looks."""
  builder = builders.builder(DATASETS[name].builder)
  source = _test_source(builder)
  target = f"{manual_root or '$LINEAGE_MANUAL_DIR'}/{builder.manual_name()}"
  fetch = f"mkdir -p {target} && "
  if source.member is None:
    return fetch + f"curl -L -o {target}/{source.names[0]} {source.url}"
  archive = f"/tmp/{source.url.rsplit('/', 1)[-1]}"
  fetch += f"curl -L -o {archive} {source.url} && "
  if archive.endswith(".zip"):
    return fetch + f"unzip -o -j {archive} {source.member} -d {target}"
  depth = source.member.count("/")
  return fetch + f"tar -xzf {archive} -C {target} --strip-components={depth} {source.member}"


def _open(name, data_dir, manual_root):
  """The test split's source, or None when it is neither prepared nor in the manual dir."""
  builder = builders.builder(DATASETS[name].builder, data_dir=data_dir)
  manual = pathlib.Path(manual_root) / builder.manual_name() if manual_root else None
  generated = not builder.sources() and not isinstance(builder, base.SplitStream)
  has_files = generated or (manual is not None and any(
      (manual / n).exists() for n in _test_source(builder).names))
  if not has_files and not builder.is_prepared():
    return None
  return builders.load(DATASETS[name].builder, SPLIT, data_dir=data_dir,
                       manual_dir=os.fspath(manual) if manual else None)


def _capped(records, limit):
  count = len(records) if not limit else min(limit, len(records))
  return [records[i] for i in range(count)]


def evaluate(name, source, scorer, tokenizer, zs_cfg, context, stride):
  """One dataset's metrics from its test source."""
  kind = DATASETS[name].kind
  # detokenize=False is the paper's ablation: the benchmark's own tokenization, as is.
  detokenizer = detokenize.DETOKENIZERS[
      DATASETS[name].detokenizer if zs_cfg.get("detokenize", True) else "identity"]
  if kind == "lambada":
    passages = [_text(r["text"]) for r in _capped(source, zs_cfg.max_examples)]
    return lambada(scorer, tokenizer, passages, zs_cfg.lambada_normalize_quotes)
  if kind == "cbt":
    return cbt(scorer, tokenizer, _capped(source, zs_cfg.max_examples), detokenizer)
  if kind == "words":
    lines = [_text(r["text"]) for r in _capped(source, zs_cfg.max_examples)]
    return words(scorer, tokenizer, lines, detokenizer, context, stride)
  whole = (b"".join(np.asarray(r["bytes"]).tobytes() for r in source) if kind == "bytes"
           else "".join(_text(r["text"]) for r in source))
  result = units(scorer, tokenizer, whole[:zs_cfg.max_bytes or None], context, stride)
  unit = "bpb" if kind == "bytes" else "bpc"
  return {unit: result.pop("bits"), **result}


def run(cfg, model_cfg, params, tokenizer, out_dir, model_name="model"):
  """Evaluates `params` on cfg.zero_shot.datasets; writes summary.json and report.md.

  A dataset missing locally gets `{"needs_data": command}`; report.md keeps one row per
  model_name across calls on the same out_dir (zero_shot_rows.json holds them).
  """
  zs = cfg.zero_shot
  context = zs.context or model_cfg.context
  stride = zs.stride or context // 2
  names = [n.strip() for n in zs.datasets.split(",") if n.strip()]
  unknown = [n for n in names if n not in DATASETS]
  if unknown:
    raise ValueError(f"unknown zero_shot.datasets {unknown}; choose from {', '.join(DATASETS)}")
  manual_root = zs.manual_dir or os.environ.get("LINEAGE_MANUAL_DIR", "")
  data_dir = cfg.data.get("data_dir") or None
  scorer = scoring.Scorer(model_cfg, params, batch_size=zs.batch_size, max_len=context,
                          valid_vocab=tokenizer.vocab_size)
  summary = {}
  for name in names:
    source = _open(name, data_dir, manual_root)
    if source is None:
      summary[name] = {"needs_data": prepare_command(name, manual_root)}
      logging.warning("zero-shot %s: no local copy; %s", name, summary[name]["needs_data"])
      continue
    start = time.perf_counter()
    summary[name] = evaluate(name, source, scorer, tokenizer, zs, context, stride)
    summary[name]["seconds"] = time.perf_counter() - start
    logging.info("zero-shot %s: %s", name, summary[name])
  settings = {"context": context, "stride": stride, "max_examples": zs.max_examples,
              "max_bytes": zs.max_bytes, "detokenize": zs.get("detokenize", True)}
  table3.write(out_dir, model_name, summary, settings)
  return summary
