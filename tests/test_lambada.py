"""LAMBADA's last-word protocol: lm-evaluation-harness's split of each passage, and the stop-word
filter judging whole words, on the real test set and on scripted models."""

import json

import numpy as np
import pytest

from lineage.data import tokenizers
from lineage.eval import lambada, scoring


@pytest.fixture
def bpe(shared_data):
  return tokenizers.GPT2BPE.from_dir(shared_data / "gpt2_bpe")


@pytest.fixture
def texts(shared_data):
  with open(shared_data / "lambada" / "lambada_test.jsonl") as f:
    return [json.loads(line)["text"] for line in f]


class Scripted:
  """A stand-in model: for each context, continuations in order of preference. The next token
  follows the most preferred continuation that the tokens so far begin (at the first position,
  one whose first token is not banned); end of text once a continuation is spelled whole."""

  def __init__(self, tokenizer, preferences):
    self.eot = tokenizer.eot_id
    self.preferences = {context: [tuple(tokenizer.encode(c)) for c in continuations]
                        for context, continuations in preferences.items()}

  def _context(self, prefix):
    for cut in range(len(prefix) + 1):
      if prefix[:len(prefix) - cut] in self.preferences:
        return prefix[:len(prefix) - cut]
    raise KeyError(prefix)

  def next_tokens(self, prefixes, banned):
    chosen = []
    for prefix, ban in zip(prefixes, banned):
      context = self._context(tuple(prefix))
      done = tuple(prefix[len(context):])
      options = [c for c in self.preferences[context]
                 if c[:len(done)] == done and len(c) > len(done) and c[0] not in ban]
      chosen.append(options[0][len(done)] if options else self.eot)
    return np.array(chosen)

  def score(self, requests):
    """Every target is the argmax and certain: the plain accuracy of an oracle."""
    return scoring.Scores(np.zeros(len(requests)), np.ones(len(requests), bool))


def _filtered(tokenizer, cases):
  """{(context, target): continuations} -> the filtered verdict of each case, in order."""
  split = lambada.passages(tokenizer, [f"{context} {target}" for context, target in cases])
  model = Scripted(tokenizer, {p.context: cases[key] for p, key in zip(split, cases)})
  return lambada.filtered_correct(model.next_tokens, tokenizer, split,
                                  lambada.judge_tokens(tokenizer)).tolist()


def test_first_word():
  assert lambada.first_word(" werewolves.") == ("werewolves", True)
  assert lambada.first_word(" were") == ("were", False)
  assert lambada.first_word(' "Nadia,') == ("Nadia", True)
  assert lambada.first_word(" don't") == ("don't", False)
  assert lambada.first_word(" cat'") == ("cat", False)  # "cat's" may follow.
  assert lambada.first_word(" cat' ") == ("cat", True)
  assert lambada.first_word(" ...") == ("", False)
  assert lambada.is_stop_word("will") and not lambada.is_stop_word("Will")


def test_the_filter_rejects_stop_words_and_keeps_words_that_start_like_one(bpe):
  cases = {
      # The first-choice stop word is rejected; the next-best word is the target.
      ("the moon rose over the", "werewolves"): [" the.", " werewolves."],
      # A first BPE piece that is a stop word (" were", " A") does not make a target unreachable.
      ("howling in the night were", "werewolves"): [" werewolves."],
      ("she smiled at", "Alyssa"): [" Alyssa."],
      # Case is kept: "Will" is a name, "will" the stop word.
      ("he shook hands with", "Will"): [" will,", " Will,"],
      # Stop words of several tokens are seen whole before they are judged.
      ("and so it went,", "cat"): [" whereupon.", " cat."],
      # A longer word is not the target, nor is a possessive of it.
      ("look at the", "cat"): [" cats."],
      ("it was the", "cat"): [" cat's toy."],
      # A target that is itself a stop word can never count.
      ("he scratched until", "it"): [" it."],
      # Characters split over tokens.
      ("they flew to", "東京"): [" 東京."],
      # A model that only ever predicts stop words gives up after MAX_REJECTIONS.
      ("on and on,", "cat"): [f" {w}." for w in sorted(lambada.STOP_WORDS)[:30]] + [" cat."],
  }
  assert bpe.decode(bpe.encode(" werewolves")[:1]) == " were"
  assert bpe.decode(bpe.encode(" Alyssa")[:1]) == " A"
  assert len(bpe.encode(" whereupon")) > 1 and lambada.is_stop_word("whereupon")
  assert _filtered(bpe, cases) == [True, True, True, True, True, False, False, False, True,
                                   False]


def test_an_oracle_is_perfect_except_on_stop_word_targets(bpe, texts):
  """A model ranking each passage's true last word first (then end of text): plain accuracy 1,
  filtered accuracy 1 - (targets that are stop words) / 5153, so no other target is
  unreachable, including those whose first BPE piece is a stop word."""
  split = lambada.passages(bpe, texts)
  oracle = Scripted(bpe, {p.context: [p.target_text] for p in split})
  filtered = lambada.filtered_correct(oracle.next_tokens, bpe, split, lambada.judge_tokens(bpe))
  stop_targets = np.array([lambada.is_stop_word(lambada.target_word(p)) for p in split])
  assert len(split) == 5153 and 100 <= stop_targets.sum() <= 120
  assert (filtered == ~stop_targets).all()
  result = lambada.evaluate(oracle, bpe, texts)
  assert result["acc"] == 1.0 and result["num_stopword_targets"] == stop_targets.sum()
  assert result["acc_stopword_filter"] == 1 - stop_targets.sum() / 5153
  assert "scikit-learn" in result["stop_words"] and "318" in result["stop_words"]
  first_piece_is_stop_word = [
      p.target_text for p, ok in zip(split, filtered)
      if ok and lambada.is_stop_word(bpe.decode(p.target[:1]).strip().lower())]
  assert {" werewolves", " Alyssa"} <= set(first_piece_is_stop_word)
  assert len(first_piece_is_stop_word) > 50


def test_passages_split_as_lm_evaluation_harness(bpe):
  split = lambada.passages(bpe, ["The night was cold.\nHe saw werewolves"], eot_prefix=False)[0]
  assert bpe.decode(list(split.context)) == "The night was cold.\nHe saw"
  assert bpe.decode(list(split.target)) == " werewolves" == split.target_text
  with_eot = lambada.passages(bpe, ["a b"])[0]
  assert with_eot.context[0] == bpe.eot_id and with_eot.request.num_targets == 1
  with pytest.raises(ValueError, match="passage 1 has no last word"):
    lambada.passages(bpe, ["a fine passage", "nospace"])
