"""The 2017 Transformer (Vaswani et al., "Attention Is All You Need") as linen modules.

An encoder and a decoder of post-LN residual blocks, LayerNorm(x + Dropout(sublayer(x))),
over one vocabulary shared by source and target: a single embedding, scaled by
sqrt(d_model) on the way in, is also the pre-softmax projection. Positions are the
paper's sinusoids, so there are no position parameters and no length limit. Dropout acts
on the embedding-plus-position sums and on every sub-layer's output before its residual
sum; attention-probability dropout is not applied, as fused attention kernels do not
implement it (the paper does not use it either).

Segment ids mark what attends to what: 0 is padding, and packed pairs keep their own id
on both sides, so neither padding nor a neighbouring pair changes a real position's
output. Decoding keeps a KV cache of the decoder's self-attention and, computed once
from the encoder's output, the keys and values of every cross-attention
(`start_cache`), on the lineage.decode contract (`decoding`, `translate`).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kernels import ops
from lineage import decode


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  vocab_size: int = 37000  # the paper's shared English-German byte-pair vocabulary
  num_layers: int = 6  # in the encoder, and again in the decoder
  embed_dim: int = 512  # d_model
  mlp_dim: int = 2048  # d_ff
  num_heads: int = 8
  dropout: float = 0.1  # P_drop
  layer_norm_eps: float = 1e-6
  dtype: str = "float32"  # compute dtype; parameters stay float32
  attention_impl: str = "auto"

  def __post_init__(self):
    if self.embed_dim % self.num_heads or self.embed_dim % 2:
      raise ValueError(f"embed_dim={self.embed_dim} must be even and divisible by "
                       f"num_heads={self.num_heads}")

  @property
  def head_dim(self):
    return self.embed_dim // self.num_heads


# Table 3 of the paper: base (65M parameters) and big (213M); tiny runs on a laptop CPU.
PRESETS = {
    "tiny": TransformerConfig(vocab_size=64, num_layers=2, embed_dim=64, mlp_dim=128,
                              num_heads=4, dropout=0.1),
    "base": TransformerConfig(),
    "big": TransformerConfig(embed_dim=1024, mlp_dim=4096, num_heads=16, dropout=0.3),
}


def sinusoids(positions, dim):
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): [..., dim] float32."""
  rates = 1.0 / 10000.0 ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  angles = positions[..., None].astype(jnp.float32) * rates
  return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*positions.shape, dim)


def _dense(features, axes, dtype, name):
  init = nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes)
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=init,
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[1:]),
                  name=name)


def _layer_norm(cfg, name):
  partitioned = lambda init: nn.with_logical_partitioning(init, ("norm",))
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, param_dtype=jnp.float32,
                      scale_init=partitioned(nn.initializers.ones_init()),
                      bias_init=partitioned(nn.initializers.zeros_init()), name=name)


class Attention(nn.Module):
  """Multi-head attention whose keys and values can be projected once and reused."""
  cfg: TransformerConfig

  def setup(self):
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    self.query = _dense(cfg.embed_dim, ("embed", "heads"), dtype, "query")
    self.key = _dense(cfg.embed_dim, ("embed", "heads"), dtype, "key")
    self.value = _dense(cfg.embed_dim, ("embed", "heads"), dtype, "value")
    self.out = _dense(cfg.embed_dim, ("heads", "embed"), dtype, "out")

  def _heads(self, x):
    return x.reshape(*x.shape[:2], self.cfg.num_heads, self.cfg.head_dim)

  def keys_values(self, x):
    """[batch, seq, heads, head_dim] keys and values of x."""
    return self._heads(self.key(x)), self._heads(self.value(x))

  def __call__(self, x, k, v, **masks):
    """x's queries over keys and values k, v; masks as for kernels.ops.attention."""
    y = ops.attention(self._heads(self.query(x)), k, v, implementation=self.cfg.attention_impl,
                      **masks)
    return self.out(y.reshape(*x.shape[:2], self.cfg.embed_dim))

  def cached(self, x, cache):
    """Causal self-attention of new tokens x over the cache's slots and theirs."""
    batch, length = x.shape[:2]
    heads_first = lambda t: t.transpose(0, 2, 1, 3).astype(cache["k"].dtype)
    k, v = self.keys_values(x)
    start = cache["index"]
    k_all = jax.lax.dynamic_update_slice(cache["k"], heads_first(k), (0, 0, start, 0))
    v_all = jax.lax.dynamic_update_slice(cache["v"], heads_first(v), (0, 0, start, 0))
    dtype = jnp.dtype(self.cfg.dtype)
    y = ops.cached_attention(self._heads(self.query(x)), k_all.astype(dtype),
                             v_all.astype(dtype),
                             q_slots=jnp.broadcast_to(start + jnp.arange(length), (batch, length)),
                             kv_valid=cache["valid"], implementation=self.cfg.attention_impl)
    return self.out(y.reshape(batch, length, self.cfg.embed_dim)), {"k": k_all, "v": v_all}


class FeedForward(nn.Module):
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x):
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    h = jax.nn.relu(_dense(cfg.mlp_dim, ("embed", "mlp"), dtype, "wi")(x))
    return _dense(cfg.embed_dim, ("mlp", "embed"), dtype, "wo")(h)


class EncoderLayer(nn.Module):
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x, segment_ids, deterministic):
    cfg = self.cfg
    drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
    attn = Attention(cfg, name="self_attention")
    y = attn(x, *attn.keys_values(x), causal=False, segment_ids=segment_ids)
    x = _layer_norm(cfg, "ln_1")(x + drop(y)).astype(x.dtype)
    return _layer_norm(cfg, "ln_2")(x + drop(FeedForward(cfg, name="mlp")(x))).astype(x.dtype)


class DecoderLayer(nn.Module):
  cfg: TransformerConfig

  def setup(self):
    cfg = self.cfg
    self.self_attention = Attention(cfg)
    self.cross_attention = Attention(cfg)
    self.mlp = FeedForward(cfg)
    self.ln_1, self.ln_2, self.ln_3 = (_layer_norm(cfg, f"ln_{i}") for i in (1, 2, 3))
    self.dropout = nn.Dropout(cfg.dropout)

  def __call__(self, x, cross_kv, segment_ids, cross_masks, cache, deterministic):
    """cross_kv: the cross-attention's keys and values of the encoder output. Without a
    cache, causal self-attention within segment_ids; with one, over its slots."""
    drop = lambda y: self.dropout(y, deterministic=deterministic)
    dtype = x.dtype
    if cache is None:
      y = self.self_attention(x, *self.self_attention.keys_values(x), causal=True,
                              segment_ids=segment_ids)
    else:
      y, cache = self.self_attention.cached(x, cache)
    x = self.ln_1(x + drop(y)).astype(dtype)
    y = self.cross_attention(x, *cross_kv, causal=False, **cross_masks)
    x = self.ln_2(x + drop(y)).astype(dtype)
    return self.ln_3(x + drop(self.mlp(x))).astype(dtype), cache


class Transformer(nn.Module):
  """Encoder-decoder: (source [batch, s], target input [batch, t]) -> logits [batch, t, vocab].

  Segment ids (0 for padding) and positions default to one unpadded sequence per row.
  """
  cfg: TransformerConfig

  def setup(self):
    cfg = self.cfg
    init = nn.with_logical_partitioning(nn.initializers.normal(cfg.embed_dim ** -0.5),
                                        ("vocab", "embed"))
    self.embedding = nn.Embed(cfg.vocab_size, cfg.embed_dim, dtype=jnp.dtype(cfg.dtype),
                              param_dtype=jnp.float32, embedding_init=init)
    self.embed_dropout = nn.Dropout(cfg.dropout)
    self.encoder = [EncoderLayer(cfg, name=f"encoder_{i}") for i in range(cfg.num_layers)]
    self.decoder = [DecoderLayer(cfg, name=f"decoder_{i}") for i in range(cfg.num_layers)]

  def _embed(self, tokens, positions, deterministic):
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    x = self.embedding(tokens) * self.cfg.embed_dim ** 0.5
    x = x + sinusoids(positions, self.cfg.embed_dim).astype(x.dtype)
    return self.embed_dropout(x, deterministic=deterministic)

  def encode(self, source, segment_ids=None, positions=None, deterministic=True):
    """The encoder's output [batch, s, embed]."""
    x = self._embed(source, positions, deterministic)
    for layer in self.encoder:
      x = layer(x, segment_ids, deterministic)
    return x

  def decode(self, target, encoded, segment_ids=None, source_segment_ids=None, positions=None,
             deterministic=True):
    """Teacher-forced logits [batch, t, vocab] of the target input over the encoded source."""
    x = self._embed(target, positions, deterministic)
    cross_masks = {}
    if segment_ids is not None or source_segment_ids is not None:
      ones = lambda t: jnp.ones(t.shape[:2], jnp.int32)
      cross_masks = {"q_segment_ids": ones(target) if segment_ids is None else segment_ids,
                     "kv_segment_ids": ones(encoded) if source_segment_ids is None
                     else source_segment_ids}
    for layer in self.decoder:
      x, _ = layer(x, layer.cross_attention.keys_values(encoded), segment_ids, cross_masks,
                   None, deterministic)
    return self.embedding.attend(x).astype(jnp.float32)

  def __call__(self, source, target, source_segment_ids=None, target_segment_ids=None,
               source_positions=None, target_positions=None, deterministic=True):
    encoded = self.encode(source, source_segment_ids, source_positions, deterministic)
    return self.decode(target, encoded, target_segment_ids, source_segment_ids, target_positions,
                       deterministic)

  def start_cache(self, source, source_segment_ids, slots):
    """A decoding cache for `slots` target tokens per row: the source's padding and every
    decoder layer's cross-attention keys and values, computed once here."""
    cfg = self.cfg
    encoded = self.encode(source, source_segment_ids)
    batch = source.shape[0]
    shape = (batch, cfg.num_heads, slots, cfg.head_dim)
    layers = tuple({"k": jnp.zeros(shape, encoded.dtype), "v": jnp.zeros(shape, encoded.dtype)}
                   for _ in self.decoder)
    # The same for every beam of a row: beam search need not reorder it (lineage.decode).
    static = {"cross": tuple(layer.cross_attention.keys_values(encoded) for layer in self.decoder),
              "source_segment_ids": (source_segment_ids > 0).astype(jnp.int32)}
    return {"layers": layers, "static": static, "valid": jnp.zeros((batch, slots), bool),
            "index": jnp.zeros((), jnp.int32)}

  def decode_cached(self, tokens, positions, segment_ids, cache):
    """(logits, new cache) of target tokens written at slot cache["index"] onwards; tokens with
    segment id 0 are padding, never attended to."""
    valid = jax.lax.dynamic_update_slice(cache["valid"], segment_ids > 0, (0, cache["index"]))
    x = self._embed(tokens, positions, True)
    cross_masks = {"q_segment_ids": jnp.ones(tokens.shape, jnp.int32),
                   "kv_segment_ids": cache["static"]["source_segment_ids"]}
    new_layers = []
    for layer, layer_cache, cross_kv in zip(self.decoder, cache["layers"],
                                            cache["static"]["cross"]):
      self_cache = {"k": layer_cache["k"], "v": layer_cache["v"], "index": cache["index"],
                    "valid": valid}
      x, self_cache = layer(x, cross_kv, None, cross_masks, self_cache, True)
      new_layers.append({**layer_cache, **self_cache})
    logits = self.embedding.attend(x).astype(jnp.float32)
    return logits, {**cache, "layers": tuple(new_layers), "valid": valid,
                    "index": cache["index"] + tokens.shape[1]}


@functools.partial(jax.jit, static_argnames=("cfg", "slots"))
def start_cache(cfg: TransformerConfig, params, source, source_segment_ids, slots):
  """Transformer.start_cache, compiled once per shape."""
  return Transformer(cfg).apply({"params": params}, source, source_segment_ids, slots,
                                method=Transformer.start_cache)


@dataclasses.dataclass(frozen=True)
class _DecodeApply:
  """lineage.decode's apply_fn for one config; equal configs share executables."""
  cfg: TransformerConfig

  def __call__(self, params, tokens, positions, segment_ids, cache):
    return Transformer(self.cfg).apply({"params": params}, tokens, positions, segment_ids, cache,
                                       method=Transformer.decode_cached)


def decoding(cfg: TransformerConfig):
  """The apply_fn of lineage.decode's contract; the cache comes from start_cache (it holds the
  source), so there is no init_cache."""
  return _DecodeApply(cfg)


def translate(cfg: TransformerConfig, params, sources, *, bos_id, eos_id, beam_size=4,
              alpha=0.6, extra_length=50, bucket=16):
  """Beam-searched target ids (without bos and eos) of each source id list, at most
  len(source) + extra_length tokens each: the paper's decoding. Source lengths and the step
  bound are rounded up to a multiple of `bucket`, so batches share executables."""
  length = -(-max(len(s) for s in sources) // bucket) * bucket
  source = np.zeros((len(sources), length), np.int32)
  for row, ids in enumerate(sources):
    source[row, :len(ids)] = ids
  segment_ids = (np.arange(length)[None] < np.array([len(s) for s in sources])[:, None])
  limits = [len(s) + extra_length for s in sources]
  search = decode.BeamSearch(decoding(cfg), None, context=1 + max(limits))
  tokens, _ = search.search(
      params, [[bos_id]] * len(sources), limits, eos_id=eos_id, beam_size=beam_size, alpha=alpha,
      bucket=bucket, start_cache=lambda slots: start_cache(cfg, params, source,
                                                           segment_ids.astype(np.int32), slots))
  return tokens


def count_params(params):
  return sum(p.size for p in jax.tree.leaves(nn.unbox(params)))
