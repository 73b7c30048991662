"""Synthetic reviews: deterministic, balanced, sentiment over many tokens, lexicon agreement."""

import re

import numpy as np
import pytest

from lineage.data import builders
from lineage.data import reviews
from lineage.data.builders import synthetic_reviews


@pytest.fixture(scope="module")
def many():
  return reviews.generate_reviews(2000, 1)


def test_deterministic_in_seed():
  assert reviews.generate_reviews(30, 3) == reviews.generate_reviews(30, 3)
  assert reviews.generate_reviews(30, 3) != reviews.generate_reviews(30, 4)
  assert reviews.generate_reviews(0, 3) == []
  with pytest.raises(ValueError, match="num_reviews must be >= 0"):
    reviews.generate_reviews(-1, 0)


@pytest.mark.parametrize("num_reviews", [10, 11, 500])
def test_balanced_labels(num_reviews):
  labels = [r.label for r in reviews.generate_reviews(num_reviews, 0)]
  assert set(labels) == {0, 1}
  assert abs(2 * sum(labels) - num_reviews) <= 1


def test_lexicon_agrees_with_labels(many):
  agree = np.mean([np.sign(reviews.sentiment_score(r.text)) == 2 * r.label - 1 for r in many])
  assert agree > 0.95


def test_no_single_token_gives_the_label_away(many):
  labels = np.array([r.label for r in many])
  words = [set(re.findall(r"[a-z']+", r.text.lower())) for r in many]
  for word in set().union(*words):
    present = np.array([word in w for w in words])
    assert max(np.mean(present == labels), np.mean(present != labels)) < 0.7, word


def test_distractors_vary_independently_of_sentiment(many):
  lengths = [len(r.text.encode()) for r in many]
  assert 50 <= min(lengths) and max(lengths) <= 800 and np.median(lengths) > 200
  for label in (0, 1):
    group = [r for r in many if r.label == label]
    assert {r.product for r in group} == set(reviews.PRODUCTS)
    assert {r.aspect for r in group} == set(reviews.ASPECTS)
    breaks = {len(re.findall(r"[.!] ", r.text)) for r in group}  # sentences - 1: 2 to 20
    assert min(breaks) == 2 and max(breaks) >= 18 and len(breaks) > 15
    opposite = reviews.NEGATIVE_ADJECTIVES if label else reviews.POSITIVE_ADJECTIVES
    with_opposite = [r for r in group if set(re.findall(r"[a-z]+", r.text.lower())) &
                     set(opposite)]
    assert 0.2 < len(with_opposite) / len(group) < 0.8  # negations
  neutral_negations = [r for r in many if "i did not use the" in r.text.lower()]
  assert neutral_negations and {r.label for r in neutral_negations} == {0, 1}


@pytest.mark.parametrize("text, sign", [
    ("The price is good.", 1),
    ("The price is not good.", -1),
    ("The price is not terrible at all.", 1),
    ("I would not recommend it.", -1),
    ("I have no complaints.", 1),
    ("It never let me down.", 1),
    ("It let me down.", -1),
    ("Highly recommended, five stars!", 1),
    ("A waste of money. One star.", -1),
    ("It is not mine. It is great.", 1),  # negation stops at the clause's end
    ("Not that it matters much, the design is great.", 1),
    ("I did not use the cable much.", 0),
    ("", 0),
    ("\x00\ufffd zzz 123 !!!", 0),
])
def test_sentiment_score(text, sign):
  score = reviews.sentiment_score(text)
  assert np.sign(score) == sign and -1.0 <= score <= 1.0


def test_sentiment_score_mixes_and_reads_broken_bytes():
  assert reviews.sentiment_score("The design is dull, but overall it is great and nice.") == (
      pytest.approx(1 / 3))
  assert reviews.sentiment_score(b"\xff\xfe terrible \xc3") == -1.0
  with pytest.raises(TypeError, match="takes str"):
    reviews.sentiment_score(3)


def test_builder_splits(tmp_path):
  cfg = synthetic_reviews.config(40, 3)
  expected = reviews.generate_reviews(40, 3)
  train = builders.load("synthetic_reviews", "train", data_dir=tmp_path, config=cfg)
  validation = builders.load("synthetic_reviews", "validation", data_dir=tmp_path, config=cfg)
  test = builders.load("synthetic_reviews", "test", data_dir=tmp_path, config=cfg)
  assert (len(train), len(validation), len(test)) == (36, 2, 2)
  assert [(r["text"].decode(), r["label"]) for r in test] == [
      (r.text, r.label) for r in expected[38:]]
  assert train[0] == {"text": expected[0].text.encode(), "label": expected[0].label}
  features = builders.builder("synthetic_reviews", data_dir=tmp_path).info.features
  assert features["label"].names == ["negative", "positive"]
  assert builders.builder("synthetic_reviews", data_dir=tmp_path).builder_config.num_reviews == (
      10000)
