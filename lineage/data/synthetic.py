"""`synthetic_text`: the embedded corpus, a deterministic grammar with learnable structure.

Documents mix sentence families that reward different abilities: agreement
between a subject and its verb, counting in words, copying a phrase seen
earlier in the sentence, and conditional sentences whose second half repeats
the first half's noun. A language model can drive its loss far below the
corpus's unigram entropy, which is what the tests and the tour check.
"""

import numpy as np

ADJECTIVES = ["red", "small", "old", "quiet", "bright", "heavy", "green", "calm", "wild", "cold"]
NOUNS = ["fox", "dog", "bird", "cat", "king", "ship", "tree", "horse", "child", "river"]
VERBS = ["see", "follow", "love", "watch", "find", "carry", "call", "help"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
           "ten", "eleven", "twelve"]


def _plural(noun):
  return {"fox": "foxes", "child": "children"}.get(noun, noun + "s")


def _agreement(rng):
  noun, obj = rng.choice(NOUNS), rng.choice(NOUNS)
  adj, adj2 = rng.choice(ADJECTIVES), rng.choice(ADJECTIVES)
  verb = rng.choice(VERBS)
  if rng.random() < 0.5:
    return f"the {adj} {noun} {verb}s the {adj2} {obj}."
  return f"the {adj} {_plural(noun)} {verb} the {adj2} {obj}."


def _counting(rng):
  start = int(rng.integers(0, len(NUMBERS) - 4))
  length = int(rng.integers(3, 5))
  return " ".join(NUMBERS[start:start + length]) + "."


def _copy(rng):
  words = [rng.choice(NOUNS + ADJECTIVES) for _ in range(int(rng.integers(2, 5)))]
  phrase = " ".join(words)
  return f"say {phrase}; {phrase}."


def _conditional(rng):
  noun, adj, adj2 = rng.choice(NOUNS), rng.choice(ADJECTIVES), rng.choice(ADJECTIVES)
  return f"if the {noun} is {adj} then the {noun} is not {adj2}."


_FAMILIES = (_agreement, _counting, _copy, _conditional)
# By name, for tasks built on the grammar (GPT-1's synthetic fine-tuning tasks).
FAMILIES = {"agreement": _agreement, "counting": _counting, "copy": _copy,
            "conditional": _conditional}


def synthetic_documents(num_docs, seed=0):
  """`num_docs` paragraphs of 3 to 8 sentences, the same for the same seed."""
  rng = np.random.default_rng(seed)
  docs = []
  for _ in range(num_docs):
    sentences = [_FAMILIES[int(rng.integers(len(_FAMILIES)))](rng)
                 for _ in range(int(rng.integers(3, 9)))]
    docs.append(" ".join(sentences))
  return docs
