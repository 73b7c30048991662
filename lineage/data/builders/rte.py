"""GLUE RTE (Recognizing Textual Entailment), GPT-1's entailment benchmark.

Records `{"sentence1", "sentence2", "label": 0 entailment / 1 not_entailment}`, in file
order, train (2,490) and validation (277). Reads either tab-separated layout by its
header: the Hugging Face export in ../shared/data/rte (`sentence1 sentence2 label idx`,
labels 0/1, fields quoted CSV-style) or GLUE's RTE.zip (`index sentence1 sentence2
label`, labels as words, no quoting: quotes are text).
GLUE's test split has no labels and is left out.
"""

import csv

import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = "https://dl.fbaipublicfiles.com/glue/data/RTE.zip"
_LABELS = {"0": 0, "1": 1, "entailment": 0, "not_entailment": 1}


class Rte(base.Builder):
  """RTE sentence pairs."""

  name = "rte"
  SOURCES = {split: base.Source((f"{stem}.tsv",), _URL, f"RTE/{stem}.tsv")
             for split, stem in (("train", "train"), ("validation", "dev"))}

  def _features(self):
    return tfds.features.FeaturesDict({
        "sentence1": tfds.features.Text(), "sentence2": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=["entailment", "not_entailment"])})

  def _generate_examples(self, path):
    with base.open_text(path) as f:
      glue = f.readline().startswith("index\t")
    rows = base.csv_rows(path, ["sentence1", "sentence2", "label"], delimiter="\t",
                         quoting=csv.QUOTE_NONE if glue else csv.QUOTE_MINIMAL)
    for number, row in rows:
      if row["label"] not in _LABELS:
        raise ValueError(f"{path}:{number}: unknown label {row['label']!r}")
      yield number, {"sentence1": row["sentence1"], "sentence2": row["sentence2"],
                     "label": _LABELS[row["label"]]}
