"""HumanEval (Chen et al. 2021): 164 hand-written Python problems for Codex's pass@k.

Records `{"task_id", "prompt", "canonical_solution", "test", "entry_point"}`, one per
problem, in file order (HumanEval/0 first); test split only.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


class Humaneval(base.Builder):
  """HumanEval problems."""

  name = "humaneval"
  SOURCES = {"test": base.Source(
      ("HumanEval.jsonl.gz",),
      "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz")}

  def _features(self):
    return tfds.features.FeaturesDict({f: tfds.features.Text() for f in _FIELDS})

  def _generate_examples(self, path):
    for number, obj in base.jsonl(path, _FIELDS):
      yield number, {f: obj[f] for f in _FIELDS}
