"""Beam search on the apply_fn/init_cache contract of lineage.decode, as the 2017 Transformer
decoded: beam 4, GNMT's length penalty ((5 + length) / 6) ** alpha with alpha 0.6.

Each step extends every live beam by every token and ranks the candidates by
log-probability; a candidate ending in the stop token among the best K finishes
(scored by log-probability over the length penalty, the stop token counted),
and the best K others live on. A row is done once it holds K finished
hypotheses (so beam 1 is greedy decoding) or its beams reach its length limit,
where the live ones finish as they are; the loop ends when every row is done.
The cache is prefilled once per prompt, copied to its K beams, and reordered by
a gather along its rows whenever beams are chosen. The search is one compiled
`while_loop` per shape, with the parameters, stop token and alpha as arguments.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lineage.decode.generate import check_limits, left_pad


def length_penalty(length, alpha):
  """GNMT's ((5 + length) / 6) ** alpha (Wu et al. 2016), by which log-probabilities divide."""
  return ((5.0 + length) / 6.0) ** alpha


def _per_row(cache, fn):
  """fn applied to every cache leaf with rows (rank >= 1); scalars such as an index stay."""
  return jax.tree.map(lambda x: fn(x) if x.ndim else x, cache)


def _reorder(cache, rows):
  """The cache's rows gathered by beam, except its "static" entry: what is the same for every
  beam of a row (an encoder's cross-attention keys and values) need not move."""
  if isinstance(cache, dict) and "static" in cache:
    moving = _per_row({k: v for k, v in cache.items() if k != "static"}, lambda x: x[rows])
    return {**moving, "static": cache["static"]}
  return _per_row(cache, lambda x: x[rows])


@functools.partial(jax.jit, static_argnames=("apply_fn", "beam_size", "max_new"))
def _search(params, cache, tokens, positions, segment_ids, limits, eos_id, alpha, *, apply_fn,
            beam_size, max_new):
  """(tokens [batch, max_new], lengths [batch], scores [batch]) of each row's best hypothesis."""
  batch, k = tokens.shape[0], beam_size
  logits, cache = apply_fn(params, tokens, positions, segment_ids, cache)
  cache = _per_row(cache, lambda x: jnp.repeat(x, k, axis=0))  # row b * k + beam
  first = jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)  # the copies must not compete
  state = {"step": jnp.zeros((), jnp.int32),
           "logits": jnp.repeat(logits[:, -1].astype(jnp.float32), k, axis=0),
           "position": jnp.repeat(positions[:, -1], k),
           "alive_tokens": jnp.zeros((batch, k, max_new), jnp.int32),
           "alive_logp": jnp.broadcast_to(first, (batch, k)),
           "tokens": jnp.zeros((batch, k, max_new), jnp.int32),
           "lengths": jnp.zeros((batch, k), jnp.int32),
           "scores": jnp.full((batch, k), -jnp.inf),
           "done": limits <= 0}

  def step(carry):
    cache, s = carry
    t = s["step"]
    vocab = s["logits"].shape[-1]
    logp = (jax.nn.log_softmax(s["logits"]).reshape(batch, k, vocab)
            + s["alive_logp"][..., None])
    logp = jnp.where(s["done"][:, None, None], -jnp.inf, logp)
    # One stop token per beam: of the best 2K, at least K continue.
    top_logp, index = jax.lax.top_k(logp.reshape(batch, k * vocab), 2 * k)
    parent, token = index // vocab, index % vocab
    candidates = jnp.take_along_axis(s["alive_tokens"], parent[..., None], axis=1)
    candidates = candidates.at[:, :, t].set(token)
    stops = token == eos_id
    continue_rank = jnp.cumsum(~stops, axis=1) - 1
    last = (t + 1 >= limits)[:, None]
    finishes = (top_logp > -jnp.inf) & jnp.where(
        stops, jnp.arange(2 * k) < k, last & (continue_rank < k))
    score = jnp.where(finishes, top_logp / length_penalty(t + 1.0, alpha), -jnp.inf)
    pool = lambda old, new: jnp.concatenate([old, new], axis=1)
    scores, best = jax.lax.top_k(pool(s["scores"], score), k)
    tokens_out = jnp.take_along_axis(pool(s["tokens"], candidates), best[..., None], axis=1)
    lengths = jnp.take_along_axis(
        pool(s["lengths"], jnp.broadcast_to(t + 1 - stops, stops.shape)), best, axis=1)

    live = jnp.argsort(stops, axis=1, stable=True)[:, :k]  # the best K that continue
    alive_tokens = jnp.take_along_axis(candidates, live[..., None], axis=1)
    rows = (jnp.arange(batch)[:, None] * k + jnp.take_along_axis(parent, live, axis=1)).reshape(-1)
    cache = _reorder(cache, rows)
    done = s["done"] | last[:, 0] | ((scores > -jnp.inf).sum(axis=1) >= k)
    position = s["position"] + ~jnp.repeat(done, k)  # a done row stays within its context
    next_tokens = alive_tokens[:, :, t].reshape(-1, 1)
    logits, cache = apply_fn(params, next_tokens, position[:, None], jnp.ones_like(next_tokens),
                             cache)
    return cache, {**s, "step": t + 1, "logits": logits[:, -1].astype(jnp.float32),
                   "position": position, "alive_tokens": alive_tokens,
                   "alive_logp": jnp.take_along_axis(top_logp, live, axis=1),
                   "tokens": tokens_out, "lengths": lengths, "scores": scores, "done": done}

  _, s = jax.lax.while_loop(lambda c: (c[1]["step"] < max_new) & ~c[1]["done"].all(), step,
                            (cache, state))
  return s["tokens"][:, 0], s["lengths"][:, 0], s["scores"][:, 0]


class BeamSearch:
  """The most probable continuations of token prompts under a length penalty.

  apply_fn, init_cache and context as for lineage.decode.Generator; init_cache may be
  None for a model whose cache needs its input (an encoder-decoder's needs the source),
  which then comes through every search's start_cache. Every cache leaf of rank >= 1
  must have the batch rows first (beams are copies and reorderings of rows); scalar
  leaves are shared by all rows. A top-level "static" entry of a dict cache is copied to
  the beams but never reordered: it must be the same for every beam of a row.
  """

  def __init__(self, apply_fn, init_cache, context):
    self.apply_fn, self.init_cache, self.context = apply_fn, init_cache, context

  def search(self, params, prompts, max_new_tokens, *, eos_id, beam_size=4, alpha=0.6,
             start_cache=None, bucket=16):
    """(new token ids of each prompt's best hypothesis, without the stop token; their scores).

    max_new_tokens: one limit, or one per prompt (the paper's input length + 50).
    start_cache(slots) -> a cache for len(prompts) rows, for a model whose cache holds
    more than init_cache's (an encoder-decoder's encoded source). Prompts are left-padded
    to a multiple of `bucket` and the step bound rounded up to one (the limits themselves
    are traced), so batches within a bucket share an executable; `slots` is the padded
    prompt length plus the step bound.
    """
    limits = check_limits(prompts, max_new_tokens, self.context)
    if beam_size < 1:
      raise ValueError(f"beam_size={beam_size}: it must be >= 1 (1 is greedy decoding)")
    if start_cache is None and self.init_cache is None:
      raise ValueError("this BeamSearch has no init_cache: pass start_cache(slots), the "
                       "cache holding the model's input (e.g. transformer.start_cache)")
    new = int(limits.max())
    if new == 0:
      return [[] for _ in prompts], np.zeros(len(prompts), np.float32)
    longest = max(len(p) for p in prompts)
    length = min(-(-longest // bucket) * bucket, max(longest, self.context - new))
    steps = -(-new // bucket) * bucket  # rows stop at their limits, within the context
    tokens, segment_ids, positions = left_pad(prompts, length)
    cache = (self.init_cache(len(prompts), length + steps) if start_cache is None
             else start_cache(length + steps))
    out, lengths, scores = _search(params, cache, tokens, positions, segment_ids, limits,
                                   np.int32(eos_id), np.float32(alpha), apply_fn=self.apply_fn,
                                   beam_size=beam_size, max_new=steps)
    out, lengths = np.asarray(out), np.asarray(lengths)
    scores = np.where(limits == 0, 0.0, np.asarray(scores))  # the empty output, log p = 0
    return [out[i, :lengths[i]].tolist() for i in range(len(prompts))], scores
