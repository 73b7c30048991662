"""LAMBADA's last-word protocol (Paperno et al. 2016), as GPT-2 and lm-evaluation-harness run it.

The target is the passage's last space-separated word; the context is everything before the
space. Tokenization follows lm-evaluation-harness: the whole passage is encoded and split where
the context's own encoding ends, so the target's tokens are the ones the model would read.

- Plain accuracy (lm-evaluation-harness's `acc`): every target token is the argmax given what
  precedes it. Perplexity: exp(mean over passages of the target's summed negative
  log-likelihood).
- Stop-word-filtered accuracy (the number GPT-2's Table 3 reports; the paper only says it
  restricts predictions to valid final words): the prediction is a WORD, the greedy
  continuation of the context up to the next word boundary. When that word is itself a stop
  word (case kept: "Will" is a name, "will" a stop word), it is rejected and the next-best
  word is taken: the greedy word that starts with the next-ranked first token. The
  passage counts when the accepted prediction spells the target and then a boundary. A
  target whose first BPE piece happens to be a stop word (" were"+"wolves") stays reachable;
  only targets that are themselves stop words cannot count.
"""

import dataclasses
import math
import re

import numpy as np
import sklearn
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from lineage.eval import detokenize, lm_metrics

STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)
STOP_WORDS_NAME = (f"scikit-learn {sklearn.__version__} ENGLISH_STOP_WORDS "
                   f"({len(STOP_WORDS)} lowercase words, matched case-sensitively)")
# A word: word characters, possibly joined by apostrophes ("don't"), after any leading
# spaces and punctuation (an opening quote).
_WORD = re.compile(r"\s*[^\w\s]*(\w+(?:['\u2019]\w+)*)")
# Rejections before a passage is given up as wrong (a model that only ever predicts stop words).
MAX_REJECTIONS = 20


def first_word(text):
  """(the first word of `text`, whether something after it proves the word has ended)."""
  match = _WORD.match(text)
  if not match:
    return "", False
  rest = text[match.end():]
  return match.group(1), bool(rest) and rest not in ("'", "\u2019")


def is_stop_word(word):
  return word in STOP_WORDS


@dataclasses.dataclass(frozen=True)
class Passage:
  """One passage split for scoring: context ids (after the optional `<|endoftext|>`), the
  target's ids and text (" " + last word)."""
  context: tuple
  target: tuple
  target_text: str

  @property
  def request(self):
    return lm_metrics.Request(np.asarray(self.context + self.target, np.int32), len(self.target))


def passages(tokenizer, texts, *, normalize_quotes=False, eot_prefix=True):
  """Each text split into context and target, tokenized as lm-evaluation-harness does."""
  split = []
  for number, raw in enumerate(texts):
    text = detokenize.lambada(raw, normalize_quotes)
    context, space, word = text.rpartition(" ")
    if not space or not word or not context:
      raise ValueError(f"LAMBADA passage {number} has no last word after a space: {text[-80:]!r}")
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(text)
    if whole[:len(context_ids)] != context_ids:  # A merge across the split: keep both exact.
      whole = context_ids + tokenizer.encode(" " + word)
    prefix = [tokenizer.eot_id] if eot_prefix else []
    split.append(Passage(tuple(prefix + context_ids), tuple(whole[len(context_ids):]),
                         " " + word))
  return split


def target_word(passage):
  return first_word(passage.target_text)[0]


@dataclasses.dataclass
class _Guess:
  """The filtered prediction of one passage, grown one greedy token at a time."""
  passage: Passage
  banned: list = dataclasses.field(default_factory=list)
  tokens: list = dataclasses.field(default_factory=list)
  accepted: bool = False
  correct: bool = False


def _spells_target(text, target_text):
  """Whether `text` begins with the target as a whole word (not "cats" for "cat")."""
  return text.startswith(target_text) and first_word(text)[0] == first_word(target_text)[0]


def _whole_characters(data):
  """`data` decoded without a trailing incomplete UTF-8 character: a word is judged on
  characters, and a character split over two tokens is not there yet."""
  for cut in range(4):
    try:
      return data[:len(data) - cut].decode("utf-8")
    except UnicodeDecodeError:
      continue
  return data.decode("utf-8", errors="replace")


def filtered_correct(next_tokens, tokenizer, split, judge_tokens):
  """[passages] bool: whether the stop-word-filtered prediction is the target.

  `next_tokens(prefixes, banned)` returns the argmax next id of each prefix with its banned
  ids excluded (`scoring.Scorer.next_tokens`). A word is judged (stop word or not) once it
  has provably ended, at end of text, or after `judge_tokens` tokens (enough for the longest
  stop word); an accepted word is then followed until it matches or departs from the target.
  """
  guesses = [_Guess(p) for p in split]
  pending = list(guesses)
  while pending:
    chosen = next_tokens([g.passage.context + tuple(g.tokens) for g in pending],
                         [g.banned if not g.tokens else () for g in pending])
    still = []
    for guess, token in zip(pending, chosen):
      if _step(guess, int(token), tokenizer, judge_tokens):
        still.append(guess)
    pending = still
  return np.array([g.correct for g in guesses])


def _step(guess, token, tokenizer, judge_tokens):
  """Adds one greedy token to `guess`; False once its verdict is known."""
  ended = token == tokenizer.eot_id
  if not ended:
    guess.tokens.append(token)
  data = tokenizer.decode_bytes(guess.tokens)
  if not guess.accepted:
    word, complete = first_word(_whole_characters(data))
    if not (complete or ended or len(guess.tokens) >= judge_tokens):
      return True
    if is_stop_word(word):
      if len(guess.banned) >= MAX_REJECTIONS or not guess.tokens:
        return False
      guess.banned.append(guess.tokens[0])
      guess.tokens = []
      return True
    guess.accepted = True
  target = guess.passage.target_text.encode("utf-8")
  if not (data.startswith(target) or target.startswith(data)):
    return False  # It spells another word.
  if len(data) <= len(target) and not ended:
    return True
  text = _whole_characters(data)
  if first_word(text)[1] or ended or len(guess.tokens) > len(guess.passage.target) + judge_tokens:
    guess.correct = _spells_target(text, guess.passage.target_text)
    return False
  return True  # Past the target, inside a word: "cat" + "'" may become "cat's".


def judge_tokens(tokenizer):
  """Tokens after which an unfinished word is judged as it stands: one more than the longest
  stop word takes, so every stop word is seen whole."""
  return 1 + max(len(tokenizer.encode(" " + word)) for word in STOP_WORDS)


def evaluate(scorer, tokenizer, texts, *, normalize_quotes=False, eot_prefix=True):
  """Plain and stop-word-filtered accuracy, perplexity, and how many targets are stop words."""
  split = passages(tokenizer, texts, normalize_quotes=normalize_quotes, eot_prefix=eot_prefix)
  scores = scorer.score([p.request for p in split])
  filtered = filtered_correct(scorer.next_tokens, tokenizer, split, judge_tokens(tokenizer))
  return {"acc": float(scores.greedy.mean()), "acc_stopword_filter": float(filtered.mean()),
          "ppl": math.exp(-float(scores.logprob.mean())), "num_examples": len(split),
          "stop_words": STOP_WORDS_NAME,
          "num_stopword_targets": int(sum(is_stop_word(target_word(p)) for p in split))}
