"""CLIP (Radford et al. 2021): contrastive image-text pre-training, zero-shot by prompts.

Tiny (the default; CPU, the embedded synthetic shapes): a 2-layer ViT on 4x4 patches of 32x32
images and a 2-layer GPT text encoder, both 64 wide, trained for 1,000 steps of 128 pairs on
20,000 captioned scenes whose held-out shape-colour pairs (circle-red, square-green, ...) never
appear in training, a quarter of each batch turned grey with colourless captions. About 290 s
of CPU (5.5 min wall on 2 lightly shared cores). Zero-shot is scored on 5,000 scenes per split;
the prompt ensembles are chosen on validation scenes of other seeds. Expect zero-shot shape
accuracy on the held-out pairs 0.86 (the chosen ensemble; 0.82 with "a photo of a {}" alone,
0.81 with the five caption prefixes averaged), 0.997 on unseen scenes of training pairs,
colour 0.999 (0.987 with one template); the linear probe 0.76 and 0.996. In summary.json:
  python -m experiments.clip --config=configs/clip.py:tiny --workdir=runs/clip_tiny
  python -m experiments.clip --config=configs/clip.py:tiny --workdir=runs/clip_tiny \
      --mode=zero_shot    # zero_shot.json and a confusion-matrix PNG per task and split
  python -m experiments.clip --config=configs/clip.py:tiny --workdir=runs/clip_tiny --mode=probe
Digits (scikit-learn's 1,797 real 8x8 digits, 1,437 to train, 360 to test; captions "a photo
of the digit seven" from five templates), 400 steps, about 70 s of CPU: zero-shot 0.84
(one template 0.83) and linear probe 0.86, side by side in summary.json:
  python -m experiments.clip --config=configs/clip.py:digits --workdir=runs/clip_digits
Runtimes and results measured: docs/results/clip.md.
Paper (vit_b32: ViT-B/32 at 224x224, a 12-layer 512-wide text transformer with 76 tokens of
context, batch 32,768, Adam (0.9, 0.98, 1e-6), weight decay 0.2, lr 5e-4, 2,000 warmup steps,
cosine, 32 epochs of 400M pairs): accelerators only; WIT is not public, so data.name=imagenet
(from $LINEAGE_MANUAL_DIR/imagenet) with captions written from the class names stands in.
"""

import dataclasses

import ml_collections

from configs import common
from lineage.models import clip

SHAPE_TEMPLATES = "a photo of a {}|a {}|a picture of a {}|a drawing of a {}|there is a {}"
# A colour named with each shape in turn: an ensemble over the words captions put next to it.
COLOUR_TEMPLATES = "a {} circle|a {} square|a {} triangle|a {} diamond|a {} cross"
# Candidates for the ensembles chosen on validation data (zero_shot.select), written like the
# training captions: their five prefixes (lineage/data/shapes.py) before the class name alone
# or with words captions put beside it (shape: a size, a colour or a position; colour: a
# shape, and a size).
CAPTION_PREFIXES = ("a ", "a photo of a ", "a picture of a ", "a drawing of a ", "there is a ")
SHAPE_CANDIDATES = "|".join(
    prefix + form for form in
    ("{}", "small {}", "large {}", "red {}", "green {}", "blue {}", "yellow {}", "purple {}",
     "{} in the top left", "{} in the top right", "{} in the bottom left",
     "{} in the bottom right") for prefix in CAPTION_PREFIXES)
COLOUR_CANDIDATES = "|".join(
    prefix + size + "{} " + shape for size in ("", "small ", "large ")
    for shape in ("circle", "square", "triangle", "diamond", "cross")
    for prefix in CAPTION_PREFIXES)
DIGIT_TEMPLATES = ("a photo of the digit {}|a photo of the number {}|the digit {}|"
                   "a handwritten {}|a scan of a handwritten {}")
# The paper's first ImageNet prompts, with their periods: these captions are written from them.
OBJECT_TEMPLATES = ("a photo of a {}.|a blurry photo of a {}.|a photo of the large {}.|"
                    "a photo of the small {}.|a good photo of a {}.")


def _model(cfg: clip.CLIPConfig):
  return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def _tiny_model(**overrides):
  fields = dict(image_size=32, channels=3, patch_size=4, vision_layers=2, vision_width=64,
                vision_heads=4, vocab_size=320, context=24, text_layers=2, text_width=64,
                text_heads=4, embed_dim=64)
  return _model(clip.CLIPConfig(**{**fields, **overrides}))


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  # name: shapes | digits | cifar10 | imagenet. shapes: num_train scenes (num_eval in each
  # other split) from seed; held_out: "" (the default pairs, lineage.data.shapes.HELD_OUT) or
  # "shape-colour,shape-colour". tokenizer: bpe (bpe_vocab_size tokens trained on the training
  # captions, kept in the workdir), byte or gpt2 (vocab_dir). caption_templates write the
  # captions of datasets without any (cifar10, imagenet) from their class names. grey_fraction
  # (shapes): that share of each batch turned grey, its captions without colour words.
  c.data = ml_collections.ConfigDict(dict(
      name="shapes", num_train=20000, num_eval=5000, seed=0, held_out="", tokenizer="bpe",
      bpe_vocab_size=320, vocab_dir="", data_dir="", train_split="train",
      eval_split="validation", caption_templates=OBJECT_TEMPLATES, grey_fraction=0.0))
  # templates: {task: "template|template|..."}, the first being the single-prompt baseline;
  # each task is evaluated on every split in `splits` (comma-separated). select: {task:
  # "candidate|..."}: that task's ensemble is chosen at each evaluation, by greedy forward
  # selection of at most select_max of its templates and these candidates, on the
  # select_splits (never one in `splits`); the templates averaged are reported beside it
  # (_fixed). held_out_validation: num_eval held-out-pair scenes from data.seed + 4;
  # validation: the builder's seen-pair scenes from seed + 1.
  c.zero_shot = ml_collections.ConfigDict(dict(
      templates=ml_collections.ConfigDict(dict(shape=SHAPE_TEMPLATES, colour=COLOUR_TEMPLATES)),
      splits="held_out,test", batch_size=500,
      select=ml_collections.ConfigDict(dict(shape=SHAPE_CANDIDATES, colour=COLOUR_CANDIDATES)),
      select_splits="held_out_validation,validation", select_max=10))
  # The linear probe of zero-shot task `task`, fitted on the first train_examples training
  # images' features (0: no probe) and scored on every zero_shot split.
  c.probe = ml_collections.ConfigDict(dict(task="shape", train_examples=2000))
  # The paper's optimiser: Adam (0.9, 0.98, 1e-6) with decoupled weight decay, cosine decay.
  c.train.update(b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2, grad_clip=0.0, schedule="cosine")

  if preset == "tiny":
    c.model = _tiny_model()
    # A quarter of each batch grey with colourless captions: without it shape features stay
    # tied to colour and held-out pairs score 0.51 after 600 steps (docs/results/clip.md).
    c.data.grey_fraction = 0.25
    c.train.update(steps=1000, batch_size=128, lr=2e-3, warmup_steps=50, weight_decay=0.1,
                   log_every=100, eval_every=1000, eval_batches=4, checkpoint_every=1000)
  elif preset == "digits":
    c.model = _tiny_model(image_size=8, channels=1, patch_size=2)
    c.data.update(name="digits", eval_split="test")
    c.zero_shot.templates = ml_collections.ConfigDict(dict(digit=DIGIT_TEMPLATES))
    c.zero_shot.update(splits="test", select_splits="")
    c.zero_shot.select = ml_collections.ConfigDict()
    c.probe.update(task="digit", train_examples=1437)
    c.train.update(steps=400, batch_size=128, lr=2e-3, warmup_steps=40, weight_decay=0.1,
                   log_every=50, eval_every=400, eval_batches=2, checkpoint_every=400)
  elif preset == "vit_b32":
    c.model = _model(clip.PRESETS["vit_b32"])
    c.data.update(name="imagenet", tokenizer="gpt2", eval_split="validation")
    c.model.vocab_size = 50257
    c.zero_shot.templates = ml_collections.ConfigDict(dict(object=OBJECT_TEMPLATES))
    c.zero_shot.update(splits="validation", select_splits="")
    c.zero_shot.select = ml_collections.ConfigDict()
    c.probe.update(task="object", train_examples=50000)
    c.train.update(steps=390_000, batch_size=32768, lr=5e-4, warmup_steps=2000,
                   weight_decay=0.2, log_every=100, eval_every=10000, checkpoint_every=2000)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny, digits or vit_b32")
  return c
