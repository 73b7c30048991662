"""The embedded synthetic corpus (`lineage.data.synthetic`), generated from a seed, no download.

`synthetic_documents(num_docs, seed)` in order, cut by `split_90_5_5` into train,
validation and test; one record per document, `{"text": document}`. The config's
name records its parameters; the default is 6,000 documents from seed 0 (configs/gpt2.py).
"""

import dataclasses

import tensorflow_datasets as tfds

from lineage.data import synthetic
from lineage.data.builders import base


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  num_docs: int = 6000
  seed: int = 0


def config(num_docs, seed):
  """The config for `num_docs` documents from `seed`."""
  return SyntheticConfig(name=f"docs{num_docs}_seed{seed}", num_docs=num_docs, seed=seed)


class SyntheticText(base.Builder):
  """Synthetic grammar documents."""

  name = "synthetic_text"
  BUILDER_CONFIGS = [config(6000, 0)]

  def _features(self):
    return tfds.features.FeaturesDict({"text": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    docs = synthetic.synthetic_documents(cfg.num_docs, cfg.seed)
    train, valid, _ = base.split_90_5_5(len(docs))
    return {"train": self._generate_examples(docs[:train]),
            "validation": self._generate_examples(docs[train:train + valid]),
            "test": self._generate_examples(docs[train + valid:])}

  def _generate_examples(self, docs):
    for key, text in enumerate(docs):
      yield key, {"text": text}
