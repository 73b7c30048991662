"""CLIP (Radford et al. 2021): an image encoder and a text encoder trained to agree.

The image encoder is a Vision Transformer: square patches, linearly embedded, a learned
class token and positions, a LayerNorm before the pre-LN blocks (CLIP's `ln_pre`) and one
on the class token's output (`ln_post`). The text encoder is our GPT trunk
(`lineage.models.gpt.GPT.hidden_states`): causal self-attention, read at the end-of-text
token after the final LayerNorm, as the paper reads its [EOS] token; padding after it
cannot change that token's state, since attention is causal. Linear projections without
bias map both into the joint space, where embeddings are L2-normalised.

The temperature is learned as a log-parametrised logit scale, initialised to 1/0.07 and
clipped at 100 ("to prevent scaling the logits by more than 100"); the clip is applied in
the forward pass, so the scale the loss sees never exceeds 100.

The symmetric contrastive loss compares every image with every caption in the batch. Under
jit with the batch sharded over ("data", "fsdp"), the [batch, batch] logits are one global
array, so XLA gathers the embeddings across devices: each device's images meet every
device's captions as negatives, and the loss equals one device's.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from kernels import ops
from lineage.models import gpt


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  image_size: int = 224
  channels: int = 3
  patch_size: int = 32
  vision_layers: int = 12
  vision_width: int = 768
  vision_heads: int = 12
  vocab_size: int = 49408
  context: int = 77  # text tokens, the end-of-text token included
  text_layers: int = 12
  text_width: int = 512
  text_heads: int = 8
  embed_dim: int = 512  # the joint space
  init_temperature: float = 0.07
  max_logit_scale: float = 100.0
  dtype: str = "float32"  # compute dtype; parameters stay float32
  attention_impl: str = "auto"

  def __post_init__(self):
    if self.image_size % self.patch_size:
      raise ValueError(f"image_size={self.image_size} is not a multiple of "
                       f"patch_size={self.patch_size}; choose a patch size that divides it")
    if self.vision_width % self.vision_heads:
      raise ValueError(f"vision_width={self.vision_width} is not divisible by "
                       f"vision_heads={self.vision_heads}")

  @property
  def num_patches(self):
    return (self.image_size // self.patch_size) ** 2

  def text_config(self):
    """The GPT trunk of the text encoder: pre-LN with a final LayerNorm, no dropout."""
    return gpt.GPTConfig(vocab_size=self.vocab_size, context=self.context,
                         num_layers=self.text_layers, num_heads=self.text_heads,
                         embed_dim=self.text_width, mlp_dim=4 * self.text_width, dropout=0.0,
                         dtype=self.dtype, attention_impl=self.attention_impl)


# ViT-B/32 as in the paper's Table 20 (CLIP-ViT hyper-parameters).
PRESETS = {"vit_b32": CLIPConfig()}


def _init(init, axes):
  return nn.with_logical_partitioning(init, axes)


def _dense(features, axes, std, dtype, name, use_bias=True):
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=_init(nn.initializers.normal(std), axes),
                  bias_init=_init(nn.initializers.zeros_init(), axes[1:]), name=name)


def _layer_norm(name):
  return nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32,
                      scale_init=_init(nn.initializers.ones_init(), ("norm",)),
                      bias_init=_init(nn.initializers.zeros_init(), ("norm",)), name=name)


class VisionBlock(nn.Module):
  """A pre-LN block with bidirectional attention over the patches and the class token."""
  cfg: CLIPConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    batch, length, width = x.shape
    dtype = jnp.dtype(cfg.dtype)
    std = width ** -0.5
    qkv = _dense(3 * width, ("embed", "heads"), std, dtype, "c_attn")(
        _layer_norm("ln_1")(x).astype(dtype))
    q, k, v = (t.reshape(batch, length, cfg.vision_heads, width // cfg.vision_heads)
               for t in jnp.split(qkv, 3, axis=-1))
    y = ops.attention(q, k, v, causal=False, implementation=cfg.attention_impl)
    x = x + _dense(width, ("heads", "embed"), std, dtype, "c_proj")(y.reshape(x.shape))
    h = _dense(4 * width, ("embed", "mlp"), std, dtype, "c_fc")(_layer_norm("ln_2")(x).astype(dtype))
    x = x + _dense(width, ("mlp", "embed"), (4 * width) ** -0.5, dtype, "mlp_proj")(
        jax.nn.gelu(h, approximate=True))
    return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))


class VisionTransformer(nn.Module):
  """Images [batch, size, size, channels] in [-1, 1] -> the class token's features."""
  cfg: CLIPConfig

  @nn.compact
  def __call__(self, images):
    cfg = self.cfg
    p, width, dtype = cfg.patch_size, cfg.vision_width, jnp.dtype(cfg.dtype)
    batch, side = images.shape[0], cfg.image_size // cfg.patch_size
    patches = images.reshape(batch, side, p, side, p, cfg.channels).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(batch, side * side, p * p * cfg.channels).astype(dtype)
    x = _dense(width, (None, "embed"), (p * p * cfg.channels) ** -0.5, dtype, "patch_embed",
               use_bias=False)(patches)
    scale = width ** -0.5
    cls = self.param("class_embedding", _init(nn.initializers.normal(scale), ("embed",)),
                     (width,))
    pos = self.param("position_embedding", _init(nn.initializers.normal(scale),
                                                 ("length", "embed")), (side * side + 1, width))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(dtype), (batch, 1, width)), x], axis=1)
    x = _layer_norm("ln_pre")(x + pos.astype(dtype))
    for i in range(cfg.vision_layers):
      x = VisionBlock(cfg, name=f"h_{i}")(x)
    return _layer_norm("ln_post")(x[:, 0])


def _normalise(x):
  x = x.astype(jnp.float32)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class CLIP(nn.Module):
  """images [batch, size, size, channels] (uint8 0..255 or floats in [0, 1]), text tokens
  [batch, context] with the end-of-text token at `ends` [batch] -> (image embeddings, text
  embeddings, logit scale); embeddings L2-normalised, [batch, embed_dim]."""
  cfg: CLIPConfig

  def setup(self):
    cfg = self.cfg
    self.visual = VisionTransformer(cfg)
    self.text = gpt.GPT(cfg.text_config())
    dtype = jnp.dtype(cfg.dtype)
    self.image_projection = _dense(cfg.embed_dim, ("embed", None), cfg.vision_width ** -0.5,
                                   dtype, "image_projection", use_bias=False)
    self.text_projection = _dense(cfg.embed_dim, ("embed", None), cfg.text_width ** -0.5, dtype,
                                  "text_projection", use_bias=False)
    self.logit_scale = self.param(
        "logit_scale", _init(nn.initializers.constant(math.log(1 / cfg.init_temperature)), ()),
        ())

  def image_features(self, images):
    """The image encoder's output before the projection: what the linear probe reads."""
    return self.visual(preprocess(images, self.cfg))

  def encode_image(self, images):
    return _normalise(self.image_projection(self.image_features(images)))

  def encode_text(self, tokens, ends):
    """Normalised embeddings of captions: the final hidden state at each end-of-text token."""
    check_tokens(tokens, ends, self.cfg)
    hidden = self.text.hidden_states(tokens)
    at_end = jnp.take_along_axis(hidden, ends[:, None, None].astype(jnp.int32), axis=1)[:, 0]
    return _normalise(self.text_projection(at_end))

  def scale(self):
    """exp(logit_scale), clipped at max_logit_scale."""
    return jnp.exp(jnp.minimum(self.logit_scale, math.log(self.cfg.max_logit_scale)))

  def __call__(self, images, tokens, ends):
    return self.encode_image(images), self.encode_text(tokens, ends), self.scale()


def check_images(shape, cfg: CLIPConfig):
  """A clear error for images of the wrong size or channels (`shape` of the batch)."""
  expected = (cfg.image_size, cfg.image_size, cfg.channels)
  if len(shape) != 4 or tuple(shape[1:]) != expected:
    raise ValueError(f"images of shape {tuple(shape)}: this CLIP expects [batch, "
                     f"{', '.join(map(str, expected))}] (height, width, channels); resize or "
                     "convert the images, or set model.image_size / model.channels to match")


def preprocess(images, cfg: CLIPConfig):
  """Checks the shape and maps pixels to [-1, 1]: uint8 from 0..255, floats from [0, 1]."""
  check_images(images.shape, cfg)
  x = images.astype(jnp.float32)
  x = x / 255.0 if images.dtype == jnp.uint8 else x
  return (x * 2.0 - 1.0).astype(jnp.dtype(cfg.dtype))


def check_tokens(tokens, ends, cfg: CLIPConfig):
  """Shapes that would otherwise fail deep inside the text encoder, as one clear error."""
  if tokens.ndim != 2 or tokens.shape[1] > cfg.context:
    raise ValueError(f"tokens of shape {tuple(tokens.shape)}: expected [batch, length <= "
                     f"{cfg.context}] (model.context); encode captions with "
                     "lineage.data.image_batches.encode_captions")
  if ends.shape != tokens.shape[:1]:
    raise ValueError(f"ends of shape {tuple(ends.shape)}: expected one end-of-text position "
                     f"per caption, [{tokens.shape[0]}]")


def logits(image_embeddings, text_embeddings, scale):
  """[images, captions] similarities times the logit scale, in float32."""
  return scale * jnp.einsum("id,td->it", image_embeddings.astype(jnp.float32),
                            text_embeddings.astype(jnp.float32))


def contrastive_loss(image_embeddings, text_embeddings, scale):
  """The symmetric InfoNCE loss: the mean of image->text and text->image cross-entropies,
  image i's caption being caption i, every other caption of the batch a negative."""
  scores = logits(image_embeddings, text_embeddings, scale)
  image_to_text = -jnp.diagonal(jax.nn.log_softmax(scores, axis=1))
  text_to_image = -jnp.diagonal(jax.nn.log_softmax(scores, axis=0))
  return (image_to_text.mean() + text_to_image.mean()) / 2


def count_params(params):
  return sum(p.size for p in jax.tree.leaves(nn.unbox(params)))


def flops_per_example(cfg: CLIPConfig, params):
  """Training FLOPs per image-caption pair: 6 x (parameters used once per token or patch)
  x (tokens or patches), plus attention (12 x layers x width x length^2 per sequence)."""
  params = nn.unbox(params)
  count = lambda tree: sum(p.size for p in jax.tree.leaves(tree))
  text_tokens = cfg.context
  patches = cfg.num_patches + 1
  vision = count(params["visual"]) - params["visual"]["position_embedding"].size
  text = count(params["text"]) - params["text"]["wpe"]["embedding"].size - (
      params["text"]["wte"]["embedding"].size)
  dense = 6 * (vision * patches + text * text_tokens)
  attention = 12 * (cfg.vision_layers * cfg.vision_width * patches ** 2
                    + cfg.text_layers * cfg.text_width * text_tokens ** 2)
  return dense + attention
