"""DALL-E's two training stages as Tasks for the generic loop.

Stage one trains the dVAE on the dataset's training images; the relaxation temperature and
the KL weight follow the paper's schedules, carried in each batch because they depend on the
step. Stage two encodes the training images once with the trained dVAE and trains the
transformer on [caption tokens; image tokens]. Batches are a function of the step alone
(rows drawn with a generator seeded by it), so resuming needs no iterator state and replays
the same batches. The images and captions come from `datasets` (data.name).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from lineage.milestones.dalle import datasets
from lineage.models import dalle, dvae
from lineage.train import loop
from lineage.train import weights as weights_lib

DVAE_DIR, TRANSFORMER_DIR = "dvae", "transformer"


def dvae_config(cfg):
  return dvae.DVAEConfig(**cfg.dvae.model)


def transformer_config(cfg):
  d = dvae_config(cfg)
  return dalle.DALLEConfig(text_vocab=datasets.load(cfg.data).tokenizer.vocab_size,
                           image_vocab=d.num_codes, image_grid=d.grid, **cfg.model)


def pixels(images):
  """uint8 [n, H, W, C] -> float32 in [0, 1], as the dVAE reads them."""
  return np.asarray(images, np.float32) / 255.0


class StepBatches:
  """next_batch(params, step) -> rows drawn from `arrays` by a generator seeded with the step,
  plus whatever `extra(step)` adds (the dVAE's temperature and KL weight)."""

  def __init__(self, arrays, batch_size, seed, extra=None):
    self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
    self.extra = extra or (lambda step: {})

  def next_batch(self, params, step):
    del params
    rows = np.random.default_rng([self.seed, step]).integers(
        len(next(iter(self.arrays.values()))), size=self.batch_size)
    batch = {k: v[rows] for k, v in self.arrays.items()}
    for name, value in self.extra(step).items():
      batch[name] = np.full((self.batch_size,), value, np.float32)
    return batch

  def get_state(self):
    return {}

  def set_state(self, state):
    del state


def _train_cfg(cfg, train):
  """The run's config with `train` as its train section (the loop reads cfg.train)."""
  c = cfg.copy_and_resolve_references()
  c.train = train
  return c


# ----- stage one: the dVAE -----

def dvae_task(cfg, eval_images=None):
  """The dVAE Task; with eval_images (uint8), an evaluation hook measuring reconstruction."""
  d = dvae_config(cfg)

  def loss_fn(params, batch, rng, deterministic):
    del deterministic
    tau = batch["tau"][:, None, None, None]
    total, nll, kl, mse = dvae.loss_terms(d, params, batch["images"], rng, tau, batch["beta"])
    return total.sum(), {"weight": jnp.float32(total.shape[0]), "nll": nll.sum(),
                         "kl": kl.sum(), "mse": mse.sum(), "tau": batch["tau"].sum(),
                         "beta": batch["beta"].sum()}

  evaluate = None
  if eval_images is not None:
    held = pixels(eval_images)
    evaluate = lambda params, step: reconstruction(d, params, held)
  return loop.Task(init_params=lambda rng: dvae.init_params(d, rng), loss_fn=loss_fn,
                   evaluate=evaluate)


def schedules(dc):
  """step -> {"tau", "beta"}: the paper's schedules over fractions of the run."""
  tau_steps, beta_steps = dc.tau_fraction * dc.train.steps, dc.beta_fraction * dc.train.steps
  return lambda step: {"tau": float(dvae.temperature(step, tau_steps, 1.0, dc.tau_end)),
                       "beta": float(dvae.kl_weight(step, beta_steps, dc.beta_max))}


def reconstruction(d, params, images, batch=256):
  """On float images x, with tokens t = encode(x): the squared error of decode(t) per pixel
  channel ("recon_mse"); the token round trip ("token_roundtrip"), the share of grid cells
  where encode(decode(t)) == t; and the squared error between decode(t) and the image of the
  round-tripped grid, decode(encode(decode(t))) ("roundtrip_image_mse"): where a cell comes
  back as another code, how different that code draws."""
  sq, same, drift, used = [], [], [], set()
  for i in range(0, len(images), batch):
    x = jnp.asarray(images[i:i + batch])
    tokens = _encode(d, params, x)
    recon = _decode(d, params, tokens)
    again = _encode(d, params, recon)
    sq.append(np.asarray(jnp.square(recon - x).mean(axis=(1, 2, 3))))
    same.append(np.asarray(again == tokens).mean(-1))
    drift.append(np.asarray(jnp.square(_decode(d, params, again) - recon).mean(axis=(1, 2, 3))))
    used.update(np.unique(np.asarray(tokens)).tolist())
  return {"recon_mse": float(np.concatenate(sq).mean()),
          "token_roundtrip": float(np.concatenate(same).mean()),
          "roundtrip_image_mse": float(np.concatenate(drift).mean()), "codes_used": len(used)}


_encode = jax.jit(dvae.encode, static_argnums=0)
_decode = jax.jit(dvae.decode, static_argnums=0)


def encode_images(d, params, images, batch=256):
  """uint8 images -> token grids, int32 [n, grid * grid]."""
  return np.concatenate([np.asarray(_encode(d, params, jnp.asarray(pixels(images[i:i + batch]))))
                         for i in range(0, len(images), batch)])


def decode_tokens(d, params, tokens, batch=256):
  """Token grids -> uint8 images."""
  out = [np.asarray(_decode(d, params, jnp.asarray(tokens[i:i + batch], jnp.int32)))
         for i in range(0, len(tokens), batch)]
  return np.clip(np.rint(np.concatenate(out) * 255), 0, 255).astype(np.uint8)


def train_dvae(cfg, workdir, data=None):
  """Stage one under workdir/dvae: (params, summary with recon_mse and token_roundtrip on
  held-out images)."""
  dc, data = cfg.dvae, data or datasets.load(cfg.data)
  train, held = data.train(dc.num_train), data.eval(dc.num_eval)
  task = dataclasses.replace(dvae_task(cfg, held.images), train_data=StepBatches(
      {"images": pixels(train.images)}, dc.train.batch_size, cfg.data.seed, schedules(dc)))
  state, summary = loop.train(_train_cfg(cfg, dc.train), os.path.join(workdir, DVAE_DIR), task)
  return state.params, summary


def load_dvae(cfg, workdir):
  return weights_lib.restore_params(_train_cfg(cfg, cfg.dvae.train),
                                    os.path.join(workdir, DVAE_DIR), dvae_task(cfg))


# ----- stage two: the transformer -----

def transformer_task(cfg):
  m = transformer_config(cfg)

  def loss_fn(params, batch, rng, deterministic):
    total, text_ce, image_ce = dalle.loss_terms(m, params, batch["text"], batch["image"], rng,
                                                deterministic)
    return total.sum(), {"weight": jnp.float32(total.shape[0]), "text_loss": text_ce.sum(),
                         "image_loss": image_ce.sum()}

  return loop.Task(init_params=lambda rng: dalle.init_params(m, rng), loss_fn=loss_fn,
                   tokens_per_batch=cfg.train.batch_size * m.context)


def caption_tokens(cfg, texts, data=None):
  """Captions -> int32 [n, text_len] (an empty caption is an error, a long one is cut)."""
  tokenizer = (data or datasets.load(cfg.data)).tokenizer
  return np.asarray(dalle.text_tokens(transformer_config(cfg),
                                      [tokenizer.encode(t) for t in texts]))


def train_transformer(cfg, workdir, dvae_params=None, data=None):
  """Stage two under workdir/transformer, on the training images encoded by the dVAE; the
  eval loss is on the held-out part (for shapes: pairs never trained on)."""
  d, data = dvae_config(cfg), data or datasets.load(cfg.data)
  if dvae_params is None:
    dvae_params = load_dvae(cfg, workdir)
  arrays = lambda part: {"text": caption_tokens(cfg, part.captions, data),
                         "image": encode_images(d, dvae_params, part.images)}
  held = arrays(data.eval())
  batch = cfg.train.batch_size
  eval_batches = [{k: v[i:i + batch] for k, v in held.items()}
                  for i in range(0, len(held["text"]) - batch + 1, batch)]
  task = dataclasses.replace(transformer_task(cfg), eval_data=lambda: eval_batches,
                             train_data=StepBatches(arrays(data.train()), batch, cfg.data.seed))
  state, summary = loop.train(cfg, os.path.join(workdir, TRANSFORMER_DIR), task)
  return state.params, summary


def load_transformer(cfg, workdir):
  return weights_lib.restore_params(cfg, os.path.join(workdir, TRANSFORMER_DIR),
                                    transformer_task(cfg))
