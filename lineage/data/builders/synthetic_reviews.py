"""The embedded labelled reviews (`lineage.data.reviews`), generated from a seed, no download.

`generate_reviews(num_reviews, seed)` in order, cut by `split_90_5_5` into train,
validation and test; records `{"text", "label": 0 negative / 1 positive}`, the
fields the sentiment probe reads. The default is 10,000 reviews from seed 0.
"""

import dataclasses

import tensorflow_datasets as tfds

from lineage.data import reviews
from lineage.data.builders import base


@dataclasses.dataclass
class SyntheticReviewsConfig(tfds.core.BuilderConfig):
  num_reviews: int = 10000
  seed: int = 0


def config(num_reviews, seed):
  """The config for `num_reviews` reviews from `seed`."""
  return SyntheticReviewsConfig(name=f"reviews{num_reviews}_seed{seed}",
                                num_reviews=num_reviews, seed=seed)


class SyntheticReviews(base.Builder):
  """Synthetic product reviews with a latent binary sentiment."""

  name = "synthetic_reviews"
  # 1.1.0: most sentences voice the mood, some through mood-only lead-ins ("sadly, ").
  # 2.0.0: a latent star rating (1, 2, 4, 5) voiced in nearly every sentence, opinion words
  # whose first letter follows their polarity.
  # 3.0.0: passages of opinion sentences, each ending with a neutral aside.
  # 3.1.0: the same design; the generator no longer draws an unused opinion word per sentence,
  # so the reviews differ from 3.0.0's.
  VERSION = tfds.core.Version("3.1.0")
  BUILDER_CONFIGS = [config(10000, 0)]

  def _features(self):
    return tfds.features.FeaturesDict({
        "text": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=["negative", "positive"])})

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    generated = reviews.generate_reviews(cfg.num_reviews, cfg.seed)
    train, valid, _ = base.split_90_5_5(len(generated))
    return {"train": self._generate_examples(generated[:train]),
            "validation": self._generate_examples(generated[train:train + valid]),
            "test": self._generate_examples(generated[train + valid:])}

  def _generate_examples(self, generated):
    for key, review in enumerate(generated):
      yield key, {"text": review.text, "label": review.label}
