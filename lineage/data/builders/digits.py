"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 real 8x8 images.

They ship inside scikit-learn, so this real image dataset needs no download. Pixel
counts 0..16 are scaled to uint8 0..255 (x 255 / 16, rounded). Splits in the bundled
order: train the first 1,437 images (80%), test the last 360. Records
`{"image": uint8 [8, 8, 1], "label": 0..9, "caption": "a photo of the digit seven"}`;
captions come from `caption(label, template)`, one of TEMPLATES chosen per image by a
seeded generator so that text varies as in web captions.
"""

import numpy as np
import tensorflow_datasets as tfds

from lineage.data.builders import base

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("a photo of the digit {}", "a photo of the number {}", "the digit {}",
             "a handwritten {}", "a scan of a handwritten {}")
NUM_TRAIN = 1437


def caption(label, template=TEMPLATES[0]):
  """The caption of a digit: the template with the digit's English name."""
  return template.format(CLASS_NAMES[label])


def images_and_labels():
  """uint8 [1797, 8, 8, 1] images and int [1797] labels, in scikit-learn's order."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  digits = datasets.load_digits()
  images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


class Digits(base.Builder):
  """8x8 grey handwritten digits with template captions."""

  name = "digits"

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
        "caption": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    images, labels = images_and_labels()
    templates = np.random.default_rng(0).integers(len(TEMPLATES), size=len(labels))
    records = [{"image": image, "label": int(label), "caption": caption(label, TEMPLATES[t])}
               for image, label, t in zip(images, labels, templates)]
    return {"train": self._generate_examples(records[:NUM_TRAIN]),
            "test": self._generate_examples(records[NUM_TRAIN:])}

  def _generate_examples(self, records):
    yield from enumerate(records)
