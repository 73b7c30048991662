"""A synthetic language pair, the embedded default: English-like sentences and their
translation into an invented language with its own word order.

The target language has a word of its own for every source word, puts adjectives after
their noun, its verb at the end of the clause (subject, object, verb) and marks plural
nouns with a suffix, so a translator must learn a lexicon, agreement and reordering
over distances that grow with the number of adjectives. Pairs are a pure function of
(count, seed); splits use different seeds.
"""

import numpy as np

ADJECTIVES = {"red": "roka", "small": "mil", "old": "vetu", "quiet": "sana", "bright": "lumi",
              "heavy": "grava", "green": "vera", "wild": "fera"}
NOUNS = {"fox": "vulpo", "dog": "huno", "bird": "avo", "cat": "kato", "king": "rego",
         "ship": "navo", "tree": "arbo", "horse": "cevalo", "child": "ido", "river": "rivo"}
VERBS = {"sees": "vidas", "follows": "sekvas", "loves": "amas", "watches": "gardas",
         "finds": "trovas", "carries": "portas", "calls": "vokas", "helps": "helpas"}
PLURAL = {"fox": "foxes", "child": "children"}
PLURAL_VERBS = {"watches": "watch", "carries": "carry"}


def _noun_phrase(rng):
  """(source words, target words) of 'the [adjectives] noun(s)'."""
  noun = rng.choice(list(NOUNS))
  adjectives = list(rng.choice(list(ADJECTIVES), int(rng.integers(0, 3)), replace=False))
  plural = rng.random() < 0.3
  source = ["the", *adjectives, PLURAL.get(noun, noun + "s") if plural else noun]
  target = ["la", NOUNS[noun] + ("j" if plural else ""), *(ADJECTIVES[a] for a in adjectives)]
  return source, target, plural


def _clause(rng):
  subject, subject_target, plural = _noun_phrase(rng)
  obj, obj_target, _ = _noun_phrase(rng)
  verb = rng.choice(list(VERBS))
  source_verb = PLURAL_VERBS.get(verb, verb[:-1]) if plural else verb
  return [*subject, source_verb, *obj], [*subject_target, *obj_target, VERBS[verb]]


def pairs(count, seed):
  """`count` (source, target) sentence pairs; one in four joins two clauses with 'and'."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    source, target = _clause(rng)
    if rng.random() < 0.25:
      more_source, more_target = _clause(rng)
      source, target = source + ["and", *more_source], target + ["kaj", *more_target]
    out.append((" ".join(source) + ".", " ".join(target) + "."))
  return out
