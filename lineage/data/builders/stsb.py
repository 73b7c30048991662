"""GLUE STS-B (Semantic Textual Similarity Benchmark), GPT-1's sentence-similarity regression task.

Records `{"sentence1", "sentence2", "score": similarity from 0 to 5}`, in file order, train
(5,749) and validation (1,500), from GLUE's STS-B.zip (tab-separated, header `index genre
filename year old_index source1 source2 sentence1 sentence2 score`, no quoting). GLUE's test
split has no scores and is left out.
"""

import csv

import numpy as np
import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = "https://dl.fbaipublicfiles.com/glue/data/STS-B.zip"


def _score(path, number, text):
  try:
    score = float(text)
  except ValueError:
    score = None
  if score is None or not 0.0 <= score <= 5.0:
    raise ValueError(f"{path}:{number}: similarity score {text!r} is not a number from 0 to 5")
  return score


class Stsb(base.Builder):
  """STS-B sentence pairs with similarity scores."""

  name = "stsb"
  SOURCES = {split: base.Source((f"{stem}.tsv",), _URL, f"STS-B/{stem}.tsv")
             for split, stem in (("train", "train"), ("validation", "dev"))}

  def _features(self):
    return tfds.features.FeaturesDict({
        "sentence1": tfds.features.Text(), "sentence2": tfds.features.Text(),
        "score": tfds.features.Scalar(dtype=np.float32)})

  def _generate_examples(self, path):
    rows = base.csv_rows(path, ["sentence1", "sentence2", "score"], delimiter="\t",
                         quoting=csv.QUOTE_NONE)
    for number, row in rows:
      yield number, {"sentence1": row["sentence1"], "sentence2": row["sentence2"],
                     "score": _score(path, number, row["score"])}
