"""CLIP's training task: image-caption pairs, the contrastive loss over the whole batch, and
zero-shot accuracy and the linear probe as the loop's evaluation hook.

Datasets (data.name): `shapes` (the embedded synthetic scenes with held-out shape-colour
pairs), `digits` (scikit-learn's 1,797 real handwritten digits), and, for machines with the
data, `cifar10` and `imagenet`, whose records have no captions: theirs are written from the
class names with data.caption_templates, one template per image.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lineage.data import builders, image_batches, shapes, tokenizers
from lineage.data.builders import cifar10 as cifar10_builder
from lineage.data.builders import digits as digits_builder
from lineage.data.builders import imagenet as imagenet_builder
from lineage.data.builders import shapes as shapes_builder
from lineage.milestones.clip import zero_shot
from lineage.models import clip
from lineage.models import config as model_config_lib
from lineage.train import loop
from lineage.train import metrics as metrics_lib

# What zero-shot classifies on each dataset: {task name: (record field, class names)}.
# ImageNet's class names come from its records.
CLASSES = {
    "shapes": {"shape": ("shape", shapes.SHAPES), "colour": ("colour", shapes.COLOURS)},
    "digits": {"digit": ("label", digits_builder.CLASS_NAMES)},
    "cifar10": {"object": ("label", cifar10_builder.CLASS_NAMES)},
}


@dataclasses.dataclass
class Split:
  """One split in memory: images, captions (written from templates where the data has none),
  integer labels by field, and class names by classification task."""
  images: np.ndarray
  captions: list
  labels: dict
  classes: dict


def model_config(cfg, vocab_size=None):
  model_cfg = model_config_lib.from_config(clip.CLIPConfig, cfg.model)
  if vocab_size is not None and vocab_size > model_cfg.vocab_size:
    raise ValueError(f"the tokenizer has {vocab_size} tokens but model.vocab_size is "
                     f"{model_cfg.vocab_size}; raise --config.model.vocab_size")
  return model_cfg


def held_out_pairs(data_cfg):
  """The shapes' held-out (shape, colour) pairs: data.held_out ("circle-red,square-green"),
  or the default lineage.data.shapes.HELD_OUT."""
  if not data_cfg.held_out:
    return shapes.HELD_OUT
  pairs = tuple(tuple(pair.strip().split("-")) for pair in data_cfg.held_out.split(","))
  shapes.check_held_out(pairs)
  return pairs


# Not a builder split: held-out-pair scenes drawn from data.seed + 4 (the builder's four
# splits use seed + 0 ... 3), num_eval of them, to choose prompt ensembles on while the
# held_out split stays for reporting.
HELD_OUT_VALIDATION = "held_out_validation"


def _builder_config(cfg):
  data_cfg = cfg.data
  if data_cfg.name == "shapes":
    return shapes_builder.config(data_cfg.num_train, data_cfg.num_eval, data_cfg.seed,
                                 held_out_pairs(data_cfg))
  if data_cfg.name == "imagenet":
    size = cfg.model.image_size
    return imagenet_builder.ImagenetConfig(name=f"imagenet{size}", image_size=size)
  return None


def load(cfg, split):
  """A split of data.name, with captions and the classes zero-shot reads."""
  data_cfg = cfg.data
  if data_cfg.name not in ("shapes", "digits", "cifar10", "imagenet"):
    raise ValueError(f"unknown data.name {data_cfg.name!r}; choose shapes, digits, cifar10 or "
                     "imagenet")
  if split == HELD_OUT_VALIDATION:
    if data_cfg.name != "shapes":
      raise ValueError(f"split {HELD_OUT_VALIDATION!r} holds held-out shape-colour pairs: "
                       f"data.name=shapes only, not {data_cfg.name!r}")
    scenes = shapes.generate(data_cfg.num_eval, data_cfg.seed + 4, split="held_out",
                             held_out=held_out_pairs(data_cfg))
    return Split(images=scenes.images, captions=scenes.captions, labels=scenes.labels,
                 classes=dict(CLASSES["shapes"]))
  builder_config = _builder_config(cfg)
  images, captions, labels = image_batches.load_split(
      data_cfg.name, split, config=builder_config, data_dir=data_cfg.data_dir or None)
  if data_cfg.name == "imagenet":
    source = builders.load("imagenet", split, config=builder_config,
                           data_dir=data_cfg.data_dir or None)
    names = {int(r["label"]): r["class_name"].decode() for r in source}
    classes = {"object": ("label", tuple(names.get(i, str(i)) for i in range(max(names) + 1)))}
  else:
    classes = CLASSES[data_cfg.name]
  if not any(captions):
    field, names = next(iter(classes.values()))
    templates = data_cfg.caption_templates.split("|")
    rng = np.random.default_rng([data_cfg.seed, len(captions)])
    captions = [templates[t].format(names[label]) for t, label in
                zip(rng.integers(len(templates), size=len(captions)), labels[field])]
  return Split(images=images, captions=captions, labels=labels,
               classes={k: (field, tuple(names)) for k, (field, names) in classes.items()})


def tokenizer(cfg, workdir, captions=None):
  """The text tokenizer; `bpe` is trained on the training captions and kept in the workdir."""
  return tokenizers.make_tokenizer(cfg.data.tokenizer, workdir=workdir, train_texts=captions,
                                   vocab_size=cfg.data.bpe_vocab_size,
                                   vocab_dir=cfg.data.vocab_dir or None)


def loss_fn(model_cfg):
  """The contrastive loss of a batch, as a sum over its pairs (the step divides by the batch),
  with the image->text retrieval accuracy and the logit scale beside it."""
  model = clip.CLIP(model_cfg)

  def loss(params, batch, rng, deterministic):
    del rng, deterministic  # no dropout: CLIP trained without it
    images, texts, scale = model.apply({"params": params}, batch["images"], batch["tokens"],
                                       batch["ends"])
    n = images.shape[0]
    scores = clip.logits(images, texts, scale)
    hits = (jnp.argmax(scores, axis=1) == jnp.arange(n)).sum()
    return clip.contrastive_loss(images, texts, scale) * n, {
        "weight": jnp.float32(n), "retrieval_accuracy": hits.astype(jnp.float32),
        "logit_scale": scale * n}
  return loss


def check_micro_batches(cfg):
  if cfg.train.micro_batches != 1:
    raise ValueError(
        f"train.micro_batches={cfg.train.micro_batches}: CLIP's contrastive loss compares every "
        "image with every caption of the whole batch, so summing it over micro-batches would "
        "train with fewer negatives, a different loss. Set --config.train.micro_batches=1; to fit "
        "memory, spread the batch over more devices (mesh.data / mesh.fsdp) instead.")


def _split_names(names):
  return [name for name in names.split(",") if name]


def evaluator(cfg, model_cfg, tok, train=None):
  """The zero-shot and probe evaluator over zero_shot.splits, choosing ensembles on
  zero_shot.select_splits."""
  return zero_shot.Evaluator(
      cfg, model_cfg, tok, train,
      {split: load(cfg, split) for split in _split_names(cfg.zero_shot.splits)},
      {split: load(cfg, split) for split in _split_names(cfg.zero_shot.get("select_splits", ""))})


def build_task(cfg, workdir, with_data=True):
  """The loop's Task; with_data=False (modes that only restore weights) needs the workdir's
  tokenizer."""
  check_micro_batches(cfg)
  train = load(cfg, cfg.data.train_split) if with_data else None
  tok = tokenizer(cfg, workdir, train.captions if train else None)
  model_cfg = model_config(cfg, tok.vocab_size)
  model = clip.CLIP(model_cfg)
  shape = (1, model_cfg.image_size, model_cfg.image_size, model_cfg.channels)
  init_params = lambda rng: model.init(rng, jnp.zeros(shape, jnp.uint8),
                                       jnp.zeros((1, model_cfg.context), jnp.int32),
                                       jnp.zeros((1,), jnp.int32))["params"]
  flops = clip.flops_per_example(model_cfg, jax.eval_shape(init_params, jax.random.PRNGKey(0)))
  # The loop's "tokens" are image-caption pairs: tokens_per_sec is pairs a second.
  task = loop.Task(init_params=init_params, loss_fn=loss_fn(model_cfg),
                   tokens_per_batch=cfg.train.batch_size, flops_per_token=flops)
  if not with_data:
    return task
  tokens, ends = image_batches.encode_captions(tok, train.captions, model_cfg.context)
  grey = None
  if cfg.data.grey_fraction:
    if cfg.data.name != "shapes":
      raise ValueError("data.grey_fraction needs captions whose colour words can be removed: "
                       "it applies to shapes only; set it to 0")
    grey_tokens, grey_ends = image_batches.encode_captions(
        tok, image_batches.without_words(train.captions, shapes.COLOURS), model_cfg.context)
    grey = image_batches.Greyscale(cfg.data.grey_fraction, grey_tokens, grey_ends)
  task.train_data = image_batches.ImageTextBatches(train.images, tokens, ends,
                                                   cfg.train.batch_size, seed=cfg.train.seed,
                                                   grey=grey)
  validation = load(cfg, cfg.data.eval_split)
  val_tokens, val_ends = image_batches.encode_captions(tok, validation.captions,
                                                       model_cfg.context)
  eval_batches = image_batches.fixed_batches(validation.images, val_tokens, val_ends,
                                             cfg.train.batch_size)[:cfg.train.eval_batches]
  task.eval_data = lambda: eval_batches
  task.evaluate = evaluator(cfg, model_cfg, tok, train)
  metrics_lib.console(f"{cfg.data.name}: {len(train.images)} training pairs, "
                      f"{len(validation.images)} validation, {tok.vocab_size} tokens")
  return task
