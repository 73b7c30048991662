"""The judges: what grades a generated image against the ground truth its caption asked for.

Shapes: a small CNN that names the shape and the colour in a 32x32 image, trained on the
renderer's own scenes with their ground-truth labels. Digits: an RBF support-vector machine
on the pixels of the real training digits. A judge is never CLIP (which reranks the samples,
so it cannot also grade them). The shapes judge trains on every (shape, colour) pair, held-out ones
included: it stands for the renderer's ground truth, and its accuracy on fresh renders of
the held-out pairs is reported beside the rates it grades.

Every judge has predict(images) -> int [n, k] and matches(images, targets [n, k]) -> bool [n].
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.svm import SVC

from lineage.data import shapes


class Judge(nn.Module):
  """uint8 images [n, 32, 32, 3] -> (shape logits [n, 5], colour logits [n, 5])."""
  width: int = 32

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32) / 127.5 - 1.0
    for i, width in enumerate((self.width, 2 * self.width)):
      x = jax.nn.relu(nn.Conv(width, (3, 3), name=f"conv_{i}")(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    # Max over positions: a shape is the same shape in any quadrant.
    x = jax.nn.relu(nn.Conv(2 * self.width, (3, 3), name="conv_2")(x)).max(axis=(1, 2))
    x = jax.nn.relu(nn.Dense(64, name="hidden")(x))
    return (nn.Dense(len(shapes.SHAPES), name="shape")(x),
            nn.Dense(len(shapes.COLOURS), name="colour")(x))


def train(images, labels, *, steps=300, batch_size=64, lr=3e-3, seed=0):
  """Judge parameters fit to (images uint8, {"shape", "colour"} int labels)."""
  model, tx = Judge(), optax.adam(optax.cosine_decay_schedule(lr, steps, 0.05))
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3), jnp.uint8))["params"]
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, shape, colour):
    def loss(p):
      shape_logits, colour_logits = model.apply({"params": p}, x)
      return (optax.softmax_cross_entropy_with_integer_labels(shape_logits, shape).mean() +
              optax.softmax_cross_entropy_with_integer_labels(colour_logits, colour).mean())
    grads = jax.grad(loss)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    rows = rng.integers(len(images), size=batch_size)
    params, opt = step(params, opt, images[rows], labels["shape"][rows], labels["colour"][rows])
  return params


@jax.jit
def _predict(params, images):
  shape_logits, colour_logits = Judge().apply({"params": params}, images)
  return shape_logits.argmax(-1), colour_logits.argmax(-1)


def predict(params, images, batch=512):
  """(shape ids, colour ids) the judge reads in uint8 images."""
  out = [_predict(params, jnp.asarray(images[i:i + batch])) for i in range(0, len(images), batch)]
  return (np.concatenate([np.asarray(s) for s, _ in out]),
          np.concatenate([np.asarray(c) for _, c in out]))


class ShapesJudge:
  """The CNN's (shape, colour) reading of each image."""

  def __init__(self, params):
    self.params = params

  def predict(self, images):
    return np.stack(predict(self.params, images), axis=1)

  def matches(self, images, targets):
    return np.all(self.predict(images) == np.asarray(targets), axis=1)


class DigitsJudge:
  """An RBF support-vector machine's digit for each 8x8 image (0.958 on the 360 real test
  digits; a logistic regression reaches 0.90)."""

  def __init__(self, model):
    self.model = model

  @classmethod
  def fit(cls, images, labels):
    model = SVC(C=10.0)
    model.fit(_flat(images), labels)
    return cls(model)

  def predict(self, images):
    return self.model.predict(_flat(images)).astype(np.int32)[:, None]

  def matches(self, images, targets):
    return np.all(self.predict(images) == np.asarray(targets), axis=1)


def _flat(images):
  return np.asarray(images, np.float32).reshape(len(images), -1) / 255.0
