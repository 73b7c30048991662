"""enwik8 (Hutter Prize): the first 10^8 bytes of an English Wikipedia XML dump.

Character-level results are bits per byte, so the exact bytes are kept: records are
`{"bytes": uint8[<= CHUNK]}`, consecutive 1 MiB slices in order (a split is its
records concatenated). Splits by `split_90_5_5` of the file length: 90M/5M/5M bytes
for the real file, proportional for smaller ones (test fixtures). Manual file: enwik8.
"""

import numpy as np
import tensorflow_datasets as tfds

from lineage.data.builders import base


class Enwik8(base.SplitStream):
  """enwik8 as byte chunks."""

  name = "enwik8"
  SOURCE = base.Source(("enwik8",), "http://mattmahoney.net/dc/enwik8.zip", "enwik8")
  CHUNK = 1 << 20

  def _features(self):
    return tfds.features.FeaturesDict(
        {"bytes": tfds.features.Tensor(shape=(None,), dtype=np.uint8)})

  def _read(self, path):
    return path.read_bytes()

  def _record(self, piece):
    return {"bytes": np.frombuffer(piece, dtype=np.uint8)}
