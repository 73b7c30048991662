"""Story Cloze Test, Spring 2016 (Mostafazadeh et al. 2016), GPT-1's commonsense benchmark.

Records `{"sentences": the 4 context sentences, "endings": the 2 candidate fifth
sentences, "label": index (0 or 1) of the right ending}`, in file order, from
cloze_test_{val,test}__spring2016.csv (1,871 stories each). The data is handed out
by request only (https://cs.rochester.edu/nlp/rocstories/), so there is no download.
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_FIELDS = ["InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
           "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding"]


class StoryCloze(base.Builder):
  """Story Cloze, validation and test."""

  name = "story_cloze"
  SOURCES = {split: base.Source((f"cloze_test_{stem}__spring2016.csv",))
             for split, stem in (("validation", "val"), ("test", "test"))}

  def _features(self):
    return tfds.features.FeaturesDict({
        "sentences": tfds.features.Sequence(tfds.features.Text(), length=4),
        "endings": tfds.features.Sequence(tfds.features.Text(), length=2),
        "label": tfds.features.ClassLabel(num_classes=2)})

  def _generate_examples(self, path):
    for number, row in base.csv_rows(path, _FIELDS):
      if row["AnswerRightEnding"] not in ("1", "2"):
        raise ValueError(f"{path}:{number}: AnswerRightEnding {row['AnswerRightEnding']!r} "
                         "is not 1 or 2")
      yield number, {"sentences": [row[f] for f in _FIELDS[:4]],
                     "endings": [row[f] for f in _FIELDS[4:6]],
                     "label": int(row["AnswerRightEnding"]) - 1}
