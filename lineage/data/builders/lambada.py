"""LAMBADA as OpenAI processed it for GPT-2: 5,153 test passages whose last word is the target.

One record per passage, `{"text": passage}`, in file order; test split only.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base


class Lambada(base.Builder):
  """LAMBADA test (OpenAI's lambada_test.jsonl)."""

  name = "lambada"
  SOURCES = {"test": base.Source(
      ("lambada_test.jsonl",),
      "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl")}

  def _features(self):
    return tfds.features.FeaturesDict({"text": tfds.features.Text()})

  def _generate_examples(self, path):
    for number, obj in base.jsonl(path, ["text"]):
      yield number, {"text": obj["text"]}
