"""One Billion Word benchmark (Chelba et al. 2013): shuffled news sentences.

One record per sentence (line), `{"text": line}`. Train: the 99 files
training-monolingual.tokenized.shuffled/news.en-000??-of-00100; test: heldout
shard 0, heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050,
as in the paper. The manual directory holds those two folders.
"""

from lineage.data.builders import base

_URL = ("http://www.statmt.org/lm-benchmark/"
        "1-billion-word-language-modeling-benchmark-r13output.tar.gz")
_ROOT = "1-billion-word-language-modeling-benchmark-r13output"
_TRAIN = "training-monolingual.tokenized.shuffled"
_HELDOUT = "heldout-monolingual.tokenized.shuffled"


class Lm1b(base.TextLines):
  """LM1B, one sentence per record."""

  name = "lm1b"
  SOURCES = {"train": base.Source((_TRAIN,), _URL, f"{_ROOT}/{_TRAIN}"),
             "test": base.Source((_HELDOUT,), _URL, f"{_ROOT}/{_HELDOUT}")}

  def _split_generators(self, dl_manager):
    folders = self.resolve(dl_manager, self.SOURCES)
    files = {}
    if "train" in folders:
      files["train"] = sorted(folders["train"].glob("news.en-000??-of-00100"))
    if "test" in folders:
      files["test"] = [folders["test"] / "news.en.heldout-00000-of-00050"]
    for split, paths in files.items():
      if not paths or not paths[0].exists():
        raise FileNotFoundError(f"lm1b {split}: no news.en shard in {folders[split]}")
    return {split: self._generate_examples(paths) for split, paths in files.items()}

  def _generate_examples(self, paths):
    key = 0
    for path in paths:
      for _, line in base.lines(path):
        yield key, {"text": line}
        key += 1
