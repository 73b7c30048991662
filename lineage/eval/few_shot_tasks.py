"""Few-shot tasks (`lineage.eval.few_shot.Task`) through the datasets' builders, in the formats of
GPT-3's Appendix G (as lm-evaluation-harness writes them), and synthetic tasks that need no
files.

  task           demonstrations from   tested on    kind       completion after the context
  lambada        test (no other split)  test         cloze      " ___. ->" then " word"
  story_cloze    validation             test         choice     " " + one of the two endings
  rte            train                  validation   choice     "Answer:" then " True"/" False"
  sst2           train                  validation   choice     "Answer:" then " negative"/" positive"
  synthetic_compare    generated        generated    choice     "Answer:" then " 37"/" 52"
  synthetic_successor  generated        generated    free form  "A:" then " 18"
  synthetic_cloze      generated        generated    cloze      "___. ->" then " blue"

LAMBADA's passages lose their last word to the paper's fill-in-the-blank format: "Alice was
friends with Bob. Alice went to visit her friend ___. -> Bob". OpenAI's LAMBADA has only its
test set, so demonstrations are other test passages (never the one under test, nor a copy of
its text). The real tasks read `<manual_root>/<dataset>/` (default $LINEAGE_MANUAL_DIR), laid
out like ../shared/data.
"""

import os

import numpy as np

from lineage.data import builders
from lineage.eval import detokenize
from lineage.eval.few_shot import Example, Task

BLANK = " ___. ->"  # GPT-3's LAMBADA fill-in-the-blank cue; the word follows after a space


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _records(dataset, split, data_dir, manual_root, limit):
  manual_dir = (os.path.join(manual_root, builders.builder(dataset).manual_name())
                if manual_root else None)
  source = builders.load(dataset, split, data_dir=data_dir, manual_dir=manual_dir)
  count = len(source) if not limit else min(limit, len(source))
  return [source[i] for i in range(count)]


def lambada_example(uid, passage):
  """A LAMBADA passage as the paper's fill-in-the-blank cloze: its last word is the target."""
  context, space, word = detokenize.lambada(passage).rpartition(" ")
  if not space or not context or not word:
    raise ValueError(f"LAMBADA passage {uid} has no last word after a space: {passage[-80:]!r}")
  return Example(uid, context + BLANK, (word,))


def _lambada(data_dir, manual_root, limit, seed):
  del seed
  examples = tuple(lambada_example(f"test:{i}", _text(r["text"]))
                   for i, r in enumerate(_records("lambada", "test", data_dir, manual_root,
                                                  limit)))
  return Task("lambada", "cloze", examples, examples, "test", "test")


def _story_cloze(data_dir, manual_root, limit, seed):
  del seed
  def split(name):
    return tuple(Example(f"{name}:{i}", " ".join(_text(s) for s in r["sentences"]),
                         tuple(_text(e) for e in r["endings"]), int(r["label"]))
                 for i, r in enumerate(_records("story_cloze", name, data_dir, manual_root,
                                                limit)))
  return Task("story_cloze", "choice", split("validation"), split("test"), "validation", "test")


def _rte(data_dir, manual_root, limit, seed):
  del seed
  # Label 0 is entailment: the hypothesis is "True".
  def split(name):
    return tuple(Example(f"{name}:{i}", f"{_text(r['sentence1'])}\nQuestion: "
                         f"{_text(r['sentence2'])} True or False?\nAnswer:", ("True", "False"),
                         int(r["label"]))
                 for i, r in enumerate(_records("rte", name, data_dir, manual_root, limit)))
  return Task("rte", "choice", split("train"), split("validation"), "train", "validation")


def _sst2(data_dir, manual_root, limit, seed):
  del seed
  def split(name):
    return tuple(Example(f"{name}:{i}", f"{_text(r['sentence'])}\nQuestion: Is this sentence "
                         "positive or negative?\nAnswer:", ("negative", "positive"),
                         int(r["label"]))
                 for i, r in enumerate(_records("sst_binary", name, data_dir, manual_root,
                                                limit)))
  return Task("sst2", "choice", split("train"), split("validation"), "train", "validation")


def _generated(make, count, seed):
  """`count` demonstration and `count` test examples from `make(rng, uid)`, seeded apart."""
  rngs = np.random.default_rng(seed).spawn(2)
  return tuple(tuple(make(rng, f"{name}:{i}") for i in range(count))
               for name, rng in zip(("train", "test"), rngs))


def _synthetic_compare(data_dir, manual_root, limit, seed):
  """Which of two numbers below 100 is larger: two choices, the order random."""
  del data_dir, manual_root
  def make(rng, uid):
    a, b = (int(x) for x in rng.choice(100, 2, replace=False))
    return Example(uid, f"Which is larger, {a} or {b}?\nAnswer:", (str(a), str(b)),
                   int(b > a))
  train, test = _generated(make, limit or 64, seed)
  return Task("synthetic_compare", "choice", train, test, "train", "test")


def _synthetic_successor(data_dir, manual_root, limit, seed):
  """The number after n: a free-form answer."""
  del data_dir, manual_root
  def make(rng, uid):
    n = int(rng.integers(0, 1000))
    return Example(uid, f"Q: What number comes after {n}?\nA:", answers=(str(n + 1),))
  train, test = _generated(make, limit or 64, seed)
  return Task("synthetic_successor", "free_form", train, test, "train", "test",
              max_new_tokens=8)


_COLOURS = ("red", "green", "blue", "yellow", "black", "white")


def _synthetic_cloze(data_dir, manual_root, limit, seed):
  """A cycle of 2 to 4 colours, repeated; the blank is the next colour of the cycle."""
  del data_dir, manual_root
  def make(rng, uid):
    cycle = [str(c) for c in rng.choice(_COLOURS, int(rng.integers(2, 5)), replace=False)]
    words = [cycle[i % len(cycle)] for i in range(int(rng.integers(4, 9)) + 1)]
    return Example(uid, " ".join(words[:-1]) + BLANK, (words[-1],))
  train, test = _generated(make, limit or 64, seed)
  return Task("synthetic_cloze", "cloze", train, test, "train", "test")


TASKS = {"lambada": _lambada, "story_cloze": _story_cloze, "rte": _rte, "sst2": _sst2,
         "synthetic_compare": _synthetic_compare, "synthetic_successor": _synthetic_successor,
         "synthetic_cloze": _synthetic_cloze}
SYNTHETIC = tuple(name for name in TASKS if name.startswith("synthetic_"))


def load(name, *, data_dir=None, manual_root=None, limit=None, seed=0):
  """The task `name`: real tasks through their builders (each split's first `limit` records,
  default all), synthetic ones generated from `seed` (`limit` examples a split, default 64)."""
  if name not in TASKS:
    raise ValueError(f"unknown few-shot task {name!r}; known: {', '.join(sorted(TASKS))}")
  if limit is not None and limit < 1:
    raise ValueError(f"limit={limit}: give at least 1 example a split, or None for all")
  return TASKS[name](data_dir, manual_root, limit, seed)
