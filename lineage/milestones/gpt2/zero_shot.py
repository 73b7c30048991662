"""GPT-2's zero-shot evaluation (Radford et al. 2019, Table 3) of any GPT and tokenizer.

Which dataset is scored how: LAMBADA by `lineage.eval.lambada`, CBT by the cloze protocol,
WikiText-2/103, PTB and 1BW by word perplexity, enwik8 and text8 by bits per byte or
character (`lineage.eval.zero_shot`), each on its test split after the dataset's invertible
detokenizer. `run` writes summary.json and the Table 3 report (`table3`).
"""

import dataclasses
import os
import pathlib
import time

import numpy as np
from absl import logging

from lineage.data import builders
from lineage.data.builders import base
from lineage.eval import detokenize, lambada, scoring, zero_shot
from lineage.milestones.gpt2 import table3


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One Table 3 column group: which builder, how it is scored, how it is detokenized."""
  builder: str
  kind: str  # lambada | cbt | words | bytes | chars
  detokenizer: str


DATASETS = {
    "lambada": Dataset("lambada", "lambada", "lambada"),
    "cbt_cn": Dataset("cbt/CN", "cbt", "cbt"),
    "cbt_ne": Dataset("cbt/NE", "cbt", "cbt"),
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


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def evaluate(name, source, scorer, tokenizer, zs_cfg, context, stride):
  """One dataset's metrics from its test source."""
  kind = DATASETS[name].kind
  # detokenize=False is the paper's ablation: the benchmark's own tokenization, as is.
  detokenizer = detokenize.DETOKENIZERS[
      DATASETS[name].detokenizer if zs_cfg.detokenize else "identity"]
  eot_prefix = zs_cfg.eot_prefix
  if kind == "lambada":
    texts = [_text(r["text"]) for r in _capped(source, zs_cfg.max_examples)]
    return lambada.evaluate(scorer, tokenizer, texts, eot_prefix=eot_prefix,
                            normalize_quotes=zs_cfg.lambada_normalize_quotes)
  if kind == "cbt":
    return zero_shot.cbt(scorer, tokenizer, _capped(source, zs_cfg.max_examples), detokenizer,
                         eot_prefix)
  if kind == "words":
    lines = [_text(r["text"]) for r in _capped(source, zs_cfg.max_examples)]
    return zero_shot.words(scorer, tokenizer, lines, detokenizer, context, stride,
                           eot_prefix=eot_prefix, documents=zs_cfg.documents)
  whole = (b"".join(np.asarray(r["bytes"]).tobytes() for r in source) if kind == "bytes"
           else "".join(_text(r["text"]) for r in source))
  result = zero_shot.units(scorer, tokenizer, whole[:zs_cfg.max_bytes or None], context, stride,
                           eot_prefix=eot_prefix)
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
  if zs.documents not in zero_shot.DOCUMENTS:
    raise ValueError(f"zero_shot.documents={zs.documents!r}; choose one of "
                     f"{', '.join(zero_shot.DOCUMENTS)}")
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
              "max_bytes": zs.max_bytes, "detokenize": zs.detokenize,
              "eot_prefix": zs.eot_prefix, "documents": zs.documents}
  table3.write(out_dir, model_name, summary, settings)
  return summary
