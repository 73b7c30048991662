"""Sentiment probe: finds a planted unit, stays sparse, near chance without signal, bad input."""

import json

import numpy as np
import pytest

from lineage.data import reviews
from lineage.eval import probe

PLANTED = 11
UNITS = 64
SIZES = {"train": 400, "validation": 100, "test": 100}


def _split_features(seed):
  """Reviews with random features, plus a unit that follows the label and two weaker ones."""
  rng = np.random.default_rng(seed)
  generated = reviews.generate_reviews(sum(SIZES.values()), seed)
  labels = np.array([r.label for r in generated])
  x = rng.normal(size=(len(labels), UNITS))
  x[:, PLANTED] -= 2.5 * (2 * labels - 1)  # Negative sign: positive reviews go low.
  x[:, [3, 40]] += 0.8 * (2 * labels - 1)[:, None]
  features, start = {}, 0
  for split, size in SIZES.items():
    part = slice(start, start + size)
    features[split] = (x[part], labels[part], [r.text for r in generated[part]])
    start += size
  return features


@pytest.fixture(scope="module")
def features():
  return _split_features(0)


@pytest.fixture(scope="module")
def summary(features, tmp_path_factory):
  out = tmp_path_factory.mktemp("probe")
  noise = np.random.default_rng(1)
  init = {split: noise.normal(size=(size, UNITS)) for split, size in SIZES.items()}
  return probe.probe_summary(features, str(out), init_features=init), out


def test_finds_the_planted_unit_and_stays_sparse(summary):
  result, _ = summary
  assert result["single_unit"] == PLANTED and result["single_unit_sign"] == -1
  assert result["single_unit_accuracy"] > 0.9 and result["single_unit_train_accuracy"] > 0.9
  assert result["probe_accuracy"] > 0.9 and result["l1_top_unit"] == PLANTED
  assert 1 <= result["probe_nonzero_units"] <= UNITS // 4
  assert result["probe_c"] in probe.L1_C_GRID.tolist()
  assert result["units"] == UNITS and result["examples"] == SIZES


def test_init_features_without_signal_stay_near_chance(summary):
  result, _ = summary
  assert result["single_unit_accuracy_at_init"] <= 0.65
  assert 0 <= result["single_unit_at_init"] < UNITS


def test_bag_of_words_reads_the_generated_reviews(summary):
  assert summary[0]["bow_accuracy"] > 0.8


def test_data_efficiency_and_plots(summary):
  result, out = summary
  curve = result["data_efficiency"]
  assert curve["sizes"] == [10, 20, 50, 100, 200, 400]
  assert all(len(curve[k]) == len(curve["sizes"]) for k in ("probe", "single_unit", "bow"))
  assert curve["probe"][-1] == result["probe_accuracy"]
  assert curve["single_unit"][-1] == result["single_unit_accuracy"]
  assert curve["bow"][-1] == result["bow_accuracy"]
  assert curve["single_unit"][0] > 0.7  # One unit needs only a threshold: 10 examples suffice.
  json.dumps(result)
  for name in ("unit_histogram.png", "data_efficiency.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_init_features_reports_none(features, tmp_path, monkeypatch):
  monkeypatch.setattr(probe, "DATA_SIZES", ())
  result = probe.probe_summary(features, str(tmp_path))
  assert result["single_unit_at_init"] is None and result["single_unit_accuracy_at_init"] is None
  assert result["data_efficiency"]["sizes"] == [400]


def test_selected_l1_model_equals_a_refit(features):
  (x, y, _), (x_dev, y_dev, _) = features["train"], features["validation"]
  model, c, _ = probe.fit_l1_probe(x, y, x_dev, y_dev)
  refit = probe.fit_l1_probe(x, y, x_dev, y_dev, grid=[c])[0]
  np.testing.assert_array_equal(model.coef_, refit.coef_)


@pytest.mark.parametrize("split, labels, message", [
    ("train", np.ones(400, dtype=int), "split 'train' has a single class"),
    ("test", np.zeros(100, dtype=int), "split 'test' has a single class"),
    ("validation", np.full(100, 2), "labels must be 0 .negative. or 1"),
])
def test_bad_labels_are_clear_errors(features, tmp_path, split, labels, message):
  bad = dict(features)
  bad[split] = (features[split][0], labels, features[split][2])
  with pytest.raises(ValueError, match=message):
    probe.probe_summary(bad, str(tmp_path))


def test_bad_shapes_are_clear_errors(features, tmp_path):
  empty = dict(features, validation=(np.zeros((0, UNITS)), np.zeros(0, dtype=int), []))
  with pytest.raises(ValueError, match="split 'validation' is empty"):
    probe.probe_summary(empty, str(tmp_path))
  with pytest.raises(ValueError, match="lack split.s. test"):
    probe.probe_summary({k: features[k] for k in ("train", "validation")}, str(tmp_path))
  x, y, texts = features["test"]
  with pytest.raises(ValueError, match="99 texts for 100 labels"):
    probe.probe_summary(dict(features, test=(x, y, texts[:-1])), str(tmp_path))
  with pytest.raises(ValueError, match="NaN or inf"):
    probe.probe_summary(dict(features, test=(np.full_like(x, np.nan), y, texts)), str(tmp_path))
  init = {split: np.zeros((size, UNITS)) for split, size in SIZES.items()}
  init["test"] = np.zeros((5, UNITS))
  with pytest.raises(ValueError, match=r"init_features\['test'\] must be \[100, units\]"):
    probe.probe_summary(features, str(tmp_path), init_features=init)


def test_balanced_subset():
  y = np.array([0] * 30 + [1] * 5)
  idx = probe.balanced_subset(y, 20)
  assert len(set(idx.tolist())) == 20 and np.sum(y[idx]) == 5  # the short class gives all it has
  idx = probe.balanced_subset(y, 10)
  assert np.sum(y[idx]) == 5 and np.array_equal(idx, probe.balanced_subset(y, 10))


@pytest.mark.parametrize("text, expected", [
    ("A &amp; B\nnext line  ", b"\n A & B next line "),
    ("", b"\n  "),
    ("caf\u00e9", "\n caf\u00e9 ".encode()),
    ("bad \udcff surrogate", b"\n bad ? surrogate "),
])
def test_preprocess(text, expected):
  assert probe.preprocess(text) == expected


def test_preprocess_refuses_bytes():
  with pytest.raises(TypeError, match="decode bytes first"):
    probe.preprocess(b"text")


def test_unit_trace_plot(tmp_path):
  texts = ["Great value, caf\u00e9 \u263a!", "Awful."]
  values = [np.linspace(-1, 1, len(probe.preprocess(t))) for t in texts]
  chars, char_values = probe._characters_and_values(  # pylint: disable=protected-access
      texts[0], values[0])
  assert len(chars) == len(char_values) == len(texts[0]) + 3
  smiley = chars.index("\u263a")
  assert char_values[smiley] == values[0][len(chars[:smiley + 1].encode()) - 1]
  path = tmp_path / "trace.png"
  probe.plot_unit_trace(texts, values, str(path), sign=1)
  assert path.read_bytes()[:4] == b"\x89PNG"
  with pytest.raises(ValueError, match="one value per byte of preprocess"):
    probe.plot_unit_trace(texts, [values[0], values[0]], str(path), sign=1)
  with pytest.raises(ValueError, match="one value array per text"):
    probe.plot_unit_trace(texts, values[:1], str(path), sign=1)
  with pytest.raises(ValueError, match="sign must be 1 or -1"):
    probe.plot_unit_trace(texts, values, str(path), sign=0)


def _is_green(rgba):
  return rgba[1] > rgba[0] + 0.3


def _is_red(rgba):
  return rgba[0] > rgba[1] + 0.3


@pytest.mark.parametrize("sign", [1, -1])
def test_unit_trace_shows_positive_text_in_green_whichever_way_the_unit_points(tmp_path, sign):
  """'g' drives the unit towards positive sentiment (sign * value high), 'b' towards negative."""
  text = "gb"  # preprocess: "\n gb ", so 'g' and 'b' are characters 2 and 3.
  values = np.array([0.0, 0.0, 3.0, -3.0, 0.0]) * sign
  colors = probe.trace_colors(values, sign)
  assert _is_green(colors[2]) and _is_red(colors[3])
  fig = probe.plot_unit_trace([text], [values], str(tmp_path / "trace.png"), sign=sign)
  drawn = fig.axes[0].images[0].get_array()
  assert _is_green(drawn[0, 2]) and _is_red(drawn[0, 3])
  assert drawn[0, 10, 3] == 0.0  # Past the text: transparent.


def test_histogram_of_a_constant_unit(tmp_path):
  path = tmp_path / "hist.png"
  probe.plot_unit_histogram(np.zeros(10), np.array([0, 1] * 5), 3, 0.0, str(path))
  assert path.read_bytes()[:4] == b"\x89PNG"
