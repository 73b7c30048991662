"""The GPT family (GPT-1, GPT-2, GPT-3) as one linen module and one config.

Parameter names follow GPT-2's released checkpoints (`wte`, `wpe`, `h_{i}/ln_1`,
`attn/c_attn`, `attn/c_proj`, `ln_2`, `mlp/c_fc`, `mlp/c_proj`, `ln_f`), so that
importing and exporting weights is a rename table rather than a transform.
Every parameter carries logical axis names; `lineage.train.sharding` maps them
onto the ("data", "fsdp", "tensor") device mesh.

What separates the generations is a handful of config fields:
  GPT-1: post-LN blocks, no final LayerNorm, context 512.
  GPT-2: pre-LN blocks, a final LayerNorm, residual projections initialised with
         std 0.02/sqrt(2 * layers), context 1024.
  GPT-3: as GPT-2, context 2048, and every odd layer attends within a local band.
Attention-probability dropout is not applied: fused attention kernels do not
implement it, and dropout on the residual stream and embeddings is kept.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from kernels import ops


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  vocab_size: int = 50257
  context: int = 1024
  num_layers: int = 12
  num_heads: int = 12
  embed_dim: int = 768
  head_size: int = 0  # 0: embed_dim // num_heads (GPT-3's 1.3B model has 24 heads of 128 on 2048)
  mlp_dim: int = 3072
  dropout: float = 0.1
  pre_ln: bool = True  # False gives GPT-1's post-LN blocks (and no final LayerNorm)
  scaled_residual_init: bool = True  # GPT-2: residual projections get std 0.02/sqrt(2L)
  layer_norm_eps: float = 1e-5
  local_window: int = 0  # > 0: odd layers attend only to this many recent tokens (GPT-3)
  dtype: str = "float32"  # compute dtype; parameters stay float32
  attention_impl: str = "auto"
  remat: bool = False  # recompute block activations in the backward pass to save memory

  def __post_init__(self):
    if not self.head_size and self.embed_dim % self.num_heads:
      raise ValueError(f"embed_dim={self.embed_dim} is not divisible by "
                       f"num_heads={self.num_heads}; pick a head count that divides it "
                       "or set head_size")

  @property
  def head_dim(self):
    return self.head_size or self.embed_dim // self.num_heads

  @property
  def attn_dim(self):
    return self.num_heads * self.head_dim

  def is_local_layer(self, layer):
    return self.local_window > 0 and layer % 2 == 1


def _gpt2(layers, dim, heads, **kw):
  return GPTConfig(num_layers=layers, embed_dim=dim, num_heads=heads, mlp_dim=4 * dim, **kw)


def _gpt3(layers, dim, heads, head_size):
  return _gpt2(layers, dim, heads, head_size=head_size, context=2048, local_window=256,
               dropout=0.0)


# Shapes from the papers: GPT-1 (Radford et al. 2018), GPT-2 (2019, Table 2 with the
# Hugging Face counts), GPT-3 (2020, Table 2.1, whose head count times head size is not
# always d_model: its "1.3B" row, 24 heads of 128 on 2048, has 1.52B parameters as printed).
# GPT-3 states neither its band width nor dropout; 256 and 0 are our choice.
PRESETS = {
    "gpt1": _gpt2(12, 768, 12, vocab_size=40478, context=512, pre_ln=False,
                  scaled_residual_init=False),
    "gpt2_117m": _gpt2(12, 768, 12),
    "gpt2_345m": _gpt2(24, 1024, 16),
    "gpt2_762m": _gpt2(36, 1280, 20),
    "gpt2_1542m": _gpt2(48, 1600, 25),
    "gpt3_125m": _gpt3(12, 768, 12, 64),
    "gpt3_350m": _gpt3(24, 1024, 16, 64),
    "gpt3_760m": _gpt3(24, 1536, 16, 96),
    "gpt3_1.3b": _gpt3(24, 2048, 24, 128),
    "gpt3_2.7b": _gpt3(32, 2560, 32, 80),
    "gpt3_6.7b": _gpt3(32, 4096, 32, 128),
    "gpt3_13b": _gpt3(40, 5140, 40, 128),
    "gpt3_175b": _gpt3(96, 12288, 96, 128),
}


def _normal(std, axes):
  return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _zeros(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _dense(features, axes, std, dtype, name):
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=_normal(std, axes), bias_init=_zeros(axes[1:]), name=name)


def _layer_norm(cfg, name):
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, param_dtype=jnp.float32,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
                      bias_init=_zeros(("norm",)), name=name)


class Attention(nn.Module):
  cfg: GPTConfig
  layer: int

  @nn.compact
  def __call__(self, x, segment_ids, cache, deterministic):
    cfg = self.cfg
    batch, length, _ = x.shape
    dtype = jnp.dtype(cfg.dtype)
    qkv = _dense(3 * cfg.attn_dim, ("embed", "heads"), 0.02, dtype, "c_attn")(x)
    q, k, v = (t.reshape(batch, length, cfg.num_heads, cfg.head_dim)
               for t in jnp.split(qkv, 3, axis=-1))
    window = cfg.local_window if cfg.is_local_layer(self.layer) else None
    if cache is None:
      y = ops.attention(q, k, v, causal=True, segment_ids=segment_ids, local_window=window,
                        implementation=cfg.attention_impl)
      new_cache = None
    else:
      start = cache["index"]
      heads_first = lambda t: t.transpose(0, 2, 1, 3).astype(cache["k"].dtype)
      k_all = jax.lax.dynamic_update_slice(cache["k"], heads_first(k), (0, 0, start, 0))
      v_all = jax.lax.dynamic_update_slice(cache["v"], heads_first(v), (0, 0, start, 0))
      q_slots = jnp.broadcast_to(start + jnp.arange(length), (batch, length))
      y = ops.cached_attention(q, k_all.astype(dtype), v_all.astype(dtype), q_slots=q_slots,
                               kv_valid=cache["valid"], local_window=window,
                               implementation=cfg.attention_impl)
      new_cache = {"k": k_all, "v": v_all}
    y = y.reshape(batch, length, cfg.attn_dim)
    proj_std = 0.02 / math.sqrt(2 * cfg.num_layers) if cfg.scaled_residual_init else 0.02
    y = _dense(cfg.embed_dim, ("heads", "embed"), proj_std, dtype, "c_proj")(y)
    return nn.Dropout(cfg.dropout)(y, deterministic=deterministic), new_cache


class MLP(nn.Module):
  cfg: GPTConfig

  @nn.compact
  def __call__(self, x, deterministic):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    h = _dense(cfg.mlp_dim, ("embed", "mlp"), 0.02, dtype, "c_fc")(x)
    h = jax.nn.gelu(h, approximate=True)
    proj_std = 0.02 / math.sqrt(2 * cfg.num_layers) if cfg.scaled_residual_init else 0.02
    h = _dense(cfg.embed_dim, ("mlp", "embed"), proj_std, dtype, "c_proj")(h)
    return nn.Dropout(cfg.dropout)(h, deterministic=deterministic)


class Block(nn.Module):
  cfg: GPTConfig
  layer: int

  @nn.compact
  def __call__(self, x, segment_ids, cache, deterministic):
    cfg = self.cfg
    ln_1, ln_2 = _layer_norm(cfg, "ln_1"), _layer_norm(cfg, "ln_2")
    attn, mlp = Attention(cfg, self.layer, name="attn"), MLP(cfg, name="mlp")
    dtype = jnp.dtype(cfg.dtype)
    if cfg.pre_ln:
      y, new_cache = attn(ln_1(x).astype(dtype), segment_ids, cache, deterministic)
      x = x + y
      x = x + mlp(ln_2(x).astype(dtype), deterministic)
    else:
      y, new_cache = attn(x, segment_ids, cache, deterministic)
      x = ln_1(x + y).astype(dtype)
      x = ln_2(x + mlp(x, deterministic)).astype(dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
    return x, new_cache


def run_blocks(blocks, x, segment_ids, cache, deterministic):
  """x through the blocks: `(x, None)` without a cache; with one, every block reads and
  extends its keys and values at cache["index"], and `(x, new_cache)` comes back. Shared by
  GPT and the models built from its blocks (DALL-E)."""
  if cache is None:
    for block in blocks:
      x, _ = block(x, segment_ids, None, deterministic)
    return x, None
  batch, length = x.shape[:2]
  valid_new = jnp.ones((batch, length), bool) if segment_ids is None else segment_ids > 0
  valid = jax.lax.dynamic_update_slice(cache["valid"], valid_new, (0, cache["index"]))
  new_layers = []
  for i, block in enumerate(blocks):
    x, layer_cache = block(x, None, {**cache["layers"][i], "index": cache["index"],
                                     "valid": valid}, deterministic)
    new_layers.append(layer_cache)
  return x, {"layers": tuple(new_layers), "valid": valid, "index": cache["index"] + length}


class GPT(nn.Module):
  """Decoder-only transformer LM: tokens [batch, length] -> logits [batch, length, vocab].

  With `cache` (from `init_cache`), the tokens are written at cache slot
  `cache["index"]` onwards and the call returns `(logits, new_cache)`; tokens
  whose segment id is 0 are padding and are never attended to. `hidden_states`
  stops before the tied LM head, for heads of other shapes (a scorer that reads
  a few positions, a reward model, a classifier).
  """
  cfg: GPTConfig

  def setup(self):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    self.wte = nn.Embed(cfg.vocab_size, cfg.embed_dim, dtype=dtype, param_dtype=jnp.float32,
                        embedding_init=_normal(0.02, ("vocab", "embed")))
    self.wpe = nn.Embed(cfg.context, cfg.embed_dim, dtype=dtype, param_dtype=jnp.float32,
                        embedding_init=_normal(0.01, ("length", "embed")))
    # The name the module had when GPT was compact: its dropout masks derive from it.
    self.embed_dropout = nn.Dropout(cfg.dropout, name="Dropout_0")
    block_cls = nn.remat(Block, static_argnums=(4,)) if cfg.remat else Block
    self.h = [block_cls(cfg, i) for i in range(cfg.num_layers)]  # named h_0, h_1, ...
    if cfg.pre_ln:
      self.ln_f = _layer_norm(cfg, "ln_f")

  def hidden_states(self, tokens, positions=None, segment_ids=None, cache=None,
                    deterministic=True):
    """What the LM head reads, [batch, length, embed]: ln_f's output (pre-LN), or the last
    block's (GPT-1's post-LN); with `cache`, `(hidden, new_cache)`."""
    cfg = self.cfg
    batch, length = tokens.shape
    if positions is None:
      start = 0 if cache is None else cache["index"]
      positions = jnp.broadcast_to(start + jnp.arange(length), (batch, length))
    x = self.wte(tokens) + self.wpe(positions)
    x = self.embed_dropout(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))

    x, new_cache = run_blocks(self.h, x, segment_ids, cache, deterministic)
    if cfg.pre_ln:
      x = self.ln_f(x).astype(jnp.dtype(cfg.dtype))
    return x if cache is None else (x, new_cache)

  def __call__(self, tokens, positions=None, segment_ids=None, cache=None, deterministic=True):
    out = self.hidden_states(tokens, positions, segment_ids, cache, deterministic)
    hidden, new_cache = (out, None) if cache is None else out
    # The tied head as one 2-D product: with [batch, length] kept apart, XLA on CPU copies the
    # logits' gradient transposed for wte's gradient and splits its elementwise work into three
    # passes over [tokens, vocab] (a tenth of a 50k-vocabulary train step).
    logits = self.wte.attend(hidden.reshape(-1, hidden.shape[-1]))
    logits = logits.reshape(*hidden.shape[:-1], -1).astype(jnp.float32)
    return logits if cache is None else (logits, new_cache)


def init_cache(cfg: GPTConfig, batch, slots, dtype=None):
  """An empty KV cache with room for `slots` tokens per sequence.

  Keys and values are [batch, heads, slots, head_dim]: with heads before slots,
  each decoding step's attention matmuls read the cache in place instead of
  transposing all of it.
  """
  dtype = jnp.dtype(dtype or cfg.dtype)
  shape = (batch, cfg.num_heads, slots, cfg.head_dim)
  layer = lambda: {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
  return {"layers": tuple(layer() for _ in range(cfg.num_layers)),
          "valid": jnp.zeros((batch, slots), bool), "index": jnp.zeros((), jnp.int32)}


@dataclasses.dataclass(frozen=True)
class _DecodeApply:
  """`lineage.decode`'s apply_fn for one config; equal configs give equal (and equally
  hashed) functions, so decoders built from them share compiled executables."""
  cfg: GPTConfig

  def __call__(self, params, tokens, positions, segment_ids, cache):
    return GPT(self.cfg).apply({"params": params}, tokens, positions=positions,
                               segment_ids=segment_ids, cache=cache)


@dataclasses.dataclass(frozen=True)
class _DecodeCache:
  cfg: GPTConfig

  def __call__(self, batch, slots):
    return init_cache(self.cfg, batch, slots)


def decoding(cfg: GPTConfig):
  """(apply_fn, init_cache) in the form `lineage.decode.Generator` takes."""
  return _DecodeApply(cfg), _DecodeCache(cfg)


def count_params(params, include_positions=True):
  """Number of parameters; without positions, the N of the 6N FLOPs rule."""
  params = nn.unbox(params)
  total = sum(p.size for p in jax.tree.leaves(params))
  return total if include_positions else total - params["wpe"]["embedding"].size


def flops_per_token(cfg: GPTConfig, params):
  """Training FLOPs per token: 6N + 12 * layers * heads * head_dim * context (PaLM, nanoGPT)."""
  n = count_params(params, include_positions=False)
  return 6 * n + 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * cfg.context
