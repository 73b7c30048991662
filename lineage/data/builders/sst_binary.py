"""Stanford Sentiment Treebank, binary sentence level, as OpenAI's sentiment-neuron repo ships it.

Records `{"label": 0 negative / 1 positive, "sentence"}`, in file order, from
{train,dev,test}_binary_sent.csv (header `label,sentence`): 6,920 / 872 / 1,821.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = ("https://raw.githubusercontent.com/openai/generating-reviews-discovering-sentiment/"
        "master/data/{}_binary_sent.csv")


class SstBinary(base.Builder):
  """SST-2 sentences with binary labels."""

  name = "sst_binary"
  SOURCES = {split: base.Source((f"{stem}_binary_sent.csv",), _URL.format(stem))
             for split, stem in (("train", "train"), ("validation", "dev"), ("test", "test"))}

  def _features(self):
    return tfds.features.FeaturesDict({
        "label": tfds.features.ClassLabel(names=["negative", "positive"]),
        "sentence": tfds.features.Text()})

  def _generate_examples(self, path):
    for number, row in base.csv_rows(path, ["label", "sentence"]):
      if row["label"] not in ("0", "1"):
        raise ValueError(f"{path}:{number}: label {row['label']!r} is not 0 or 1")
      yield number, {"label": int(row["label"]), "sentence": row["sentence"]}
