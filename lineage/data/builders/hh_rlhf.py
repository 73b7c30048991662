"""Anthropic HH-RLHF (Bai et al. 2022): human preference pairs over whole dialogues.

Records `{"chosen", "rejected"}` (each a full "\\n\\nHuman: ... \\n\\nAssistant: ..."
transcript), one per line, in file order. Configs `harmless-base`, `helpful-base`,
`helpful-online`, `helpful-rejection-sampled`. The manual directory is flat, as in
../shared/data/hh_rlhf: `<config>_test.jsonl.gz` and, when present, `<config>_train.jsonl.gz`
(a manual copy without the train file builds the test split only).
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = "https://github.com/anthropics/hh-rlhf/raw/master/{}/{}.jsonl.gz"
_SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")


class HhRlhf(base.Builder):
  """HH-RLHF chosen/rejected pairs."""

  name = "hh_rlhf"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n in _SUBSETS]

  def _features(self):
    return tfds.features.FeaturesDict({"chosen": tfds.features.Text(),
                                       "rejected": tfds.features.Text()})

  def sources(self):
    subset = self.builder_config.name
    return {split: base.Source((f"{subset}_{split}.jsonl.gz",), _URL.format(subset, split))
            for split in ("train", "test")}

  def _generate_examples(self, path):
    for number, obj in base.jsonl(path, ["chosen", "rejected"]):
      yield number, {"chosen": obj["chosen"], "rejected": obj["rejected"]}
