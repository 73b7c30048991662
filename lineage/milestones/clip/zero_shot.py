"""Zero-shot classification by prompt ensembles, and the linear probe, on a trained CLIP.

Zero-shot (the paper's section 3.1.4): each class name fills several templates ("a photo of
a {}", ...); the text embeddings are normalised, averaged over the templates and
normalised again, one classifier row per class; an image goes to the class whose row is
most similar to its embedding. The first template alone is the single-prompt baseline.
Our captions carry no final period, so neither do the templates: a prompt should read like
the captions the model was trained on, which is the paper's point about prompt engineering.

Linear probe (section 3.2): an L2 logistic regression (scikit-learn, L-BFGS) on the frozen
image encoder's features before the projection, standardised, its C chosen on a fifth of
the probe's training set held out, then refit on all of it.
"""

import jax
import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lineage.data import image_batches
from lineage.models import clip

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
    self.cfg, self.params, self.tokenizer, self.batch_size = (model_cfg, params, tokenizer,
                                                              batch_size)
    model = clip.CLIP(model_cfg)
    self._images = _compiled(model, clip.CLIP.encode_image)
    self._features = _compiled(model, clip.CLIP.image_features)
    self._texts = _compiled(model, clip.CLIP.encode_text)
    self.scale = float(model.apply({"params": params}, method=clip.CLIP.scale))

  def _batched(self, fn, *arrays):
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
  zero_shot.splits; then the linear probe of probe.task. Keys:
  zero_shot_<task>_<split>, zero_shot_<task>_<split>_single, probe_<task>_<split>."""

  def __init__(self, cfg, model_cfg, tokenizer, train, splits):
    self.cfg, self.model_cfg, self.tokenizer = cfg, model_cfg, tokenizer
    self.train, self.splits = train, splits
    self.tasks = {task: templates.split("|") for task, templates in
                  cfg.zero_shot.templates.items()}
    named = {**({"train": train} if train is not None else {}), **splits}
    for task in self.tasks:
      for name, split in named.items():
        if task not in split.classes:
          raise ValueError(f"zero_shot.templates names task {task!r}, which split {name!r} of "
                           f"{cfg.data.name} lacks; its tasks: {sorted(split.classes)}")
    if cfg.probe.train_examples and cfg.probe.task not in self.tasks:
      raise ValueError(f"probe.task={cfg.probe.task!r} is not among zero_shot.templates' tasks "
                       f"{sorted(self.tasks)}")

  def encoder(self, params):
    return Encoder(self.model_cfg, params, self.tokenizer, self.cfg.zero_shot.batch_size)

  def zero_shot(self, encoder):
    """{split: {task: (labels, ensemble predictions, single-template predictions)}}."""
    out = {}
    for name, split in self.splits.items():
      images = encoder.embed_images(split.images)
      out[name] = {}
      for task, templates in self.tasks.items():
        field, classes = split.classes[task]
        ensemble = classify(images, class_embeddings(encoder, classes, templates))
        single = classify(images, class_embeddings(encoder, classes, templates[:1]))
        out[name][task] = (split.labels[field], ensemble, single)
    return out

  def __call__(self, params, step):
    del step
    encoder = self.encoder(params)
    result = {}
    for name, tasks in self.zero_shot(encoder).items():
      for task, (labels, ensemble, single) in tasks.items():
        result[f"zero_shot_{task}_{name}"] = float(np.mean(ensemble == labels))
        result[f"zero_shot_{task}_{name}_single"] = float(np.mean(single == labels))
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
