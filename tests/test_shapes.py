"""Synthetic shapes: pixels agree with their labels, held-out pairs stay out of training."""

import numpy as np
import pytest

from lineage.data import builders, shapes
from lineage.data.builders import shapes as shapes_builder


@pytest.fixture(scope="module")
def train():
  return shapes.generate(400, seed=3, split="train")


def _mask(images, labels):
  """Pixels of the shape: closer to the scene's colour than to the grey background."""
  return np.abs(images.astype(float) - images.mean(-1, keepdims=True)).max(-1) > 40


def test_deterministic_from_seed(train):
  again = shapes.generate(400, seed=3, split="train")
  np.testing.assert_array_equal(again.images, train.images)
  assert again.captions == train.captions
  other = shapes.generate(400, seed=4, split="train")
  assert not np.array_equal(other.images, train.images)
  assert train.images.shape == (400, 32, 32, 3) and train.images.dtype == np.uint8


def test_pixels_follow_labels(train):
  mask = _mask(train.images, train.labels)
  area = mask.sum((1, 2))
  assert area.min() > 10
  size = train.labels["size"]
  assert area[size == 1].min() > area[size == 0].max() * 0.9  # large shapes cover more
  for i in range(len(area)):
    scene = shapes.names(train.labels, i)
    ys, xs = np.nonzero(mask[i])  # the bounding box's middle, in pixel-centre coordinates
    cy, cx = (ys.min() + ys.max()) / 2 + 0.5, (xs.min() + xs.max()) / 2 + 0.5
    assert (cy < 16) == scene["position"].startswith("top"), (i, scene, cy)
    assert (cx < 16) == scene["position"].endswith("left"), (i, scene, cx)
    mean = train.images[i][mask[i]].mean(0)
    nearest = min(shapes.COLOURS, key=lambda c: np.abs(mean - shapes._RGB[c]).sum())
    assert nearest == scene["colour"], (i, scene, mean)
  # How much of its bounding box a shape fills tells a square from a circle from a diamond.
  for i in np.flatnonzero(size == 1)[:40]:
    ys, xs = np.nonzero(mask[i])
    fill = mask[i].sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    expected = {"square": (0.9, 1.01), "circle": (0.7, 0.88), "diamond": (0.4, 0.65),
                "triangle": (0.4, 0.65), "cross": (0.4, 0.7)}[shapes.names(train.labels, i)["shape"]]
    assert expected[0] <= fill <= expected[1], (i, shapes.names(train.labels, i), fill)


def test_held_out_pairs_never_in_training(train):
  assert not shapes.held_out_mask(train.labels).any()
  for text in train.captions:
    for shape, colour in shapes.HELD_OUT:
      assert not (shape in text and colour in text), text
  # Every shape and every colour is still seen, just not in the held-out pairs.
  assert set(train.labels["shape"]) == set(range(5)) == set(train.labels["colour"])
  held = shapes.generate(100, seed=5, split="held_out")
  assert shapes.held_out_mask(held.labels).all()
  everything = shapes.sample_labels(500, seed=6, split="all")
  assert 0 < shapes.held_out_mask(everything).sum() < 500


def test_custom_held_out():
  pairs = (("square", "red"), ("square", "blue"))
  labels = shapes.sample_labels(300, seed=0, split="held_out", held_out=pairs)
  assert {shapes.SHAPES[s] for s in labels["shape"]} == {"square"}
  assert {shapes.COLOURS[c] for c in labels["colour"]} == {"red", "blue"}


def test_captions_name_attributes(train):
  for i, text in enumerate(train.captions[:50]):
    assert shapes.names(train.labels, i)["shape"] in text
  full = shapes.captions(train.labels, seed=0, mention=("colour", "size", "position"))
  scene = shapes.names(train.labels, 0)
  assert full[0].endswith(f"{scene['size']} {scene['colour']} {scene['shape']} in the "
                          f"{scene['position']}")
  bare = shapes.captions(train.labels, seed=0, mention=())
  assert bare[0].endswith(" " + scene["shape"]) and scene["colour"] not in bare[0]
  assert shapes.caption(scene, "a photo of a ", ("colour",)) == (
      f"a photo of a {scene['colour']} {scene['shape']}")
  named = [sum(w in t for w in shapes.COLOURS) for t in train.captions]
  assert 0.3 < np.mean(named) < 0.7  # colour named about half the time


def test_image_size():
  data = shapes.generate(4, seed=0, image_size=64)
  assert data.images.shape == (4, 64, 64, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="test"), "split 'test' is not one of"),
    (dict(held_out=(("hexagon", "red"),)), "not \\(shape, colour\\)"),
    (dict(held_out=tuple(("circle", c) for c in shapes.COLOURS)), "every colour of 'circle'"),
    (dict(split="held_out", held_out=()), "needs at least one held-out pair"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    shapes.sample_labels(10, seed=0, **kwargs)


def test_bad_mention():
  with pytest.raises(ValueError, match="cannot mention \\['texture'\\]"):
    shapes.captions(shapes.sample_labels(2, 0), seed=0, mention=("texture",))


def test_builder_matches_generator(tmp_path):
  cfg = shapes_builder.config(num_train=30, num_eval=10, seed=7)
  splits = {s: builders.load("shapes", s, data_dir=tmp_path, config=cfg)
            for s in ("train", "validation", "test", "held_out")}
  assert {s: len(v) for s, v in splits.items()} == {
      "train": 30, "validation": 10, "test": 10, "held_out": 10}
  expected = shapes.generate(10, seed=7 + 3, split="held_out")
  for i in range(10):
    record = splits["held_out"][i]
    np.testing.assert_array_equal(record["image"], expected.images[i])
    assert record["caption"].decode() == expected.captions[i]
    assert record["shape"] == expected.labels["shape"][i]
    assert record["colour"] == expected.labels["colour"][i]
  train_pairs = {(r["shape"], r["colour"]) for r in splits["train"]}
  held_pairs = {(shapes.SHAPES.index(s), shapes.COLOURS.index(c)) for s, c in shapes.HELD_OUT}
  assert not train_pairs & held_pairs
  other = shapes_builder.config(30, 10, 7, held_out=(("square", "red"),))
  assert other.name.endswith("_square-red") and other.name != cfg.name
