"""The DALL-E transformer (Ramesh et al. 2021, section 2.2): one decoder over [text; image].

A caption's tokens, padded to `text_len`, are followed by the dVAE's grid of image tokens
(row-major), and GPT's blocks (`lineage.models.gpt.Block`, reused as they are) model the
whole stream autoregressively. The two parts keep their own vocabularies and position
embeddings: text tokens have a learned embedding per text position, image tokens one per
row plus one per column of the grid, as in the paper. Each text position pads with its own
padding token (id text_vocab + position), the paper's choice for better behaviour on
captions of unusual length. The loss weights the text's cross-entropy by 1/8 and the
image's by 7/8 (the paper's weighting: the image is what the model is for, the text a
language-modelling auxiliary).

The paper's sparse attention masks (row, column, convolutional) are left out: at an 8x8
grid the dense causal mask costs nothing. Sampling goes through `lineage.decode.Generator`
with `decoding(cfg)`, whose logits cover only the image vocabulary, so every sampled id is
an image code: the prompt is the padded caption, and the new tokens are the image.
"""

import dataclasses
import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp

from lineage.decode import sampling as sampling_lib
from lineage.models import gpt

TEXT_WEIGHT, IMAGE_WEIGHT = 1 / 8, 7 / 8


@dataclasses.dataclass(frozen=True)
class DALLEConfig:
  text_vocab: int = 64  # the caption tokenizer's ids; padding ids come after them
  text_len: int = 16
  image_vocab: int = 128  # the dVAE's codebook size
  image_grid: int = 8  # the dVAE's grid side: image_grid ** 2 image tokens
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  mlp_dim: int = 512
  dropout: float = 0.0
  dtype: str = "float32"
  attention_impl: str = "auto"

  @property
  def image_len(self):
    return self.image_grid ** 2

  @property
  def context(self):
    return self.text_len + self.image_len

  @property
  def trunk(self):
    """The GPT blocks' config: pre-LN, GPT-2's initialisation, the whole stream as context."""
    return gpt.GPTConfig(vocab_size=1, context=self.context, num_layers=self.num_layers,
                         num_heads=self.num_heads, embed_dim=self.embed_dim,
                         mlp_dim=self.mlp_dim, dropout=self.dropout, dtype=self.dtype,
                         attention_impl=self.attention_impl)


def _embed(rows, dim, dtype, name, std=0.02):
  init = nn.with_logical_partitioning(nn.initializers.normal(std), ("vocab", "embed"))
  return nn.Embed(rows, dim, dtype=dtype, param_dtype=jnp.float32, embedding_init=init,
                  name=name)


class DALLE(nn.Module):
  """__call__(text [B, text_len], image [B, image_len], deterministic) -> (text logits
  [B, text_len - 1, text vocab + pads] predicting text tokens 1.., image logits
  [B, image_len, image_vocab] predicting every image token)."""
  cfg: DALLEConfig

  def setup(self):
    cfg, trunk = self.cfg, self.cfg.trunk
    dtype, dim = jnp.dtype(cfg.dtype), cfg.embed_dim
    self.text_wte = _embed(cfg.text_vocab + cfg.text_len, dim, dtype, "text_wte")
    self.text_wpe = _embed(cfg.text_len, dim, dtype, "text_wpe", 0.01)
    self.image_wte = _embed(cfg.image_vocab, dim, dtype, "image_wte")
    self.image_row = _embed(cfg.image_grid, dim, dtype, "image_row", 0.01)
    self.image_col = _embed(cfg.image_grid, dim, dtype, "image_col", 0.01)
    self.drop = nn.Dropout(cfg.dropout)
    self.h = [gpt.Block(trunk, i, name=f"h_{i}") for i in range(cfg.num_layers)]
    self.ln_f = nn.LayerNorm(epsilon=trunk.layer_norm_eps, dtype=jnp.float32,
                             param_dtype=jnp.float32, name="ln_f")
    head = lambda n, name: nn.Dense(n, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                                    kernel_init=nn.with_logical_partitioning(
                                        nn.initializers.normal(0.02), ("embed", "vocab")),
                                    name=name)
    self.text_head = head(cfg.text_vocab + cfg.text_len, "text_head")
    self.image_head = head(cfg.image_vocab, "image_head")

  def embed(self, tokens, positions):
    """Stream positions below text_len are text, the rest image cells (row-major)."""
    cfg = self.cfg
    is_text = positions < cfg.text_len
    text = (self.text_wte(jnp.where(is_text, tokens, 0)) +
            self.text_wpe(jnp.minimum(positions, cfg.text_len - 1)))
    cell = jnp.clip(positions - cfg.text_len, 0, cfg.image_len - 1)
    image = (self.image_wte(jnp.where(is_text, 0, tokens)) + self.image_row(cell // cfg.image_grid)
             + self.image_col(cell % cfg.image_grid))
    return jnp.where(is_text[..., None], text, image)

  def hidden(self, tokens, positions, segment_ids=None, cache=None, deterministic=True):
    """The final LayerNorm's output [B, L, embed] (and the new cache, with `cache`); the
    blocks and their cache run as GPT's (gpt.run_blocks)."""
    x = self.drop(self.embed(tokens, positions), deterministic=deterministic)
    x, new_cache = gpt.run_blocks(self.h, x, segment_ids, cache, deterministic)
    x = self.ln_f(x).astype(jnp.dtype(self.cfg.dtype))
    return x if cache is None else (x, new_cache)

  def __call__(self, text, image, deterministic=True):
    cfg = self.cfg
    tokens = jnp.concatenate([text, image[:, :-1]], axis=1)
    positions = jnp.broadcast_to(jnp.arange(cfg.context - 1), tokens.shape)
    x = self.hidden(tokens, positions, deterministic=deterministic)
    text_logits = self.text_head(x[:, :cfg.text_len - 1]).astype(jnp.float32)
    return text_logits, self.image_head(x[:, cfg.text_len - 1:]).astype(jnp.float32)

  def image_logits(self, tokens, positions, segment_ids=None, cache=None):
    """Logits over the image vocabulary only, for decoding: every sampled id is a code."""
    out = self.hidden(tokens, positions, segment_ids, cache)
    x, new_cache = (out, None) if cache is None else out
    logits = self.image_head(x).astype(jnp.float32)
    return logits if cache is None else (logits, new_cache)


def text_tokens(cfg: DALLEConfig, captions_ids):
  """Caption token ids (lists) -> int32 [n, text_len], each padded with per-position pads.

  An empty caption is an error (there is nothing to condition on); one longer than text_len
  keeps its first text_len tokens, with a warning.
  """
  rows = []
  for i, ids in enumerate(captions_ids):
    if len(ids) == 0:
      raise ValueError(f"caption {i} is empty; DALL-E needs at least one word to draw from")
    if any(not 0 <= t < cfg.text_vocab for t in ids):
      raise ValueError(f"caption {i} has token ids outside [0, {cfg.text_vocab}): {list(ids)}")
    if len(ids) > cfg.text_len:
      warnings.warn(f"caption {i} has {len(ids)} tokens, more than the text context of "
                    f"{cfg.text_len}; it is truncated to its first {cfg.text_len}")
      ids = ids[:cfg.text_len]
    rows.append(list(ids) + [cfg.text_vocab + p for p in range(len(ids), cfg.text_len)])
  return jnp.asarray(rows, jnp.int32).reshape(len(rows), cfg.text_len)


def loss_terms(cfg: DALLEConfig, params, text, image, rng=None, deterministic=True):
  """Per-example (weighted loss, text cross-entropy, image cross-entropy), each a mean over
  its part's positions; the weighted loss is 1/8 text + 7/8 image."""
  rngs = None if deterministic else {"dropout": rng}
  text_logits, image_logits = DALLE(cfg).apply({"params": params}, text, image,
                                               deterministic=deterministic, rngs=rngs)
  ce = lambda logits, labels: -jnp.take_along_axis(
      jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0].mean(-1)
  text_ce, image_ce = ce(text_logits, text[:, 1:]), ce(image_logits, image)
  return TEXT_WEIGHT * text_ce + IMAGE_WEIGHT * image_ce, text_ce, image_ce


def init_params(cfg: DALLEConfig, rng):
  """Boxed (nn.Partitioned) parameters, as the training loop takes them."""
  text = jnp.zeros((1, cfg.text_len), jnp.int32)
  image = jnp.zeros((1, cfg.image_len), jnp.int32)
  return DALLE(cfg).init(rng, text, image)["params"]


def count_params(params):
  return sum(p.size for p in jax.tree.leaves(nn.unbox(params)))


@dataclasses.dataclass(frozen=True)
class _DecodeApply:
  cfg: DALLEConfig

  def __call__(self, params, tokens, positions, segment_ids, cache):
    return DALLE(self.cfg).apply({"params": params}, tokens, positions, segment_ids, cache,
                                 method=DALLE.image_logits)


@dataclasses.dataclass(frozen=True)
class _DecodeCache:
  cfg: DALLEConfig

  def __call__(self, batch, slots):
    return gpt.init_cache(self.cfg.trunk, batch, slots)


def decoding(cfg: DALLEConfig):
  """(apply_fn, init_cache) for `lineage.decode.Generator(*decoding(cfg), cfg.context)`:
  prompts are `text_tokens` rows, and image_len new tokens are one image's codes."""
  return _DecodeApply(cfg), _DecodeCache(cfg)


@functools.partial(jax.jit, static_argnames=("cfg", "flags"))
def sample_without_cache(cfg: DALLEConfig, params, text, rng, values, flags):
  """Image codes [B, image_len] sampled with no KV cache: every step reruns the whole
  stream. The baseline that the cached Generator is measured against, with the same
  sampling (`lineage.decode.next_token`)."""
  batch = text.shape[0]
  positions = jnp.broadcast_to(jnp.arange(cfg.context), (batch, cfg.context))
  model = DALLE(cfg)

  def step(t, carry):
    stream, rng = carry
    rng, key = jax.random.split(rng)
    logits = model.apply({"params": params}, stream, positions, method=DALLE.image_logits)
    last = jax.lax.dynamic_index_in_dim(logits, cfg.text_len - 1 + t, axis=1, keepdims=False)
    token = sampling_lib.next_token(last, key, flags, values)
    return stream.at[:, cfg.text_len + t].set(token), rng

  stream = jnp.concatenate([text, jnp.zeros((batch, cfg.image_len), jnp.int32)], axis=1)
  stream, _ = jax.lax.fori_loop(0, cfg.image_len, step, (stream, rng))
  return stream[:, cfg.text_len:]
