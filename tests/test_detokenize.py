"""Detokenizers on each corpus's upstream token conventions."""

import pytest

from lineage.eval import detokenize


@pytest.mark.parametrize("tokenized, expected", [
    (" = Robert <unk> = ", "= Robert <unk> ="),
    (" = = Career = = ", "== Career =="),
    (" = = = 2000 – 2005 = = = ", "=== 2000 – 2005 ==="),
    (" a guest @-@ starring role ", "a guest-starring role"),
    (" 1 @,@ 000 people and 3 @.@ 5 km ", "1,000 people and 3.5 km"),
    (" The Bill ; he portrayed \" Scott Parry \" in the episode , 2000 . ",
     "The Bill; he portrayed \"Scott Parry\" in the episode, 2000."),
    (" <unk> 's play ( see below ) was n't the players ' best ! ",
     "<unk>'s play (see below) wasn't the players' best!"),
    (" [ citation ] : yes ? ", "[citation]: yes?"),
    # Single-quoted spans close up; a lone ' is a plural possessive, even across a sentence.
    (" The ' T ' <unk> lift was 12 @.@ 1 metres ", "The 'T' <unk> lift was 12.1 metres"),
    (" between ' sea @-@ keeping ' , strategic range ", "between 'sea-keeping', strategic range"),
    (" next ' freshman sensation . ' As ", "next 'freshman sensation.' As"),
    (" the Koreans ' offensive was destroyed . Haynes ' command ",
     "the Koreans' offensive was destroyed. Haynes' command"),
])
def test_wikitext(tokenized, expected):
  assert detokenize.wikitext(tokenized) == expected


def test_wikitext_keeps_one_line_per_line():
  text = " = A = \n \n The cat . \n"
  assert detokenize.wikitext(text) == "= A =\n\nThe cat.\n"


@pytest.mark.parametrize("tokenized, expected", [
    (" no it was n't black monday ", "no it wasn't black monday"),
    (" the company 's $ N million loss ", "the company's $N million loss"),
    (" rose N % to <unk> ", "rose N% to <unk>"),
    (" they 're sure we 've seen i 'm told ", "they're sure we've seen i'm told"),
])
def test_ptb(tokenized, expected):
  assert detokenize.ptb(tokenized) == expected


def test_ptb_keeps_every_original_word():
  """<unk> and N stay words, so the text still carries what the word count counts."""
  line = " the <unk> N <unk> fund "
  assert detokenize.ptb(line).split() == line.split()


def test_moses_1bw():
  assert detokenize.moses('Markets fell 2 % on Monday , he said : " It \'s over . "') == \
      'Markets fell 2% on Monday, he said: "It\'s over."'
  assert detokenize.moses("He did n't ( really ) .") == "He didn't (really)."


def test_cbt_quotes_become_straight_double_quotes():
  text = "`` I 'm going , '' said Tom .\n`` Come ! '' he called ."
  out = detokenize.cbt(text)
  assert out == "\"I'm going,\" said Tom.\n\"Come!\" he called."
  assert "``" not in out and "''" not in out


def test_lambada_is_untouched_unless_quotes_are_normalised():
  text = "\u201cHi,\u201d she said, \u2018twice\u2019 and don't"
  assert detokenize.lambada(text) == text
  assert detokenize.lambada(text, normalize_quotes=True) == "\"Hi,\" she said, 'twice' and don't"


def test_identity_and_registry():
  assert detokenize.identity(" a  b ") == " a  b "
  assert set(detokenize.DETOKENIZERS) == {"wikitext", "ptb", "moses", "cbt", "lambada",
                                          "identity"}
