"""OpenWebText (Gokaslan and Cohen 2019), the open re-creation of GPT-2's WebText.

One record per document (one upstream .txt file), `{"text": document}`, train only.
There is no canonical download: the manual directory holds the shards as published,
urlsf_subsetNN-M_data.xz (each an xz tar of .txt documents), any .tar/.tar.xz of
them (such as openwebtext.tar.xz), or the extracted .txt files, in sorted path order.
"""

import pathlib
import tarfile

import tensorflow_datasets as tfds

from lineage.data.builders import base

_HOME = "https://skylion007.github.io/OpenWebTextCorpus/"


def _tar_documents(fileobj, name):
  """Documents in a tar (any compression), descending into nested .xz/.tar shards."""
  with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
    for member in sorted(archive.getmembers(), key=lambda m: m.name):
      if not member.isfile():
        continue
      if member.name.endswith(".txt"):
        yield f"{name}/{member.name}", archive.extractfile(member).read().decode("utf-8")
      elif member.name.endswith((".xz", ".tar")):
        yield from _tar_documents(archive.extractfile(member), f"{name}/{member.name}")


def documents(folder):
  """(source name, text) for every document under `folder`."""
  for path in sorted(pathlib.Path(folder).rglob("*")):
    if path.name.endswith(".txt"):
      yield str(path), path.read_text(encoding="utf-8")
    elif path.name.endswith((".xz", ".tar")):
      with path.open("rb") as f:
        yield from _tar_documents(f, str(path))


class Openwebtext(base.Builder):
  """OpenWebText from local shards, one document per record."""

  name = "openwebtext"

  def _features(self):
    return tfds.features.FeaturesDict({"text": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    folder = base.manual_dir(dl_manager)
    if not any(documents(folder)):
      raise FileNotFoundError(
          f"no OpenWebText shards (*_data.xz, *.tar, *.txt) in {folder}; OpenWebText has no "
          f"download here: fetch it from {_HOME} and place the shards there")
    return {"train": self._generate_examples(folder)}

  def _generate_examples(self, folder):
    for key, (_, text) in enumerate(documents(folder)):
      yield key, {"text": text}
