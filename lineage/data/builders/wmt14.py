"""WMT14 English-German (Bojar et al. 2014), the 2017 Transformer's data: records `{"en", "de"}`.

train: the WMT14 constrained parallel data for de-en, in this order: Europarl v7 (1,920,209
line pairs), Common Crawl (2,399,123) and News Commentary v9 (201,288), about 4.5M pairs, one
record per line pair (empty lines kept: filtering is the pipeline's choice). validation:
newstest2013 (3,000). test: newstest2014, the full set of 3,003 as the paper reports (sacrebleu's
"wmt14/full"), read from its SGML as sacrebleu reads it: each <seg> line's text, whitespace
runs collapsed, entities left as they are.
"""

import itertools
import re

import tensorflow_datasets as tfds

from lineage.data.builders import base

_STATMT = "http://www.statmt.org/"
# (split, corpus) -> (URL of its archive, path of the en file inside with {} for the language,
# the file's name in the manual directory with {} for the language).
_CORPORA = {
    ("train", "europarl"): (_STATMT + "wmt13/training-parallel-europarl-v7.tgz",
                            "training/europarl-v7.de-en.{}", "europarl-v7.de-en.{}"),
    ("train", "commoncrawl"): (_STATMT + "wmt13/training-parallel-commoncrawl.tgz",
                               "commoncrawl.de-en.{}", "commoncrawl.de-en.{}"),
    ("train", "news_commentary"): (_STATMT + "wmt14/training-parallel-nc-v9.tgz",
                                   "training/news-commentary-v9.de-en.{}",
                                   "news-commentary-v9.de-en.{}"),
    ("validation", "newstest2013"): (_STATMT + "wmt14/dev.tgz", "dev/newstest2013.{}",
                                     "newstest2013.{}"),
}
_TEST = _STATMT + "wmt14/test-full.tgz"
_TEST_FILES = {"en": "newstest2014-deen-src.en.sgm", "de": "newstest2014-deen-ref.de.sgm"}
_SEG = re.compile(r"<seg[^>]*>(.*)</seg>")


def sgm_segments(path):
  """(line number, text) of every <seg> of an SGML file of WMT's test sets."""
  for number, line in base.lines(path):
    match = _SEG.search(line)
    if match:
      yield number, re.sub(r"\s+", " ", match.group(1).strip())


class Wmt14(base.Builder):
  """WMT14 en-de sentence pairs."""

  name = "wmt14"

  def _features(self):
    return tfds.features.FeaturesDict({"en": tfds.features.Text(), "de": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    sources = {}
    for (split, corpus), (url, member, manual) in _CORPORA.items():
      for lang in ("en", "de"):
        sources[split, corpus, lang] = base.Source((manual.format(lang),), url,
                                                   member.format(lang))
    for lang, name in _TEST_FILES.items():
      sources["test", "newstest2014", lang] = base.Source((name,), _TEST, f"test-full/{name}")
    paths = self.resolve(dl_manager, sources)
    out = {}
    for split in ("train", "validation", "test"):
      wanted = [key for key in sources if key[0] == split]
      if all(key in paths for key in wanted):  # a split needs every one of its files
        files = [(paths[key], paths[key[:2] + ("de",)]) for key in wanted if key[2] == "en"]
        out[split] = self._generate_examples(files, sgm=split == "test")
    return out

  def _generate_examples(self, files, sgm=False):
    """Records of (en file, de file) pairs read in turn, keyed by their running count."""
    read = sgm_segments if sgm else base.lines
    key = 0
    for en_path, de_path in files:
      for en, de in itertools.zip_longest(read(en_path), read(de_path)):
        if en is None or de is None:
          raise ValueError(f"{en_path} and {de_path} differ in length: one ends where the "
                           f"other has line {(en or de)[0]}")
        yield key, {"en": en[1], "de": de[1]}
        key += 1
