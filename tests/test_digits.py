"""scikit-learn's digits as a dataset: the real images, their labels and template captions."""

import numpy as np
import pytest

from lineage.data import builders
from lineage.data.builders import digits


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  return {s: builders.load("digits", s, data_dir=data_dir) for s in ("train", "test")}


def test_counts_and_order(splits):
  from sklearn import datasets
  assert len(splits["train"]) == digits.NUM_TRAIN == 1437 and len(splits["test"]) == 360
  real = datasets.load_digits()
  for split, offset in (("train", 0), ("test", digits.NUM_TRAIN)):
    for i in (0, 17, len(splits[split]) - 1):
      record = splits[split][i]
      assert record["label"] == real.target[offset + i]
      assert record["image"].shape == (8, 8, 1) and record["image"].dtype == np.uint8
      np.testing.assert_allclose(record["image"][..., 0] / 255 * 16, real.images[offset + i],
                                 atol=16 / 255 / 2 + 1e-9)


def test_captions_name_the_label(splits):
  used = set()
  for record in splits["test"]:
    text = record["caption"].decode()
    name = digits.CLASS_NAMES[record["label"]]
    assert text in {t.format(name) for t in digits.TEMPLATES}, text
    used.add(text.replace(name, "{}"))
  assert used == set(digits.TEMPLATES)  # the templates vary from image to image
  assert digits.caption(7) == "a photo of the digit seven"
  assert digits.caption(0, "the digit {}") == "the digit zero"
