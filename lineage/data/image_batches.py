"""Image-caption batches for contrastive training: whole splits in memory, shuffled per epoch.

The image datasets CLIP trains on here (shapes, digits, CIFAR-10 at 32x32) fit in memory
many times over, so a split is read once from its builder into arrays and batches are
index gathers: no grain workers to start, and the iterator state is two integers. At
ImageNet scale this is the place to swap in a grain pipeline over the same records.

A batch is {"images": uint8 [B, H, W, C], "tokens": int32 [B, context], "ends": int32 [B]}:
each caption's tokens, then the end-of-text token at `ends`, then zeros (the text encoder
is causal, so nothing after the end token changes what it reads there).
"""

import numpy as np
import jax

from lineage.data import builders


def encode_captions(tokenizer, captions, context):
  """(tokens int32 [n, context], ends int32 [n]): each caption's ids then end-of-text.

  A caption longer than context - 1 tokens is cut, as CLIP cut its captions at 76 tokens;
  the end-of-text token is always kept. An empty caption is an error: its embedding would
  be the end token's alone, the same for every empty caption.
  """
  captions = [c.decode() if isinstance(c, bytes) else c for c in captions]
  tokens = np.zeros((len(captions), context), np.int32)
  ends = np.zeros(len(captions), np.int32)
  for i, caption in enumerate(captions):
    if not isinstance(caption, str) or not caption.strip():
      raise ValueError(f"caption {i} is empty ({caption!r}): every image needs a caption with "
                       "some text, and every class a non-empty name")
    ids = tokenizer.encode(caption)[:context - 1] + [tokenizer.eot_id]
    tokens[i, :len(ids)] = ids
    ends[i] = len(ids) - 1
  return tokens, ends


def load_split(name, split, *, config=None, data_dir=None):
  """A whole split as (images uint8 [n, H, W, C], captions list[str], labels {field: int [n]}).

  Labels are the records' integer fields (shape, colour, ... for shapes; label for digits
  and CIFAR-10). Records without captions (CIFAR-10, ImageNet) get empty ones; they serve
  zero-shot evaluation and probes, not contrastive training.
  """
  source = builders.load(name, split, data_dir=data_dir, config=config)
  records = source.__getitems__(list(range(len(source))))  # one read, not one per record
  if not records:
    raise ValueError(f"{name}/{split} has no records")
  images = np.stack([r["image"] for r in records])
  captions = [r["caption"].decode() if "caption" in r else "" for r in records]
  labels = {k: np.asarray([r[k] for r in records]) for k, v in records[0].items()
            if k not in ("image", "caption") and np.ndim(v) == 0 and
            np.issubdtype(np.asarray(v).dtype, np.integer)}
  return images, captions, labels


class ImageTextBatches:
  """An endless iterator of shuffled batches over (images, tokens, ends), one epoch at a time.

  Each epoch is a permutation drawn from (seed, epoch); a final partial batch is dropped, so
  every batch has `batch_size` rows (the contrastive loss's negatives are the batch). With
  several processes, each yields its own contiguous slice of every global batch, as
  `lineage.train.loop.device_batch` expects. get_state() / set_state() resume exactly.
  """

  def __init__(self, images, tokens, ends, batch_size, seed=0, grey=None):
    if not len(images) == len(tokens) == len(ends):
      raise ValueError(f"{len(images)} images, {len(tokens)} token rows and {len(ends)} ends: "
                       "one caption per image")
    if batch_size > len(images):
      raise ValueError(f"batch_size={batch_size} is larger than the {len(images)} training "
                       "pairs; lower --config.train.batch_size")
    processes = jax.process_count()
    if batch_size % processes:
      raise ValueError(f"batch_size={batch_size} does not split over {processes} processes")
    self.images, self.tokens, self.ends = images, tokens, ends
    self.batch_size, self.seed, self.grey = batch_size, seed, grey
    self.epoch, self.position = 0, 0
    self._rows = slice(jax.process_index() * batch_size // processes,
                       (jax.process_index() + 1) * batch_size // processes)

  def __iter__(self):
    return self

  def _order(self):
    return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

  def __next__(self):
    if self.position + self.batch_size > len(self.images):
      self.epoch, self.position = self.epoch + 1, 0
    index = self._order()[self.position:self.position + self.batch_size][self._rows]
    batch = {"images": self.images[index], "tokens": self.tokens[index],
             "ends": self.ends[index]}
    if self.grey is not None:
      rng = np.random.default_rng([self.seed, self.epoch, self.position, jax.process_index()])
      batch = self.grey.apply(batch, index, rng)
    self.position += self.batch_size
    return batch

  def get_state(self):
    return {"epoch": self.epoch, "position": self.position}

  def set_state(self, state):
    self.epoch, self.position = int(state["epoch"]), int(state["position"])


class Greyscale:
  """Random greyscale with captions that match: a `fraction` of each batch's images lose their
  colour (each pixel the mean of its channels) and take the caption without its colour words
  (`tokens`, `ends`: those captions, encoded). SimCLR's random greyscale, kept honest for a
  contrastive loss: a grey image must not be paired with a caption that names its colour.
  It teaches shape apart from colour, which is what held-out shape-colour pairs test."""

  def __init__(self, fraction, tokens, ends):
    if not 0 <= fraction <= 1:
      raise ValueError(f"greyscale fraction {fraction} is not in [0, 1]")
    self.fraction, self.tokens, self.ends = fraction, tokens, ends

  def apply(self, batch, index, rng):
    grey = rng.random(len(index)) < self.fraction
    images = batch["images"].copy()
    mean = np.rint(images[grey].astype(np.float32).mean(-1, keepdims=True))
    images[grey] = np.broadcast_to(mean, images[grey].shape).astype(images.dtype)
    return {"images": images,
            "tokens": np.where(grey[:, None], self.tokens[index], batch["tokens"]),
            "ends": np.where(grey, self.ends[index], batch["ends"])}


def without_words(captions, words):
  """Captions with every word in `words` removed (the colour words of greyscale captions)."""
  words = set(words)
  return [" ".join(w for w in c.split(" ") if w not in words) for c in captions]


def fixed_batches(images, tokens, ends, batch_size):
  """Consecutive full batches in order (evaluation); the remainder is dropped."""
  return [{"images": images[i:i + batch_size], "tokens": tokens[i:i + batch_size],
           "ends": ends[i:i + batch_size]}
          for i in range(0, len(images) - batch_size + 1, batch_size)]
