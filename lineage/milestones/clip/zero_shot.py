"""Zero-shot classification by prompt ensembles, and the linear probe, on a trained CLIP.

Zero-shot (the paper's section 3.1.4): each class name fills several templates ("a photo of
a {}", ...); the text embeddings are normalised, averaged over the templates and
normalised again, one classifier row per class; an image goes to the class whose row is
most similar to its embedding. The first template alone is the single-prompt baseline.
The paper chose its 80 ImageNet templates on validation data; `select_templates` does so by
greedy forward selection from a pool of candidates, scored on validation splits only, so the
splits it reports stay untouched by the choice.
Our captions carry no final period, so neither do the templates: a prompt should read like
the captions the model was trained on, which is the paper's point about prompt engineering.

Linear probe (section 3.2): an L2 logistic regression (scikit-learn, L-BFGS) on the frozen
image encoder's features before the projection, standardised, its C chosen on a fifth of
the probe's training set held out, then refit on all of it.
"""

import contextlib
from typing import NamedTuple, Optional

import jax
import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lineage.data import image_batches
from lineage.models import clip
from lineage.train import metrics as metrics_lib

matplotlib.use("Agg")
PROBE_C_GRID = (0.01, 0.1, 1.0, 10.0)


class Encoder:
  """A trained CLIP's embeddings as numpy: what zero-shot, the probe and reranking read.

  embed_images(uint8 [n, H, W, C]) -> [n, embed_dim], embed_texts(list of str) -> [n,
  embed_dim], both L2-normalised; image_features(images) -> [n, vision_width];
  scores(images, captions) -> [n_images, n_captions], cosine similarity times the logit
  scale (the logits the model was trained with). Work runs in batches of `batch_size`, the
  last padded, so each function compiles once.
  """

  def __init__(self, model_cfg, params, tokenizer, batch_size=256):
    # Parameters replicated over several devices of this process, or a mesh in context (the
    # training loop's, around its evaluation hook), would run every batch on each device:
    # parameters this process holds whole are kept in host memory and the batches run on one
    # device, outside any mesh.
    self._local = all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(params))
    if self._local:
      params = jax.device_get(params)
    self.cfg, self.params, self.tokenizer, self.batch_size = (model_cfg, params, tokenizer,
                                                              batch_size)
    model = clip.CLIP(model_cfg)
    self._images = _compiled(model, clip.CLIP.encode_image)
    self._features = _compiled(model, clip.CLIP.image_features)
    self._texts = _compiled(model, clip.CLIP.encode_text)
    self.scale = float(model.apply({"params": params}, method=clip.CLIP.scale))

  def _batched(self, fn, *arrays):
    with jax.set_mesh(None) if self._local else contextlib.nullcontext():
      return self._run_batches(fn, *arrays)

  def _run_batches(self, fn, *arrays):
    out = []
    for start in range(0, len(arrays[0]), self.batch_size):
      chunk = [a[start:start + self.batch_size] for a in arrays]
      short = self.batch_size - len(chunk[0])
      chunk = [np.concatenate([c, np.repeat(c[-1:], short, 0)]) if short else c for c in chunk]
      out.append(np.asarray(fn(self.params, *chunk))[:self.batch_size - short])
    return np.concatenate(out)

  def embed_images(self, images):
    clip.check_images(np.shape(images), self.cfg)
    return self._batched(self._images, np.asarray(images))

  def image_features(self, images):
    clip.check_images(np.shape(images), self.cfg)
    return self._batched(self._features, np.asarray(images))

  def embed_texts(self, captions):
    tokens, ends = image_batches.encode_captions(self.tokenizer, captions, self.cfg.context)
    return self._batched(self._texts, tokens, ends)

  def scores(self, images, captions):
    return self.scale * self.embed_images(images) @ self.embed_texts(captions).T


class Predictions(NamedTuple):
  """One task on one split: labels and three classifiers' predictions ([n] each)."""
  labels: np.ndarray
  ensemble: np.ndarray
  single: np.ndarray
  fixed: Optional[np.ndarray]


def _compiled(model, method):
  @jax.jit
  def apply(params, *inputs):
    return model.apply({"params": params}, *inputs, method=method)
  return apply


def class_embeddings(encoder, class_names, templates):
  """[classes, embed_dim]: per class, the normalised mean of its prompts' embeddings."""
  prompts = [t.format(name) for name in class_names for t in templates]
  embedded = encoder.embed_texts(prompts).reshape(len(class_names), len(templates), -1)
  mean = embedded.mean(axis=1)
  return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def select_templates(encoder, class_names, candidates, validation, max_templates=10,
                     min_templates=2):
  """A prompt ensemble chosen on validation data: greedy forward selection.

  Each round adds the candidate template whose addition classifies the most validation
  images correctly (ties: the earlier candidate); after up to `max_templates` rounds the
  ensemble is the prefix of the additions with the most correct, of at least
  `min_templates` (an ensemble, not one prompt; ties: the shorter). `validation` is a list of
  (image embeddings [n, d], labels [n]); pass no split whose accuracy you report.
  """
  candidates = list(dict.fromkeys(candidates))
  if not 1 <= min_templates <= max_templates:
    raise ValueError(f"min_templates={min_templates}, max_templates={max_templates}: need "
                     "1 <= min_templates <= max_templates")
  if len(candidates) < min_templates:
    raise ValueError(f"{len(candidates)} candidate templates cannot make an ensemble of "
                     f"{min_templates}; add candidates")
  if not validation or not sum(len(labels) for _, labels in validation):
    raise ValueError("select_templates needs validation images to score candidates on")
  prompts = [t.format(name) for t in candidates for name in class_names]
  embedded = encoder.embed_texts(prompts).reshape(len(candidates), len(class_names), -1)
  # An ensemble's scores are each image's dot products with the summed prompt embeddings of
  # a class over that sum's norm, so every candidate's dot products are computed once.
  dots = [(np.einsum("nd,kcd->nkc", images, embedded), labels) for images, labels in validation]
  chosen, total, total_dots, correct = [], 0, [0] * len(dots), []
  for _ in range(min(max_templates, len(candidates))):
    scores = []
    for i in range(len(candidates)):
      norms = np.linalg.norm(total + embedded[i], axis=-1)
      scores.append(-1 if i in chosen else sum(
          int(np.sum(np.argmax((t + d[:, i]) / norms, axis=1) == labels))
          for t, (d, labels) in zip(total_dots, dots)))
    best = int(np.argmax(scores))  # the first of equals
    chosen.append(best)
    total = total + embedded[best]
    total_dots = [t + d[:, best] for t, (d, _) in zip(total_dots, dots)]
    correct.append(scores[best])
  size = max(range(min_templates, len(chosen) + 1), key=lambda k: (correct[k - 1], -k))
  return [candidates[i] for i in chosen[:size]]


def classify(image_embeddings, classes):
  """The predicted class of each image: its most similar class embedding."""
  return np.argmax(image_embeddings @ classes.T, axis=1)


def confusion_matrix(labels, predictions, num_classes):
  """[true class, predicted class] counts."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
  return matrix


def plot_confusion(matrix, names, path, title):
  fig = Figure(figsize=(4.2, 3.8))
  ax = fig.subplots()
  ax.imshow(matrix, cmap="Blues")
  for (i, j), count in np.ndenumerate(matrix):
    ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
            color="white" if count > matrix.max() / 2 else "black")
  ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted",
         ylabel="true", title=title)
  ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
  ax.set_yticklabels(names, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def linear_probe(train_x, train_y, tests, c_grid=PROBE_C_GRID, seed=0):
  """({name: accuracy}, C): logistic regression on train features, C picked on a held-out
  fifth of them, refit on all, scored on each (features, labels) in `tests`."""
  if len(np.unique(train_y)) < 2:
    raise ValueError("the probe's training labels hold a single class; use more examples")
  order = np.random.default_rng(seed).permutation(len(train_x))
  cut = len(order) // 5
  fit, held = order[cut:], order[:cut]
  make = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
  scores = {c: make(c).fit(train_x[fit], train_y[fit]).score(train_x[held], train_y[held])
            for c in c_grid}
  best = max(c_grid, key=lambda c: (scores[c], -c))
  model = make(best).fit(train_x, train_y)
  return {name: float(model.score(x, y)) for name, (x, y) in tests.items()}, best


class Evaluator:
  """The loop's evaluation hook: zero-shot accuracy with the prompt ensemble and with the
  first template alone, for each task in zero_shot.templates and each split in
  zero_shot.splits; then the linear probe of probe.task. For a task in zero_shot.select the
  ensemble is chosen at each evaluation by `select_templates` from its templates and those
  candidates, on the `validation` splits ({name: Split}, none of them a reported split). Keys:
  zero_shot_<task>_<split> (the ensemble), zero_shot_<task>_<split>_single; for chosen
  ensembles also zero_shot_<task>_<split>_fixed (zero_shot.templates averaged) and
  zero_shot_<task>_templates (how many were chosen); probe_<task>_<split>."""

  def __init__(self, cfg, model_cfg, tokenizer, train, splits, validation=None):
    self.cfg, self.model_cfg, self.tokenizer = cfg, model_cfg, tokenizer
    self.train, self.splits, self.validation = train, splits, validation or {}
    self.tasks = {task: templates.split("|") for task, templates in
                  cfg.zero_shot.templates.items()}
    select = cfg.zero_shot.get("select") or {}
    self.candidates = {task: list(dict.fromkeys(self.tasks.get(task, []) + pool.split("|")))
                       for task, pool in select.items()}
    named = {**({"train": train} if train is not None else {}), **splits, **self.validation}
    for task in self.tasks:
      for name, split in named.items():
        if task not in split.classes:
          raise ValueError(f"zero_shot.templates names task {task!r}, which split {name!r} of "
                           f"{cfg.data.name} lacks; its tasks: {sorted(split.classes)}")
    unknown = sorted(set(self.candidates) - set(self.tasks))
    if unknown:
      raise ValueError(f"zero_shot.select names {unknown}, not among zero_shot.templates' tasks "
                       f"{sorted(self.tasks)}")
    if self.candidates and not self.validation:
      raise ValueError("zero_shot.select chooses ensembles on validation splits, but "
                       "zero_shot.select_splits names none; set it or empty zero_shot.select")
    reported = sorted(set(self.validation) & set(splits))
    if reported:
      raise ValueError(f"split(s) {reported} are in both zero_shot.splits and "
                       "zero_shot.select_splits: the ensemble would be chosen on the data it is "
                       "scored on; select on other splits")
    if cfg.probe.train_examples and cfg.probe.task not in self.tasks:
      raise ValueError(f"probe.task={cfg.probe.task!r} is not among zero_shot.templates' tasks "
                       f"{sorted(self.tasks)}")

  def encoder(self, params):
    return Encoder(self.model_cfg, params, self.tokenizer, self.cfg.zero_shot.batch_size)

  def ensembles(self, encoder):
    """{task: its ensemble's templates}: chosen on the validation splits for the tasks in
    zero_shot.select, zero_shot.templates for the others."""
    chosen = dict(self.tasks)
    if not self.candidates:
      return chosen
    images = {name: encoder.embed_images(split.images) for name, split in self.validation.items()}
    for task, candidates in self.candidates.items():
      data = [(images[name], split.labels[split.classes[task][0]])
              for name, split in self.validation.items()]
      names = next(iter(self.validation.values())).classes[task][1]
      chosen[task] = select_templates(encoder, names, candidates, data,
                                      self.cfg.zero_shot.select_max)
    return chosen

  def zero_shot(self, encoder, ensembles=None):
    """{split: {task: Predictions}}: labels and the predictions of the ensemble (`ensembles`,
    default self.ensembles(encoder)), of the first template alone, and of zero_shot.templates
    averaged where the ensemble was chosen (else None)."""
    ensembles = ensembles or self.ensembles(encoder)
    out = {}
    for name, split in self.splits.items():
      images = encoder.embed_images(split.images)
      out[name] = {}
      for task, templates in self.tasks.items():
        field, classes = split.classes[task]
        predict = lambda ts: classify(images, class_embeddings(encoder, classes, ts))
        out[name][task] = Predictions(split.labels[field], predict(ensembles[task]),
                                      predict(templates[:1]),
                                      predict(templates) if task in self.candidates else None)
    return out

  def __call__(self, params, step):
    del step
    encoder = self.encoder(params)
    ensembles = self.ensembles(encoder)
    result = {}
    for task in self.candidates:
      result[f"zero_shot_{task}_templates"] = float(len(ensembles[task]))
      metrics_lib.console(f"zero-shot {task}: ensemble chosen on "
                          f"{', '.join(self.validation)}: {' | '.join(ensembles[task])}")
    for name, tasks in self.zero_shot(encoder, ensembles).items():
      for task, p in tasks.items():
        result[f"zero_shot_{task}_{name}"] = float(np.mean(p.ensemble == p.labels))
        result[f"zero_shot_{task}_{name}_single"] = float(np.mean(p.single == p.labels))
        if p.fixed is not None:
          result[f"zero_shot_{task}_{name}_fixed"] = float(np.mean(p.fixed == p.labels))
    if self.cfg.probe.train_examples:
      result.update(self.probe(encoder))
    return result

  def probe(self, encoder):
    task = self.cfg.probe.task
    field = self.train.classes[task][0]
    n = self.cfg.probe.train_examples
    train_x = encoder.image_features(self.train.images[:n])
    tests = {name: (encoder.image_features(split.images), split.labels[field])
             for name, split in self.splits.items()}
    accuracy, _ = linear_probe(train_x, self.train.labels[field][:n], tests)
    return {f"probe_{task}_{name}": acc for name, acc in accuracy.items()}
