"""GPT-1's fine-tuning tasks: the paper's benchmarks through their builders, and synthetic tasks on
the embedded corpus's grammar (`lineage.data.synthetic`), whose labels depend on structure a
language model pre-trained on that corpus has learned.

Each task gives (TaskSpec, train examples, eval examples), an example being (texts, label)
with the texts still strings; `tokenized` turns them into token lists.
"""

import os

import numpy as np

from lineage.data import builders, synthetic
from lineage.milestones.gpt1.finetune import TaskSpec

SPECS = {
    "sst2": TaskSpec("classification"),
    "rte": TaskSpec("entailment"),
    "story_cloze": TaskSpec("multiple_choice"),
    "stsb": TaskSpec("similarity", regression=True),
    "synthetic_grammar": TaskSpec("classification"),
    "synthetic_entailment": TaskSpec("entailment"),
    "synthetic_similarity": TaskSpec("similarity"),
    "synthetic_choice": TaskSpec("multiple_choice"),
}


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _records(name, split, data_dir, manual_root, limit):
  manual_dir = (os.path.join(manual_root, builders.builder(name).manual_name()) if manual_root
                else None)
  source = builders.load(name, split, data_dir=data_dir, manual_dir=manual_dir)
  count = len(source) if not limit else min(limit, len(source))
  return [source[i] for i in range(count)]


def _real(name, split, data_dir, manual_root, limit):
  if name == "sst2":
    return [([_text(r["sentence"])], int(r["label"]))
            for r in _records("sst_binary", split, data_dir, manual_root, limit)]
  if name == "rte":
    return [([_text(r["sentence1"]), _text(r["sentence2"])], int(r["label"]))
            for r in _records("rte", split, data_dir, manual_root, limit)]
  if name == "stsb":
    return [([_text(r["sentence1"]), _text(r["sentence2"])], float(r["score"]))
            for r in _records("stsb", split, data_dir, manual_root, limit)]
  # Story Cloze: the paper trains on the validation stories and tests on the test stories.
  story_split = {"train": "validation", "validation": "test"}[split]
  return [([" ".join(_text(s) for s in r["sentences"]), *(_text(e) for e in r["endings"])],
           int(r["label"])) for r in _records("story_cloze", story_split, data_dir, manual_root,
                                              limit)]


def _corrupt(sentence, rng):
  """A sentence of the corpus with its structure broken: agreement, counting order, the copied
  phrase, or the conditional's repeated noun."""
  words = sentence.rstrip(".").split(" ")
  if words[0] == "say":
    cut = words.index(next(w for w in words if w.endswith(";"))) + 1
    copied = words[cut:]
    position = int(rng.integers(len(copied)))
    others = [w for w in synthetic.NOUNS + synthetic.ADJECTIVES if w != copied[position]]
    copied[position] = str(rng.choice(others))
    words = words[:cut] + copied
  elif words[0] == "if":  # if the NOUN is ADJ then the NOUN is not ADJ
    words[7] = str(rng.choice([n for n in synthetic.NOUNS if n != words[2]]))
  elif words[0] in synthetic.NUMBERS:
    i = int(rng.integers(len(words) - 1))
    words[i], words[i + 1] = words[i + 1], words[i]
  else:  # Agreement: the verb's number no longer matches the subject's.
    words[3] = words[3][:-1] if words[3].endswith("s") else words[3] + "s"
  return " ".join(words) + "."


def _sentence(rng):
  families = list(synthetic.FAMILIES.values())
  return families[int(rng.integers(len(families)))](rng)


def _synthetic_example(name, rng):
  """One (texts, label) of a synthetic task."""
  if name == "synthetic_grammar":  # Label 1: a sentence the grammar produces.
    sentence = _sentence(rng)
    good = rng.random() < 0.5
    return [sentence if good else _corrupt(sentence, rng)], int(good)
  if name == "synthetic_entailment":  # Label 0: the conditional's consequence follows.
    noun, adj, adj2 = (str(rng.choice(synthetic.NOUNS)), str(rng.choice(synthetic.ADJECTIVES)),
                       str(rng.choice(synthetic.ADJECTIVES)))
    premise = f"if the {noun} is {adj} then the {noun} is not {adj2}."
    entailed = rng.random() < 0.5
    subject = noun if entailed else str(rng.choice([n for n in synthetic.NOUNS if n != noun]))
    return [premise, f"the {subject} is not {adj2}."], int(not entailed)
  if name == "synthetic_similarity":  # Label 1: both say the same copied phrase.
    first = synthetic.FAMILIES["copy"](rng)
    same = rng.random() < 0.5
    phrase = first[4:first.index(";")]
    second = f"say {phrase}; {phrase}." if same else synthetic.FAMILIES["copy"](rng)
    return [first, second], int(same)
  # synthetic_choice: which ending continues the count (or the copy) correctly.
  family = "counting" if rng.random() < 0.5 else "copy"
  sentence = synthetic.FAMILIES[family](rng)
  words = sentence.rstrip(".").split(" ")
  context, right = " ".join(words[:-1]), words[-1] + "."
  wrong = _corrupt(sentence, rng).rstrip(".").split(" ")[-1] + "."
  if wrong == right:
    wrong = str(rng.choice([w for w in synthetic.NOUNS if w + "." != right])) + "."
  label = int(rng.integers(2))
  endings = [wrong, right] if label else [right, wrong]
  return [context, *endings], label


def examples(name, split, *, num_synthetic=0, seed=0, data_dir=None, manual_root=None, limit=0):
  """The (texts, label) examples of task `name`'s split ("train" or "validation"); real tasks
  read `manual_root/<dataset>/` (default $LINEAGE_MANUAL_DIR/<dataset>/), at most `limit`."""
  if name not in SPECS:
    raise ValueError(f"unknown fine-tuning task {name!r}; choose one of {', '.join(SPECS)}")
  if name.startswith("synthetic_"):
    rng = np.random.default_rng((seed, 0 if split == "train" else 1))
    return [_synthetic_example(name, rng) for _ in range(num_synthetic)]
  return _real(name, split, data_dir, manual_root, limit)


def tokenized(tokenizer, raw_examples):
  """Texts to token lists, labels unchanged."""
  return [([tokenizer.encode(text) for text in texts], label) for texts, label in raw_examples]
