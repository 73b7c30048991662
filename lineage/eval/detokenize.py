"""Detokenizers that turn word-tokenized benchmark text back into ordinary prose.

GPT-2 was trained on raw web text, so its zero-shot results apply "invertible
detokenizers" that undo each benchmark's tokenization artefacts before BPE
(section 3 of the paper). Perplexity is still normalised by the ORIGINAL word
count, so a detokenizer only has to make the text look natural; it never
changes what is counted. Each function maps one corpus string (possibly many
lines) to its detokenized form.
"""

import re

# "' s" style contractions that word tokenizers split off.
_CONTRACTIONS = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d|')(?=\W|$)", re.IGNORECASE)
# Punctuation that attaches to the word before it.
_CLOSING = re.compile(r" ([.,;:!?%)\]}])")
# Brackets that attach to the word after them.
_OPENING = re.compile(r"([(\[{$#]) ")
# Straight double quotes around a span: " a b " -> "a b".
_DOUBLE_QUOTED = re.compile(r'" ([^"\n]*?) "')
# A single-quoted span of at most 8 tokens within one sentence: " ' sea @-@ keeping ' " ->
# " 'sea @-@ keeping' ". A lone ' that closes no such span is a plural possessive ("the
# ships ' hulls"), left to _CONTRACTIONS.
_SINGLE_QUOTED = re.compile(r"(?<!\S)' ((?:(?![.!?] )[^\s']+ ){0,7}?[^\s']+) '(?!\S)")
# CBT's (PTB-style) quote marks: `` opens and '' closes a quotation.
_LATEX_QUOTES = re.compile(r"``|''")
# WikiText's joiners inside numbers and compounds: 1 @,@ 000 -> 1,000; well @-@ known.
_WIKI_JOINERS = re.compile(r" @([-,.])@ ")
# WikiText headings: " = = Career = = " -> "== Career ==".
_WIKI_HEADING = re.compile(r"^ ?((?:= )+)(.*?) ((?:= ?)+)$", re.MULTILINE)
_LINE_EDGE_SPACES = re.compile(r"^ +| +$", re.MULTILINE)


def _common(text):
  """The rules every word-tokenized English corpus here shares."""
  text = _CONTRACTIONS.sub(r"\1", text)
  text = _CLOSING.sub(r"\1", text)
  text = _OPENING.sub(r"\1", text)
  text = _DOUBLE_QUOTED.sub(r'"\1"', text)
  return _LINE_EDGE_SPACES.sub("", text)


def wikitext(text):
  """WikiText (tokens version): `@-@`, `@,@`, `@.@`, split contractions and punctuation,
  spaces inside brackets and quotes, and `= = heading = =` markers. `<unk>` stays as is:
  it is one word of the original and the model sees it as text."""
  text = _WIKI_JOINERS.sub(r"\1", text)
  text = _WIKI_HEADING.sub(lambda m: _heading(m.group(1), m.group(2)), text)
  text = _SINGLE_QUOTED.sub(r"'\1'", text)
  return _common(text)


def _heading(equals, title):
  marks = "=" * equals.count("=")
  return f"{marks} {title.strip()} {marks}"


def ptb(text):
  """Penn Treebank (Mikolov's lowercase version): ` n't`, ` 's` and other split
  contractions rejoin; `<unk>` and the number placeholder `N` are kept as words, since
  the original text has no better spelling for them."""
  text = _CONTRACTIONS.sub(r"\1", text)
  text = _OPENING.sub(r"\1", text)
  text = text.replace(" %", "%")
  return _LINE_EDGE_SPACES.sub("", text)


def moses(text):
  """Moses-style tokenized sentences: One Billion Word news."""
  return _common(text)


def cbt(text):
  """Children's Book Test: Moses-style sentences whose quotations are marked `` and ''; both
  become a straight double quote, so a quoted span reads "like this"."""
  return _common(_LATEX_QUOTES.sub('"', text))


_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def lambada(text, normalize_quotes=False):
  """OpenAI's LAMBADA is already detokenized; curly quotes optionally become straight ones
  (the text mixes both styles)."""
  return text.translate(_QUOTES) if normalize_quotes else text


def identity(text):
  """enwik8 and text8: their exact bytes and characters are what is scored."""
  return text


DETOKENIZERS = {"wikitext": wikitext, "ptb": ptb, "moses": moses, "cbt": cbt,
                "lambada": lambada, "identity": identity}
