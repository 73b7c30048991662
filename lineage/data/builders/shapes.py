"""The synthetic shapes (`lineage.data.shapes`) as a dataset, generated from a seed, no download.

Splits: train and validation and test (scenes whose shape-colour pair is not held out),
and held_out (only held-out pairs: shape-colour combinations that no training image shows
and no training caption names). Each split has its own seed (config seed + 0, 1, 2, 3).
Records `{"image": uint8 [32, 32, 3], "caption", "shape", "colour", "size", "position"}`,
the last four class labels named as in `shapes.ATTRIBUTES`.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from lineage.data import shapes
from lineage.data.builders import base

_SPLITS = (("train", "train"), ("validation", "train"), ("test", "train"),
           ("held_out", "held_out"))


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  num_train: int = 20000
  num_eval: int = 1000  # each of validation, test and held_out
  seed: int = 0
  held_out: tuple = shapes.HELD_OUT


def config(num_train, num_eval, seed, held_out=shapes.HELD_OUT):
  """A config: `num_train` training scenes, `num_eval` in each other split, from `seed`.

  Its name encodes the held-out pairs only when they are not the default.
  """
  held_out = tuple(sorted(shapes.check_held_out(held_out)))
  tag = "" if held_out == tuple(sorted(shapes.HELD_OUT)) else "_" + "_".join(
      f"{s}-{c}" for s, c in held_out)
  return ShapesConfig(name=f"train{num_train}_eval{num_eval}_seed{seed}{tag}",
                      num_train=num_train, num_eval=num_eval, seed=seed, held_out=held_out)


class Shapes(base.Builder):
  """Coloured shapes at 32x32 with template captions and held-out shape-colour pairs."""

  name = "shapes"
  # 1.1.0: colours bright in every channel (lineage.data.shapes._RGB).
  VERSION = tfds.core.Version("1.1.0")
  BUILDER_CONFIGS = [config(20000, 1000, 0)]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
        "caption": tfds.features.Text(),
        **{attr: tfds.features.ClassLabel(names=list(values))
           for attr, values in shapes.ATTRIBUTES.items()}})

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    return {name: self._generate_examples(
        cfg.num_train if name == "train" else cfg.num_eval, cfg.seed + offset, split, cfg)
            for offset, (name, split) in enumerate(_SPLITS)}

  def _generate_examples(self, n, seed, split, cfg):
    data = shapes.generate(n, seed, split=split, held_out=cfg.held_out)
    for i in range(n):
      yield i, {"image": data.images[i], "caption": data.captions[i],
                **{attr: int(data.labels[attr][i]) for attr in shapes.ATTRIBUTES}}
