"""Multi30k task 1 (Elliott et al. 2016): English-German image-caption translation pairs.

Records `{"en", "de"}`, one per line pair, in file order: train (29,000), validation
(val, 1,014) and test2016 (test_2016_flickr, 1,000), from the raw {split}.{en,de}.gz.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{}"
_SPLITS = (("train", "train"), ("validation", "val"), ("test2016", "test_2016_flickr"))


class Multi30k(base.Builder):
  """Multi30k en-de sentence pairs."""

  name = "multi30k"

  def _features(self):
    return tfds.features.FeaturesDict({"en": tfds.features.Text(), "de": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    sources = {(split, lang): base.Source((f"{stem}.{lang}.gz", f"{stem}.{lang}"),
                                          _URL.format(f"{stem}.{lang}.gz"))
               for split, stem in _SPLITS for lang in ("en", "de")}
    paths = self.resolve(dl_manager, sources)
    return {split: self._generate_examples(paths[split, "en"], paths[split, "de"])
            for split, _ in _SPLITS if (split, "en") in paths and (split, "de") in paths}

  def _generate_examples(self, en_path, de_path):
    en, de = list(base.lines(en_path)), list(base.lines(de_path))
    if len(en) != len(de):
      raise ValueError(f"{en_path} has {len(en)} lines but {de_path} has {len(de)}")
    for (number, en_line), (_, de_line) in zip(en, de):
      yield number, {"en": en_line, "de": de_line}
