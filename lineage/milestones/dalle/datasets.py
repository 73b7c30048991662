"""What DALL-E trains on and is judged on (data.name): the synthetic shapes or the digits.

Each dataset gives the two stages their images and captions, the prompts that sampling
draws for, and the judge that grades the samples against the renderer's or the dataset's
ground truth (never CLIP, which reranks):

- `shapes`: scenes of lineage.data.shapes. Training scenes never show a held-out (shape,
  colour) pair; the eval scenes and every prompt show only those pairs, so a match is
  composition: the right shape in a colour it was never drawn in. Judge: a CNN trained on
  renders of every pair (judge.py).
- `digits`: scikit-learn's 1,797 real 8x8 handwritten digits through the `digits` builder
  (train 1,437, test 360), with its captions ("a photo of the digit seven", ...). Prompts
  ask for each digit in each caption template. Judge: a logistic regression on the
  training digits' pixels (judge.py).

Targets are int32 [n, k]: what the judge must read in a sample, (shape, colour) or (digit,).
"""

import dataclasses
import itertools

import numpy as np

from lineage.data import image_batches, shapes
from lineage.data.builders import digits as digits_builder
from lineage.milestones.dalle import captions as captions_lib
from lineage.milestones.dalle import judge as judge_lib

NAMES = ("shapes", "digits")


@dataclasses.dataclass(frozen=True)
class Part:
  """Images uint8 [n, H, W, C] with one caption each."""
  images: np.ndarray
  captions: list


class Shapes:
  """The synthetic shapes (see the module docstring); scenes from data.seed + an offset per
  use: 0 training, 2 held-out eval, 3 the judge's training renders, 4 the judge's test."""
  image_shape = (32, 32, 3)

  def __init__(self, data_cfg):
    self.seed = data_cfg.seed
    self.num_train, self.num_eval = data_cfg.num_train, data_cfg.num_eval
    self.tokenizer = captions_lib.WordTokenizer(captions_lib.SHAPES_VOCAB)

  def _part(self, n, split, offset):
    scenes = shapes.generate(n, self.seed + offset, split=split)
    return Part(scenes.images, captions_lib.training_captions(scenes.labels, self.seed + offset))

  def train(self, n=None):
    return self._part(n or self.num_train, "train", 0)

  def eval(self, n=None):
    return self._part(n or self.num_eval, "held_out", 2)

  def prompts(self):
    """Every held-out pair at every size and position, and the (shape, colour) each asks for."""
    return captions_lib.held_out_prompts()

  def eval_targets(self, n):
    """The eval part's first n scenes' (shape, colour): what a faithful copy must show."""
    labels = shapes.sample_labels(n, self.seed + 2, split="held_out")
    return np.stack([labels["shape"], labels["colour"]], axis=1).astype(np.int32)

  def train_judge(self, sample_cfg):
    """(judge, its accuracy on fresh renders of the held-out pairs)."""
    train = shapes.generate(sample_cfg.judge_scenes, self.seed + 3, split="all")
    params = judge_lib.train(train.images, train.labels, steps=sample_cfg.judge_steps,
                             seed=self.seed)
    judge = judge_lib.ShapesJudge(params)
    test = shapes.generate(500, self.seed + 4, split="held_out")
    shape, colour = judge_lib.predict(params, test.images)
    return judge, {"judge_shape_accuracy": float((shape == test.labels["shape"]).mean()),
                   "judge_colour_accuracy": float((colour == test.labels["colour"]).mean())}


class Digits:
  """The real handwritten digits (see the module docstring): the builder's train split for
  both stages, its test split for their held-out measures and the judge's accuracy."""
  image_shape = (8, 8, 1)

  def __init__(self, data_cfg):
    self.data_dir = data_cfg.data_dir or None
    self.tokenizer = captions_lib.WordTokenizer(captions_lib.DIGITS_VOCAB)
    self._splits = {}

  def _split(self, split):
    if split not in self._splits:
      self._splits[split] = image_batches.load_split("digits", split, data_dir=self.data_dir)
    return self._splits[split]

  def _part(self, split, n):
    images, texts, _ = self._split(split)
    n = len(images) if n is None else min(n, len(images))
    return Part(images[:n], texts[:n])

  def train(self, n=None):
    return self._part("train", n)

  def eval(self, n=None):
    return self._part("test", n)

  def prompts(self):
    """Each digit in each caption template, and the digit each asks for."""
    pairs = list(itertools.product(range(10), digits_builder.TEMPLATES))
    return ([digits_builder.caption(d, t) for d, t in pairs],
            np.asarray([[d] for d, _ in pairs], np.int32))

  def eval_targets(self, n):
    return self._split("test")[2]["label"][:n, None].astype(np.int32)

  def train_judge(self, sample_cfg):
    del sample_cfg
    images, _, labels = self._split("train")
    judge = judge_lib.DigitsJudge.fit(images, labels["label"])
    test_images, _, test_labels = self._split("test")
    accuracy = float((judge.predict(test_images)[:, 0] == test_labels["label"]).mean())
    return judge, {"judge_digit_accuracy": accuracy}


def load(data_cfg):
  if data_cfg.name == "shapes":
    return Shapes(data_cfg)
  if data_cfg.name == "digits":
    return Digits(data_cfg)
  raise ValueError(f"unknown data.name {data_cfg.name!r}; choose one of {', '.join(NAMES)}")
