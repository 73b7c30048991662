"""CIFAR-10 (Krizhevsky 2009) from its binary version, cifar-10-binary.tar.gz.

The binary version, not the python one: the python batches are pickles, which this
project never loads. Each record of a `.bin` file is 3,073 bytes: the label (0..9), then
1,024 red, 1,024 green and 1,024 blue values, each plane row-major 32x32. Train is
data_batch_1..5.bin in order (50,000), test is test_batch.bin (10,000). The archive is read
in place; an extracted `cifar-10-batches-bin/` in the manual directory is read as well.
Records `{"image": uint8 [32, 32, 3], "label": 0..9}` with the names of batches.meta.txt.
"""

import tarfile

import numpy as np
import tensorflow_datasets as tfds

from lineage.data.builders import base

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
SPLIT_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
               "test": ("test_batch.bin",)}
RECORD_BYTES = 1 + 32 * 32 * 3


def parse_batch(data, name="batch"):
  """uint8 images [n, 32, 32, 3] and int64 labels [n] from the bytes of one .bin file."""
  if len(data) % RECORD_BYTES:
    raise ValueError(f"{name}: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte "
                     "records (label + 3x32x32 pixels); is it from cifar-10-binary.tar.gz?")
  rows = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
  labels = rows[:, 0].astype(np.int64)
  if labels.size and labels.max() >= len(CLASS_NAMES):
    raise ValueError(f"{name}: label {labels.max()} out of range 0..9 (CIFAR-100's binary "
                     "files have two label bytes and are not this format)")
  images = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, labels


def _reader(dl_manager):
  """read(member name) -> bytes, from an extracted folder or the archive."""
  folder = base.manual_dir(dl_manager) / FOLDER
  if folder.exists():
    return lambda name: (folder / name).read_bytes()
  archive = base.fetch(dl_manager, base.Source((ARCHIVE,), URL))

  def read(name):
    with tarfile.open(archive, "r:gz") as tar:
      try:
        return tar.extractfile(f"{FOLDER}/{name}").read()
      except KeyError:
        raise FileNotFoundError(f"{archive} has no {FOLDER}/{name}") from None
  return read


class Cifar10(base.Builder):
  """CIFAR-10's 60,000 32x32 colour images in 10 classes."""

  name = "cifar10"

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=list(CLASS_NAMES))})

  def _split_generators(self, dl_manager):
    read = _reader(dl_manager)
    meta = [line for line in read("batches.meta.txt").decode().split("\n") if line.strip()]
    if tuple(meta) != CLASS_NAMES:
      raise ValueError(f"batches.meta.txt names {meta}, expected CIFAR-10's {list(CLASS_NAMES)}")
    return {split: self._generate_examples(read, files) for split, files in SPLIT_FILES.items()}

  def _generate_examples(self, read, files):
    key = 0
    for name in files:
      images, labels = parse_batch(read(name), name)
      for image, label in zip(images, labels):
        yield key, {"image": image, "label": int(label)}
        key += 1
