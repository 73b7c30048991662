"""KV-cache generation for any model, with parameters passed in at every call.

Prompts of different lengths are left-padded into one batch: padding slots are
never attended to and every example keeps its own positions, so a prompt
decodes the same alone or in a batch. A prefill writes the prompts into the
cache in one call; a compiled `while_loop` then samples each token and feeds it
back, until a step bound that is itself traced. The whole generation is one such
call; stop strings (checked on the host) make it a call per chunk of steps, and a
streaming callback a call per step, all through the same executable.

The compiled functions live at module level with the model's `apply_fn` and
`init_cache` as static arguments and the parameters as ordinary ones, so every
Generator of one model shares one executable per shape, whatever the parameters
(PPO updates, pass@k over checkpoints) or the sampling values.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lineage.decode.sampling import Sampling, next_token
from lineage.decode.text import find_stop

# Steps per compiled call between host checks of stop strings: fewer wastes steps past a
# stop, more syncs with the host more often.
STOP_CHECK_EVERY = 16


def left_pad(prompts, length, pad_id=0):
  """[batch, length] tokens, segment ids (1 real, 0 pad) and per-example positions."""
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  real = np.zeros((len(prompts), length), np.int32)
  for i, prompt in enumerate(prompts):
    if prompt:
      tokens[i, length - len(prompt):] = prompt
      real[i, length - len(prompt):] = 1
  positions = np.maximum(np.cumsum(real, axis=1) - 1, 0).astype(np.int32)
  return tokens, real, positions


@functools.partial(jax.jit, static_argnames=("apply_fn", "init_cache", "max_new"))
def _prefill(params, tokens, positions, segment_ids, limits, rng, *, apply_fn, init_cache,
             max_new):
  """The cache holding the prompts, and the decoding state before the first new token."""
  batch = tokens.shape[0]
  cache = init_cache(batch, tokens.shape[1] + max_new)
  logits, cache = apply_fn(params, tokens, positions, segment_ids, cache)
  state = {"step": jnp.zeros((), jnp.int32), "tokens": jnp.zeros((batch, max_new), jnp.int32),
           "lengths": jnp.zeros((batch,), jnp.int32), "limits": limits, "done": limits <= 0,
           "last": jnp.full((batch,), -1, jnp.int32),
           "logits": logits[:, -1].astype(jnp.float32), "position": positions[:, -1], "rng": rng}
  return cache, state


@functools.partial(jax.jit, static_argnames=("apply_fn", "flags"), donate_argnames=("cache",))
def _steps(params, cache, state, end, values, stop_tokens, *, apply_fn, flags):
  """Samples a token per row and feeds it back, until step `end` or every row is done.

  A row is done after a stop token (not counted in its length) or its own limit.
  `last` holds the step's tokens, -1 where a row emitted none.
  """
  def step(carry):
    cache, s = carry
    rng, key = jax.random.split(s["rng"])
    token = next_token(s["logits"], key, flags, values)
    emitted = ~s["done"] & ~jnp.isin(token, stop_tokens)
    lengths = s["lengths"] + emitted
    position = s["position"] + ~s["done"]  # a done row stays within its context
    logits, cache = apply_fn(params, token[:, None], position[:, None],
                             jnp.ones_like(token)[:, None], cache)
    return cache, {**s, "step": s["step"] + 1, "tokens": s["tokens"].at[:, s["step"]].set(token),
                   "lengths": lengths, "done": ~emitted | (lengths >= s["limits"]),
                   "last": jnp.where(emitted, token, -1),
                   "logits": logits[:, -1].astype(jnp.float32), "position": position,
                   "rng": rng}

  return jax.lax.while_loop(lambda c: (c[1]["step"] < end) & ~c[1]["done"].all(), step,
                            (cache, state))


def _stop_token_array(stop_tokens):
  """Stop tokens padded with -1 (never a token) to a multiple of 8: a few more or fewer
  stop tokens keep the shape, and so the executable."""
  size = max(8, -(-len(stop_tokens) // 8) * 8)
  return np.array(list(stop_tokens) + [-1] * (size - len(stop_tokens)), np.int32)


class Generator:
  """Generates continuations of token prompts from a model with a KV cache.

  apply_fn(params, tokens, positions, segment_ids, cache) -> (logits, new_cache), all
  [batch, length] but logits [batch, length, vocab]; segment id 0 marks padding.
  init_cache(batch, slots) -> an empty cache with room for `slots` tokens per row.
  Both are static arguments of the compiled functions: they must be hashable, and equal
  for the same model (as `gpt.decoding(cfg)`'s are), to share executables.
  context: the most tokens (prompt plus new) a row may hold.
  """

  def __init__(self, apply_fn, init_cache, context):
    self.apply_fn, self.init_cache, self.context = apply_fn, init_cache, context

  def generate(self, params, prompts, max_new_tokens, *, sampling=Sampling(), rng=None,
               stop_tokens=(), stop_strings=(), detokenize=None, on_tokens=None, bucket=16):
    """The new token ids of each prompt, without the stop token that ended it.

    max_new_tokens: one limit, or one per prompt. stop_strings end a row once
    `detokenize(its new ids)` contains one; its ids then end with the token that completed
    it (cut the text with `cut_at_stop`). on_tokens(np.ndarray [batch]) is called after every
    step with its tokens, -1 for rows that emitted none. Prompts are left-padded to a
    multiple of `bucket`, so lengths within a bucket share an executable.
    """
    limits = check_limits(prompts, max_new_tokens, self.context)
    if bucket < 1:
      raise ValueError(f"bucket={bucket}: prompts are padded to a multiple of it, so it must be "
                       ">= 1")
    if stop_strings and detokenize is None:
      raise ValueError("stop_strings need detokenize (list[int] -> str) to read the text")
    new = int(limits.max())
    if new == 0:
      return [[] for _ in prompts]
    longest = max(len(p) for p in prompts)
    length = min(-(-longest // bucket) * bucket, max(longest, self.context - new))
    tokens, segment_ids, positions = left_pad(prompts, length)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    cache, state = _prefill(params, tokens, positions, segment_ids, limits, rng,
                            apply_fn=self.apply_fn, init_cache=self.init_cache, max_new=new)
    values, stops = sampling.values(), _stop_token_array(stop_tokens)
    every = 1 if on_tokens else STOP_CHECK_EVERY if stop_strings else new
    cut = np.full(len(prompts), -1)  # a row's length where a stop string ended it
    checked = np.zeros(len(prompts), int)  # how many of a row's ids were searched
    for end in range(every, new + every, every):
      cache, state = _steps(params, cache, state, np.int32(min(end, new)), values, stops,
                            apply_fn=self.apply_fn, flags=sampling.flags)
      if on_tokens:
        on_tokens(np.asarray(state["last"]))
      done = np.asarray(state["done"])
      if stop_strings:
        _cut_at_stop_strings(np.asarray(state["tokens"]), np.asarray(state["lengths"]),
                             checked, cut, detokenize, stop_strings)
        done = done | (cut >= 0)
        state = {**state, "done": jax.device_put(done)}
      if done.all():
        break
    out, lengths = np.asarray(state["tokens"]), np.asarray(state["lengths"])
    lengths = np.where(cut >= 0, cut, lengths)
    return [out[i, :lengths[i]].tolist() for i in range(len(prompts))]


def check_limits(prompts, max_new_tokens, context):
  """Each row's new-token limit, after checking the prompts fit the context."""
  if not prompts:
    raise ValueError("no prompts; give a list of token id lists")
  if isinstance(max_new_tokens, (int, np.integer)):
    max_new_tokens = [max_new_tokens] * len(prompts)
  if len(max_new_tokens) != len(prompts):
    raise ValueError(f"{len(max_new_tokens)} max_new_tokens for {len(prompts)} prompts; give "
                     "one limit, or one per prompt")
  for i, (prompt, limit) in enumerate(zip(prompts, max_new_tokens)):
    if not prompt:
      raise ValueError(f"prompt {i} is empty; start it with at least one token (e.g. the "
                       "tokenizer's end-of-text id)")
    if limit < 0:
      raise ValueError(f"max_new_tokens={limit} for prompt {i}; it must be >= 0")
    if len(prompt) + limit > context:
      raise ValueError(f"a prompt of {len(prompt)} tokens plus {limit} new tokens exceeds "
                       f"the model's context of {context}; shorten the prompt or "
                       "max_new_tokens")
  return np.asarray(max_new_tokens, np.int32)


def _cut_at_stop_strings(tokens, lengths, checked, cut, detokenize, stop_strings):
  """Sets `cut` for rows whose text gained a stop string: their length up to the token that
  completed it. Only rows with ids not yet searched are decoded."""
  for row in np.flatnonzero((cut < 0) & (lengths > checked)):
    ids = tokens[row, :lengths[row]].tolist()
    if find_stop(detokenize(ids), stop_strings) is not None:
      cut[row] = next((n for n in range(checked[row] + 1, len(ids))
                       if find_stop(detokenize(ids[:n]), stop_strings) is not None), len(ids))
    checked[row] = lengths[row]
