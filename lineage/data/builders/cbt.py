"""Children's Book Test (Hill et al. 2015): cloze questions over children's books.

Upstream format: each question is 21 numbered lines, sentences 1 to 20 of context,
then `21 query<TAB>answer<TAB><TAB>cand1|cand2|...`, and a blank line. One record per
question: `{"context": the 20 sentences joined by newlines, "query", "answer",
"candidates": [10 words]}`, in file order. Configs `CN` (common nouns) and `NE`
(named entities); manual files cbtest_{CN,NE}_{train,valid_2000ex,test_2500ex}.txt.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_URL = "http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz"
_SPLITS = (("train", "train"), ("validation", "valid_2000ex"), ("test", "test_2500ex"))


def questions(path):
  """(line number of the query line, record) for each question in an upstream file."""
  context = []
  for number, line in base.lines(path):
    if not line.strip():
      if context:
        raise ValueError(f"{path}:{number}: question ends after {len(context)} context lines")
      continue
    index, _, rest = line.partition(" ")
    if index != str(len(context) + 1):
      raise ValueError(f"{path}:{number}: expected line number {len(context) + 1}, got {index!r}")
    if len(context) < 20:
      context.append(rest)
      continue
    fields = rest.split("\t")
    if len(fields) != 4 or not fields[1] or not fields[3]:
      raise ValueError(f"{path}:{number}: expected 'query<TAB>answer<TAB><TAB>candidates'")
    candidates = fields[3].split("|")
    if fields[1] not in candidates:
      raise ValueError(f"{path}:{number}: answer {fields[1]!r} is not a candidate")
    yield number, {"context": "\n".join(context), "query": fields[0], "answer": fields[1],
                   "candidates": candidates}
    context = []
  if context:
    raise ValueError(f"{path}: file ends inside a question")


class Cbt(base.Builder):
  """CBT cloze questions, CN or NE."""

  name = "cbt"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="CN", description="common nouns"),
                     tfds.core.BuilderConfig(name="NE", description="named entities")]

  def _features(self):
    return tfds.features.FeaturesDict({
        "context": tfds.features.Text(), "query": tfds.features.Text(),
        "answer": tfds.features.Text(),
        "candidates": tfds.features.Sequence(tfds.features.Text())})

  def sources(self):
    kind = self.builder_config.name
    return {split: base.Source((f"cbtest_{kind}_{stem}.txt",), _URL,
                               f"CBTest/data/cbtest_{kind}_{stem}.txt")
            for split, stem in _SPLITS}

  def _generate_examples(self, path):
    yield from questions(path)
