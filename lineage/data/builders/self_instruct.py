"""Self-Instruct's human-written sets (Wang et al. 2022): 175 seed tasks, 252 user-oriented tasks.

Splits `seed_tasks` (data/seed_tasks.jsonl, the SFT seeds) and `user_oriented`
(human_eval/user_oriented_instructions.jsonl, the instruction-following eval).
Records `{"id", "instruction", "instances": {"input": [...], "output": [...]}}`, in
file order; an instance's input may be empty.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = "https://raw.githubusercontent.com/yizhongw/self-instruct/main/"


class SelfInstruct(base.Builder):
  """Self-Instruct seed and user-oriented tasks."""

  name = "self_instruct"
  SOURCES = {
      "seed_tasks": base.Source(("seed_tasks.jsonl",), _URL + "data/seed_tasks.jsonl"),
      "user_oriented": base.Source(("user_oriented_instructions.jsonl",),
                                   _URL + "human_eval/user_oriented_instructions.jsonl")}

  def _features(self):
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(), "instruction": tfds.features.Text(),
        "instances": tfds.features.Sequence({"input": tfds.features.Text(),
                                             "output": tfds.features.Text()})})

  def _generate_examples(self, path):
    for number, obj in base.jsonl(path, ["id", "instruction", "instances"]):
      instances = obj["instances"]
      if not instances or not all(isinstance(i, dict) and {"input", "output"} <= i.keys()
                                  for i in instances):
        raise ValueError(f"{path}:{number}: instances must be a non-empty list of "
                         "{input, output}")
      yield number, {"id": obj["id"], "instruction": obj["instruction"],
                     "instances": [{"input": i["input"], "output": i["output"]}
                                   for i in instances]}
