"""Linear probes of a model's text features, as the sentiment-neuron paper evaluated them.

Radford, Jozefowicz and Sutskever (2017) fit an L1-regularised logistic regression
on the mLSTM's final cell states, choosing C on the dev set over 2^-8 ... 2^0,
and found that one unit alone nearly matched the full probe. `probe_summary`
reproduces that evaluation, plus the baselines that make it meaningful: the same
single-unit search on the untrained model (is the unit learned, or luck among
thousands of random ones?) and a bag-of-words logistic regression.

Features are used raw, unscaled, as the paper's code did: L1 weights then say
how much each unit's own scale is worth. liblinear on raw [6920, 4096] features
(SST's training size) took 5 to 20 s a fit on a shared 2-core CPU.
"""

import html
import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

SPLITS = ("train", "validation", "test")
L1_C_GRID = 2.0 ** np.arange(-8, 1)  # The paper's grid.
BOW_C_GRID = 2.0 ** np.arange(-2, 7)  # Tf-idf weights are small: the best C is larger.
DATA_SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_UNIT_CHUNK = 512  # Units sorted at once by the single-unit search: bounds its memory.


def preprocess(text):
  """The paper's preprocessing of one text, as the UTF-8 bytes the byte model reads.

  Unescapes HTML entities, turns newlines into spaces, strips, then pads with
  "\\n " in front and " " behind so every text starts and ends like the training data.
  Lone surrogates (text decoded with errors="surrogateescape") become "?".
  """
  if not isinstance(text, str):
    raise TypeError(f"preprocess takes str, got {type(text).__name__}; decode bytes first, "
                    "e.g. data.decode('utf-8', errors='replace')")
  text = html.unescape(text).replace("\n", " ").strip()
  return ("\n " + text + " ").encode("utf-8", errors="replace")


def _checked_split(name, x, y):
  x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
  if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
    raise ValueError(f"split {name!r}: features must be [n, units] and labels [n], got "
                     f"{x.shape} and {y.shape}")
  if len(y) == 0:
    raise ValueError(f"split {name!r} is empty: a probe needs labelled examples in "
                     f"{', '.join(SPLITS)}")
  if not set(np.unique(y).tolist()) <= {0, 1}:
    raise ValueError(f"split {name!r}: labels must be 0 (negative) or 1 (positive), got "
                     f"{sorted(set(np.unique(y).tolist()))[:5]}")
  if len(np.unique(y)) < 2:
    raise ValueError(f"split {name!r} has a single class (every label is {int(y[0])}, "
                     f"{len(y)} examples): a sentiment probe needs both classes in each split")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"split {name!r}: features contain NaN or inf (did training diverge?)")
  return x, y.astype(np.int64)


def _checked(features, init_features):
  missing = [s for s in SPLITS if s not in features]
  if missing:
    raise ValueError(f"features lack split(s) {', '.join(missing)}: pass "
                     "{'train': (x, y, texts), 'validation': ..., 'test': ...}")
  data = {}
  for split in SPLITS:
    x, y, texts = features[split]
    x, y = _checked_split(split, x, y)
    if len(texts) != len(y):
      raise ValueError(f"split {split!r}: {len(texts)} texts for {len(y)} labels")
    data[split] = (x, y, [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t)
                          for t in texts])
  units = {data[s][0].shape[1] for s in SPLITS}
  if len(units) > 1:
    raise ValueError(f"splits have different numbers of units: {sorted(units)}")
  if init_features is None:
    return data, None
  init = {}
  for split in SPLITS:
    if split not in init_features:
      raise ValueError(f"init_features lacks split {split!r}")
    x = np.asarray(init_features[split], dtype=np.float64)
    if x.ndim != 2 or len(x) != len(data[split][1]):
      raise ValueError(f"init_features[{split!r}] must be [{len(data[split][1])}, units] "
                       f"(one row per example, same texts), got {x.shape}")
    init[split] = _checked_split(split, x, data[split][1])[0]
  return data, init


def _accuracy(predicted, y):
  return float(np.mean(np.asarray(predicted) == y))


def fit_l1_probe(x_train, y_train, x_dev, y_dev, grid=L1_C_GRID):
  """(model, C, dev accuracy): L1 logistic regression with the C that scores best on dev.

  The paper's code refits on train with the chosen C; with liblinear's coordinate
  order seeded, keeping the model fitted during the search gives the same model.
  """
  best = None
  for c in grid:
    model = LogisticRegression(C=float(c), l1_ratio=1.0, solver="liblinear", random_state=0)
    model.fit(x_train, y_train)
    dev = _accuracy(model.predict(x_dev), y_dev)
    if best is None or dev > best[2]:
      best = (model, float(c), dev)
  return best


def fit_bow(texts_train, y_train, texts_dev, y_dev, grid=BOW_C_GRID):
  """(pipeline, C): tf-idf unigrams and bigrams with an L2 logistic regression, C from dev."""
  best = None
  for c in grid:
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          LogisticRegression(C=float(c), solver="liblinear", random_state=0))
    model.fit(texts_train, y_train)
    dev = _accuracy(model.predict(texts_dev), y_dev)
    if best is None or dev > best[2]:
      best = (model, float(c), dev)
  return best[:2]


def _stumps(x, y):
  """Best threshold and sign of every column of x on (x, y): (accuracy, threshold, sign).

  A split after the k smallest values predicts one class below and the other
  above; only splits between distinct values count, thresholds are midpoints.
  """
  n = len(y)
  order = np.argsort(x, axis=0, kind="stable")
  values = np.take_along_axis(x, order, axis=0)
  labels = y[order]
  zeros = np.zeros((1, x.shape[1]), dtype=np.int64)
  positives_below = np.concatenate([zeros, np.cumsum(labels, axis=0)])
  negatives_below = np.arange(n + 1)[:, None] - positives_below
  correct_if_above = negatives_below + (positives_below[-1] - positives_below)
  accuracy_up = correct_if_above / n
  accuracy = np.maximum(accuracy_up, 1.0 - accuracy_up)
  valid = np.ones_like(accuracy, dtype=bool)
  valid[1:n] = values[1:] > values[:-1]
  accuracy = np.where(valid, accuracy, -1.0)
  k = np.argmax(accuracy, axis=0)
  cols = np.arange(x.shape[1])
  padded = np.concatenate([values[:1] - 1.0, values, values[-1:] + 1.0])
  threshold = (padded[k, cols] + padded[k + 1, cols]) / 2
  sign = np.where(accuracy_up[k, cols] >= 0.5, 1, -1)
  return accuracy[k, cols], threshold, sign


def fit_single_unit(x, y):
  """(unit, sign, threshold, accuracy): the unit whose own threshold classifier is best on (x, y).

  It predicts positive where sign * (value - threshold) > 0.
  """
  best = (-1.0, 0, 0.0, 1)
  for start in range(0, x.shape[1], _UNIT_CHUNK):
    accuracy, threshold, sign = _stumps(x[:, start:start + _UNIT_CHUNK], y)
    j = int(np.argmax(accuracy))
    if accuracy[j] > best[0]:
      best = (float(accuracy[j]), start + j, float(threshold[j]), int(sign[j]))
  accuracy, unit, threshold, sign = best
  return unit, sign, threshold, accuracy


def single_unit_predict(values, sign, threshold):
  return (sign * (np.asarray(values) - threshold) > 0).astype(np.int64)


def balanced_subset(y, size, seed=0):
  """Indices of `size` examples, half from each class where the classes allow, in random order."""
  rng = np.random.default_rng(seed)
  by_class = [rng.permutation(np.flatnonzero(y == label)) for label in (0, 1)]
  take_0 = min(max(size // 2, size - len(by_class[1])), len(by_class[0]))
  chosen = np.concatenate([by_class[0][:take_0], by_class[1][:size - take_0]])
  return rng.permutation(chosen)


def data_efficiency(data, unit, sizes):
  """Test accuracy against the number of labelled training examples, one entry per size.

  For each size, a balanced subsample (seed 0) trains the L1 probe and the
  bag-of-words model (each with C chosen on the full dev set) and fits the
  threshold and sign of `unit`, the single unit picked on the full training set.
  """
  (x_train, y_train, t_train), (x_dev, y_dev, t_dev), (x_test, y_test, t_test) = (
      data[s] for s in SPLITS)
  curve = {"sizes": list(sizes), "probe": [], "single_unit": [], "bow": []}
  for size in sizes:
    idx = balanced_subset(y_train, size)
    probe = fit_l1_probe(x_train[idx], y_train[idx], x_dev, y_dev)[0]
    curve["probe"].append(_accuracy(probe.predict(x_test), y_test))
    _, threshold, sign = (v[0] for v in _stumps(x_train[idx, unit:unit + 1], y_train[idx]))
    curve["single_unit"].append(
        _accuracy(single_unit_predict(x_test[:, unit], sign, threshold), y_test))
    bow = fit_bow([t_train[i] for i in idx], y_train[idx], t_dev, y_dev)[0]
    curve["bow"].append(_accuracy(bow.predict(t_test), y_test))
  return curve


def _single_unit_report(x_train, y_train, x_test, y_test):
  unit, sign, threshold, train_accuracy = fit_single_unit(x_train, y_train)
  test = _accuracy(single_unit_predict(x_test[:, unit], sign, threshold), y_test)
  return unit, sign, threshold, train_accuracy, test


def probe_summary(features, out_dir, *, init_features=None):
  """The probe's results as a JSON-safe dict; writes unit_histogram.png and data_efficiency.png.

  features: {"train" | "validation" | "test": (x [n, units], labels [n], texts)};
  init_features: the untrained model's x for the same texts, {split: x}, or None
  (then the *_at_init entries are None). The caller writes summary.json.
  """
  data, init = _checked(features, init_features)
  (x_train, y_train, t_train), (x_dev, y_dev, t_dev), (x_test, y_test, t_test) = (
      data[s] for s in SPLITS)
  probe, c, dev_accuracy = fit_l1_probe(x_train, y_train, x_dev, y_dev)
  weights = probe.coef_[0]
  unit, sign, threshold, train_accuracy, unit_accuracy = _single_unit_report(
      x_train, y_train, x_test, y_test)
  bow, bow_c = fit_bow(t_train, y_train, t_dev, y_dev)
  summary = {
      "units": int(x_train.shape[1]),
      "examples": {s: len(data[s][1]) for s in SPLITS},
      "feature_scaling": "none (raw features, as in the paper's code)",
      "probe_c": c,
      "probe_dev_accuracy": dev_accuracy,
      "probe_accuracy": _accuracy(probe.predict(x_test), y_test),
      "probe_nonzero_units": int(np.count_nonzero(weights)),
      "probe_nonzero_fraction": float(np.count_nonzero(weights) / len(weights)),
      "l1_top_unit": int(np.argmax(np.abs(weights))),
      "single_unit": unit,
      "single_unit_sign": sign,
      "single_unit_threshold": threshold,
      "single_unit_train_accuracy": train_accuracy,
      "single_unit_accuracy": unit_accuracy,
      "single_unit_at_init": None,
      "single_unit_accuracy_at_init": None,
      "bow_c": bow_c,
      "bow_accuracy": _accuracy(bow.predict(t_test), y_test),
  }
  if init is not None:
    init_unit, _, _, _, init_accuracy = _single_unit_report(init["train"], y_train, init["test"],
                                                            y_test)
    summary["single_unit_at_init"] = init_unit
    summary["single_unit_accuracy_at_init"] = init_accuracy
  curve = data_efficiency(data, unit, [s for s in DATA_SIZES if s < len(y_train)])
  for key, full in (("sizes", len(y_train)), ("probe", summary["probe_accuracy"]),
                    ("single_unit", unit_accuracy), ("bow", summary["bow_accuracy"])):
    curve[key].append(full)  # All the training data: the results above.
  summary["data_efficiency"] = curve
  os.makedirs(out_dir, exist_ok=True)
  plot_unit_histogram(x_test[:, unit], y_test, unit, threshold,
                      os.path.join(out_dir, "unit_histogram.png"))
  plot_data_efficiency(summary["data_efficiency"], os.path.join(out_dir, "data_efficiency.png"))
  return summary


def plot_unit_histogram(values, labels, unit, threshold, path):
  """The unit's values on held-out texts, one histogram per class: are they separated?"""
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  bins = np.histogram_bin_edges(values, bins=40)  # Widened when every value is the same.
  for label, name, color in ((0, "negative", "tab:red"), (1, "positive", "tab:green")):
    ax.hist(values[labels == label], bins=bins, alpha=0.6, color=color, label=name)
  ax.axvline(threshold, color="black", linestyle="--", label="threshold (fit on train)")
  ax.set(xlabel=f"unit {unit} value", ylabel="texts", title=f"Unit {unit} by class (test)")
  ax.legend()
  fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_data_efficiency(curve, path):
  """Test accuracy against labelled examples (log scale), one line per method."""
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  for key, name in (("probe", "L1 probe, all units"), ("single_unit", "single unit"),
                    ("bow", "bag of words")):
    ax.plot(curve["sizes"], curve[key], marker="o", label=name)
  ax.set_xscale("log")
  ax.set(xlabel="labelled training examples", ylabel="test accuracy", title="Data efficiency")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.savefig(path, dpi=100, bbox_inches="tight")


def _characters_and_values(text, values):
  """Each character of preprocess(text) with the unit's value after its last byte."""
  chars = preprocess(text).decode("utf-8")
  values = np.asarray(values, dtype=np.float64).reshape(-1)
  ends = np.cumsum([len(ch.encode("utf-8")) for ch in chars]) - 1
  if len(values) != len(preprocess(text)):
    raise ValueError(f"{len(values)} values for a text of {len(preprocess(text))} bytes after "
                     "preprocess: pass one value per byte of preprocess(text)")
  return chars, values[ends]


def trace_colors(values, sign):
  """RGBA colours of a unit's values: green where it reads positive sentiment, red negative.

  sign is the fitted unit's (single_unit_sign: positive where sign * value is high),
  so a unit that points down still shows positive text in green, as in the paper's
  figure. The scale is symmetric around 0; NaN (padding) is transparent.
  """
  if sign not in (1, -1):
    raise ValueError(f"sign must be 1 or -1 (the probe summary's single_unit_sign), got {sign!r}")
  oriented = sign * np.asarray(values, dtype=np.float64)
  finite = np.isfinite(oriented)
  limit = float(np.max(np.abs(oriented[finite]), initial=0.0)) or 1.0
  colors = matplotlib.colormaps["RdYlGn"]((oriented + limit) / (2 * limit))
  colors[~finite] = 0.0
  return colors


def plot_unit_trace(texts, values, path, *, sign, width=64):
  """Each text's characters on a background coloured by the unit's value, oriented by sign.

  values[i] holds one value per UTF-8 byte of preprocess(texts[i]); a character
  takes the value after its last byte. Colours as in trace_colors. Returns the
  figure, whose image holds one RGBA cell per character.
  """
  if len(texts) != len(values) or not texts:
    raise ValueError(f"plot_unit_trace needs one value array per text and at least one text, "
                     f"got {len(texts)} texts and {len(values)} value arrays")
  rows, grid_chars = [], []
  for text, vals in zip(texts, values):
    chars, char_values = _characters_and_values(text, vals)
    chars = chars.replace("\n", " ")
    for start in range(0, len(chars), width):
      line = np.full(width, np.nan)
      line[:len(chars[start:start + width])] = char_values[start:start + width]
      rows.append(line)
      grid_chars.append(chars[start:start + width])
    rows.append(np.full(width, np.nan))
    grid_chars.append("")
  fig = Figure(figsize=(width * 0.11, len(rows) * 0.2 + 0.3))
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(trace_colors(np.array(rows), sign), aspect="auto", interpolation="nearest")
  for r, line in enumerate(grid_chars):
    for col, ch in enumerate(line):
      ax.text(col, r, ch, ha="center", va="center", fontsize=8, family="monospace")
  ax.set_axis_off()
  fig.savefig(path, dpi=100)
  return fig
