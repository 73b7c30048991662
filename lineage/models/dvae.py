"""The discrete VAE of DALL-E (Ramesh et al. 2021, section 2.1): images <-> grids of tokens.

The encoder gives, for every cell of a grid `downsample` times smaller than the image, logits
over `num_codes` codes; the decoder maps a grid of codebook vectors back to pixels. Training
cannot back-propagate through an argmax, so it uses the paper's Gumbel-softmax relaxation:
each cell's code is the softmax of (logits + Gumbel noise) / tau, a convex mix of codebook
vectors that becomes one-hot as the temperature tau is annealed towards 1/16. The KL term
against a uniform prior over the codes is weighted by beta, raised from 0 during training,
which the paper found to spread the use of the codebook. At inference the codes are the
argmax of the logits, and the decoder reads exactly one codebook vector per cell.

Pixels are in [0, 1]. The reconstruction term is a Gaussian log-likelihood with a fixed scale
(a sum of squared errors / (2 sigma^2) per image) in place of the paper's logit-Laplace, which
mattered for natural 256x256 images and not for flat-coloured 32x32 shapes.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class DVAEConfig:
  image_size: int = 32
  channels: int = 3
  downsample: int = 4  # grid side = image_size / downsample; a power of two
  num_codes: int = 128  # K, the image vocabulary of the transformer
  hidden: int = 64  # convolution width
  code_dim: int = 64  # codebook vector size
  sigma: float = 0.1  # scale of the Gaussian reconstruction likelihood

  def __post_init__(self):
    stages = int(math.log2(self.downsample)) if self.downsample > 0 else -1
    if stages < 0 or 2 ** stages != self.downsample or self.image_size % self.downsample:
      raise ValueError(f"downsample={self.downsample} with image_size={self.image_size}: it "
                       "must be a power of two that divides the image size")

  @property
  def grid(self):
    return self.image_size // self.downsample

  @property
  def stages(self):
    return int(math.log2(self.downsample))


class _ResBlock(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.width, (3, 3), name="conv_1")(jax.nn.relu(x))
    return x + nn.Conv(self.width, (1, 1), name="conv_2")(jax.nn.relu(h))


class Encoder(nn.Module):
  """Image [batch, H, W, C] -> logits [batch, grid, grid, num_codes]."""
  cfg: DVAEConfig

  @nn.compact
  def __call__(self, images):
    cfg = self.cfg
    x = nn.Conv(cfg.hidden, (3, 3), name="stem")(images * 2.0 - 1.0)
    for i in range(cfg.stages):
      x = nn.Conv(cfg.hidden, (4, 4), strides=(2, 2), name=f"down_{i}")(jax.nn.relu(x))
      x = _ResBlock(cfg.hidden, name=f"res_{i}")(x)
    return nn.Conv(cfg.num_codes, (1, 1), name="to_logits")(jax.nn.relu(x))


class Decoder(nn.Module):
  """Code weights [batch, grid, grid, num_codes] (one-hot, or relaxed) -> pixels in [0, 1]."""
  cfg: DVAEConfig

  @nn.compact
  def __call__(self, code_weights):
    cfg = self.cfg
    codebook = self.param("codebook", nn.initializers.normal(1.0), (cfg.num_codes, cfg.code_dim))
    x = nn.Conv(cfg.hidden, (1, 1), name="stem")(code_weights @ codebook)
    for i in range(cfg.stages):
      x = _ResBlock(cfg.hidden, name=f"res_{i}")(x)
      x = nn.ConvTranspose(cfg.hidden, (4, 4), strides=(2, 2), name=f"up_{i}")(jax.nn.relu(x))
    return jax.nn.sigmoid(nn.Conv(cfg.channels, (3, 3), name="to_pixels")(jax.nn.relu(x)))


class DVAE(nn.Module):
  cfg: DVAEConfig

  def setup(self):
    self.encoder = Encoder(self.cfg)
    self.decoder = Decoder(self.cfg)

  def __call__(self, images, rng, tau):
    """Relaxed reconstruction and encoder logits, for training."""
    logits = self.encoder(images)
    return self.decoder(gumbel_softmax(logits, rng, tau)), logits

  def logits(self, images):
    return self.encoder(images)

  def decode_weights(self, code_weights):
    return self.decoder(code_weights)


def check_images(images, cfg: DVAEConfig):
  """Images must be [batch, size, size, channels] floats in [0, 1]."""
  expected = (cfg.image_size, cfg.image_size, cfg.channels)
  if images.ndim != 4 or tuple(images.shape[1:]) != expected:
    raise ValueError(f"images of shape {tuple(images.shape)}; the dVAE expects "
                     f"[batch, {', '.join(map(str, expected))}] with pixels in [0, 1]")


def gumbel_softmax(logits, rng, tau):
  """softmax((logits + Gumbel noise) / tau) over the last axis: a differentiable sample."""
  noise = jax.random.gumbel(rng, logits.shape, logits.dtype)
  return jax.nn.softmax((logits + noise) / tau, axis=-1)


def kl_to_uniform(logits):
  """KL(q || uniform) per image, summed over cells: sum q log q + log K."""
  log_q = jax.nn.log_softmax(logits, axis=-1)
  per_cell = jnp.sum(jnp.exp(log_q) * log_q, axis=-1) + math.log(logits.shape[-1])
  return per_cell.reshape(per_cell.shape[0], -1).sum(-1)


def loss_terms(cfg: DVAEConfig, params, images, rng, tau, beta):
  """Per-image negative ELBO with a beta-weighted KL: (loss [batch], recon nats, kl, mse)."""
  recon, logits = DVAE(cfg).apply({"params": params}, images, rng, tau)
  sq = jnp.square(recon - images).reshape(images.shape[0], -1)
  nll = sq.sum(-1) / (2 * cfg.sigma ** 2)
  kl = kl_to_uniform(logits)
  return nll + beta * kl, nll, kl, sq.mean(-1)


def cosine_ramp(step, steps, start, end):
  """start -> end along half a cosine over `steps`, then flat: the paper's annealing shape."""
  frac = jnp.clip(step / max(steps, 1), 0.0, 1.0)
  return end + (start - end) * 0.5 * (1 + jnp.cos(jnp.pi * frac))


def temperature(step, steps, tau_start=1.0, tau_end=1.0 / 16):
  """The relaxation temperature: 1 -> 1/16 (cosine) over the first `steps` updates."""
  return cosine_ramp(step, steps, tau_start, tau_end)


def kl_weight(step, steps, beta_max):
  """The KL weight: 0 -> beta_max (cosine) over the first `steps` updates (paper: 6.6, 5000)."""
  return cosine_ramp(step, steps, 0.0, beta_max)


def encode(cfg: DVAEConfig, params, images):
  """Images [batch, H, W, C] in [0, 1] -> token grid [batch, grid * grid] (argmax codes,
  row-major: the order the transformer generates them in)."""
  check_images(images, cfg)
  logits = DVAE(cfg).apply({"params": params}, images, method=DVAE.logits)
  return jnp.argmax(logits, axis=-1).reshape(images.shape[0], -1).astype(jnp.int32)


def decode(cfg: DVAEConfig, params, tokens):
  """Token grid [batch, grid * grid] (ids in [0, num_codes)) -> images [batch, H, W, C]."""
  if tokens.ndim != 2 or tokens.shape[1] != cfg.grid ** 2:
    raise ValueError(f"tokens of shape {tuple(tokens.shape)}; the dVAE decodes "
                     f"[batch, {cfg.grid ** 2}] grids ({cfg.grid} x {cfg.grid}, row-major)")
  one_hot = jax.nn.one_hot(tokens.reshape(-1, cfg.grid, cfg.grid), cfg.num_codes)
  return DVAE(cfg).apply({"params": params}, one_hot, method=DVAE.decode_weights)


def init_params(cfg: DVAEConfig, rng):
  images = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.channels))
  return DVAE(cfg).init(rng, images, jax.random.PRNGKey(0), 1.0)["params"]
