"""Synthetic shapes: coloured shapes rendered at 32x32, with captions that name some attributes.

A scene has four attributes, each a small vocabulary (`ATTRIBUTES`): shape (5), colour (5),
size (2) and position (4 quadrants). Everything is a pure function of a seed, so CLIP and
DALL-E read the same pictures without storing any:

    data = shapes.generate(1000, seed=0, split="train")
    data.images        # uint8 [1000, 32, 32, 3]
    data.labels        # {"shape": int32 [1000], "colour": ..., "size": ..., "position": ...}
    data.captions      # ["a small red circle in the top left", "a photo of a square", ...]
    shapes.names(data.labels, 0)  # {"shape": "circle", "colour": "red", ...}

Held-out combinations are what make the set a test of composition: `split="train"` never
draws a (shape, colour) pair listed in `held_out` (default `HELD_OUT`, one colour per shape),
so no training image shows one and no training caption names one; `split="held_out"` draws
only those pairs; `split="all"` draws anything. Every shape and every colour still appears
in training, only never together in the held-out pairs. Use a different seed per split.

Captions always name the shape; by default each of colour, size and position is named
with probability 1/2 (`mention=None`), or exactly the attributes in `mention`.
"""

import dataclasses

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
ATTRIBUTES = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS}

# Each shape loses one colour, on the diagonal, so each colour is also missing once.
HELD_OUT = tuple(zip(SHAPES, COLOURS))
SPLITS = ("train", "held_out", "all")

# Bright in every channel against a dark background, so a shape's outline shows in each
# channel whatever its colour: shape stays visible apart from colour, as luminance edges are
# in photographs, and can be learned once for all colours.
_RGB = {"red": (245, 105, 105), "green": (105, 225, 120), "blue": (110, 140, 250),
        "yellow": (240, 230, 105), "purple": (195, 110, 245)}
_RADIUS = {"small": (4.0, 5.5), "large": (7.0, 9.0)}  # half-extent in pixels at 32x32
_PREFIXES = ("a ", "a photo of a ", "a picture of a ", "a drawing of a ", "there is a ")
_SUPERSAMPLE = 4  # sub-pixels per side: soft edges, so small shapes keep their outline


@dataclasses.dataclass(frozen=True)
class Shapes:
  """images uint8 [n, size, size, 3]; labels {attribute: int32 [n], an index into
  ATTRIBUTES[attribute]}; captions, one str per image."""
  images: np.ndarray
  labels: dict
  captions: list


def generate(n, seed, *, split="train", held_out=HELD_OUT, image_size=32, mention=None):
  """`n` scenes from `seed`: images, ground-truth labels and one caption each."""
  labels = sample_labels(n, seed, split=split, held_out=held_out)
  return Shapes(images=render(labels, seed, image_size=image_size), labels=labels,
                captions=captions(labels, seed, mention=mention))


def check_held_out(held_out):
  """`held_out` as a set of (shape, colour) pairs, after checking every name.

  Each shape must keep at least one colour for training, or the shape is never seen.
  """
  pairs = set()
  for pair in held_out:
    if len(pair) != 2 or pair[0] not in SHAPES or pair[1] not in COLOURS:
      raise ValueError(f"held-out pair {pair!r} is not (shape, colour) with shape in {SHAPES} "
                       f"and colour in {COLOURS}")
    pairs.add(tuple(pair))
  for shape in SHAPES:
    if all((shape, colour) in pairs for colour in COLOURS):
      raise ValueError(f"every colour of {shape!r} is held out, so training would never show "
                       "that shape; hold out fewer pairs")
  return pairs


def sample_labels(n, seed, *, split="train", held_out=HELD_OUT):
  """Attribute indices of `n` scenes: {attribute: int32 [n]}, drawn uniformly within `split`."""
  if split not in SPLITS:
    raise ValueError(f"split {split!r} is not one of {SPLITS}")
  if n < 0:
    raise ValueError(f"n={n}: the number of scenes cannot be negative")
  pairs = check_held_out(held_out)
  if split == "held_out" and not pairs:
    raise ValueError("split='held_out' needs at least one held-out pair")
  allowed = [(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))
             if split == "all" or ((SHAPES[s], COLOURS[c]) in pairs) == (split == "held_out")]
  rng = np.random.default_rng([seed, 0])
  pick = np.asarray(allowed, np.int32)[rng.integers(len(allowed), size=n)].reshape(n, 2)
  return {"shape": pick[:, 0], "colour": pick[:, 1],
          "size": rng.integers(len(SIZES), size=n).astype(np.int32),
          "position": rng.integers(len(POSITIONS), size=n).astype(np.int32)}


def names(labels, i):
  """The attribute names of scene `i`: {"shape": "circle", "colour": "red", ...}."""
  return {attr: ATTRIBUTES[attr][int(labels[attr][i])] for attr in ATTRIBUTES}


def held_out_mask(labels, held_out=HELD_OUT):
  """bool [n]: whether each scene's (shape, colour) pair is held out."""
  pairs = check_held_out(held_out)
  return np.asarray([(SHAPES[s], COLOURS[c]) in pairs
                     for s, c in zip(labels["shape"], labels["colour"])], bool)


def _inside(shape, dx, dy, r):
  """Which sub-pixels at offset (dx, dy) from the centre lie inside a shape of half-extent r."""
  ax, ay = np.abs(dx), np.abs(dy)
  if shape == "circle":
    return dx * dx + dy * dy <= r * r
  if shape == "square":
    return np.maximum(ax, ay) <= 0.8 * r
  if shape == "triangle":  # apex up, base at 0.8 r below the centre
    return (dy <= 0.8 * r) & (ax <= (dy + r) / 1.8)
  if shape == "diamond":
    return ax + ay <= r
  return ((ax <= r / 3) & (ay <= r)) | ((ay <= r / 3) & (ax <= r))  # cross


def render(labels, seed, *, image_size=32):
  """uint8 images [n, image_size, image_size, 3] of the labelled scenes.

  The exact radius, the centre within its quadrant, the colour's shade and the background's
  grey level and noise are drawn from `seed`, so the same labels and seed give the same pixels.
  """
  n = len(labels["shape"])
  rng = np.random.default_rng([seed, 1])
  scale = image_size / 32
  fine = (np.arange(image_size * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
  images = np.empty((n, image_size, image_size, 3), np.uint8)
  for i in range(n):
    scene = names(labels, i)
    r = rng.uniform(*_RADIUS[scene["size"]]) * scale
    half = image_size / 2
    top, left = scene["position"].split()
    lo_y, hi_y = (r, half - 1) if top == "top" else (half + 1, image_size - r)
    lo_x, hi_x = (r, half - 1) if left == "left" else (half + 1, image_size - r)
    cy, cx = rng.uniform(lo_y, max(lo_y, hi_y)), rng.uniform(lo_x, max(lo_x, hi_x))
    mask = _inside(scene["shape"], fine[None, :] - cx, fine[:, None] - cy, r)
    cover = mask.reshape(image_size, _SUPERSAMPLE, image_size, _SUPERSAMPLE).mean(axis=(1, 3))
    colour = np.clip(np.asarray(_RGB[scene["colour"]]) + rng.uniform(-20, 20, 3), 0, 255)
    background = rng.uniform(0, 60) + rng.normal(0, 6, (image_size, image_size, 1))
    pixels = cover[..., None] * colour + (1 - cover[..., None]) * background
    images[i] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
  return images


def caption(scene, prefix="a ", mention=("colour", "size", "position")):
  """The caption of one scene ({attribute: name}) naming the shape and `mention`'s attributes."""
  unknown = set(mention) - set(ATTRIBUTES) - {"shape"}
  if unknown:
    raise ValueError(f"cannot mention {sorted(unknown)}; attributes are {list(ATTRIBUTES)}")
  words = [scene[a] for a in ("size", "colour") if a in mention] + [scene["shape"]]
  text = prefix + " ".join(words)
  if "position" in mention:
    text += " in the " + scene["position"]
  return text


def captions(labels, seed, *, mention=None):
  """One caption per scene: a random prefix; with `mention=None`, each of colour, size and
  position named with probability 1/2, else exactly the attributes in `mention`."""
  n = len(labels["shape"])
  rng = np.random.default_rng([seed, 2])
  prefixes = rng.integers(len(_PREFIXES), size=n)
  coins = rng.random((n, 3)) < 0.5
  result = []
  for i in range(n):
    said = mention if mention is not None else tuple(
        a for a, c in zip(("colour", "size", "position"), coins[i]) if c)
    result.append(caption(names(labels, i), _PREFIXES[prefixes[i]], said))
  return result
