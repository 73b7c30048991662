"""KV-cache decoding: greedy, temperature, top-k and top-p sampling with stop tokens.

Prompts of different lengths are left-padded into one batch: padding slots are
never attended to and every example keeps its own positions, so a prompt
decodes the same alone or in a batch. Prefill writes the prompts into the
cache in one call; each new token is then one cached step. `generate` runs all
steps inside a single compiled `while_loop`; `stream` calls a compiled step
from Python and yields tokens as they come. Neither recompiles per token.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lineage.models import gpt


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  temperature: float = 1.0
  top_k: int = 0  # 0: no top-k filter
  top_p: float = 1.0  # 1.0: no nucleus filter
  greedy: bool = False
  stop_tokens: tuple = ()


def filter_logits(logits, top_k=0, top_p=1.0):
  """Sets logits outside the top-k and outside the top-p nucleus to -inf."""
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each token
    kept = jnp.where(before < top_p, sorted_logits, jnp.inf)
    threshold = kept.min(axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, -jnp.inf, logits)
  return logits


def next_token(logits, rng, sampling: SamplingConfig):
  if sampling.greedy:
    return logits.argmax(-1).astype(jnp.int32)
  logits = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
  return jax.random.categorical(rng, logits).astype(jnp.int32)


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


class Decoder:
  """Compiled prefill and decode steps for one model, cached per shape."""

  def __init__(self, cfg: gpt.GPTConfig, params, sampling=SamplingConfig()):
    self.cfg, self.params, self.sampling = cfg, params, sampling
    self.model = gpt.GPT(cfg)
    self.prefill = jax.jit(self._prefill, static_argnums=(4,))
    self.step = jax.jit(self._step)
    self.generate_fused = jax.jit(self._generate, static_argnums=(4, 5))

  def _prefill(self, params, tokens, segment_ids, positions, slots):
    cache = gpt.init_cache(self.cfg, tokens.shape[0], slots)
    logits, cache = self.model.apply({"params": params}, tokens, positions=positions,
                                     segment_ids=segment_ids, cache=cache)
    return logits[:, -1], cache, positions[:, -1]

  def _step(self, params, logits, cache, last_position, rng, done):
    """Samples one token per example from `logits`, then runs it through the model."""
    token = next_token(logits, rng, self.sampling)
    stop = jnp.isin(token, jnp.asarray(self.sampling.stop_tokens, jnp.int32))
    done_now = done | stop
    position = last_position + 1
    logits, cache = self.model.apply({"params": params}, token[:, None],
                                     positions=position[:, None], cache=cache)
    return token, done_now, logits[:, -1], cache, position

  def _generate(self, params, tokens, segment_ids, positions, max_new_tokens, slots, rng):
    logits, cache, last = self._prefill(params, tokens, segment_ids, positions, slots)
    batch = tokens.shape[0]
    out = jnp.zeros((batch, max_new_tokens), jnp.int32)
    lengths = jnp.zeros((batch,), jnp.int32)
    done = jnp.zeros((batch,), bool)

    def cond(carry):
      i, _, _, _, _, done, _, _ = carry
      return (i < max_new_tokens) & ~done.all()

    def body(carry):
      i, out, lengths, logits, cache, done, last, rng = carry
      rng, key = jax.random.split(rng)
      token, now_done, logits, cache, last = self._step(params, logits, cache, last, key, done)
      out = out.at[:, i].set(token)
      lengths = lengths + (~now_done).astype(jnp.int32)
      return i + 1, out, lengths, logits, cache, now_done, last, rng

    carry = (jnp.zeros((), jnp.int32), out, lengths, logits, cache, done, last, rng)
    _, out, lengths, *_ = jax.lax.while_loop(cond, body, carry)
    return out, lengths

  def _pad(self, prompts, max_new_tokens, bucket):
    longest = max(len(p) for p in prompts)
    if longest == 0:
      raise ValueError("every prompt is empty; give at least one token per prompt")
    if longest + max_new_tokens > self.cfg.context:
      raise ValueError(f"a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds "
                       f"the model's context of {self.cfg.context}; shorten the prompt or "
                       "--max_new_tokens")
    length = min(-(-longest // bucket) * bucket, self.cfg.context - max_new_tokens)
    return left_pad(prompts, length), length + max_new_tokens

  def generate(self, prompts, max_new_tokens, rng=None, bucket=16):
    """Completions (lists of new token ids, stop token excluded) for each prompt."""
    (tokens, segment_ids, positions), slots = self._pad(prompts, max_new_tokens, bucket)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    out, lengths = self.generate_fused(self.params, tokens, segment_ids, positions,
                                       max_new_tokens, slots, rng)
    out, lengths = np.asarray(out), np.asarray(lengths)
    return [out[i, :lengths[i]].tolist() for i in range(len(prompts))]

  def stream(self, prompts, max_new_tokens, rng=None, bucket=16):
    """Yields new tokens [batch] per step, -1 once stopped (stop tokens too, as in generate)."""
    (tokens, segment_ids, positions), slots = self._pad(prompts, max_new_tokens, bucket)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    logits, cache, last = self.prefill(self.params, tokens, segment_ids, positions, slots)
    done = jnp.zeros((len(prompts),), bool)
    for _ in range(max_new_tokens):
      rng, key = jax.random.split(rng)
      token, done_now, logits, cache, last = self.step(self.params, logits, cache, last, key, done)
      yield np.where(np.asarray(done_now), -1, np.asarray(token))
      done = done_now
      if bool(done.all()):
        return


@functools.partial(jax.jit, static_argnums=(0, 3))
def greedy_by_recomputation(model, params, tokens, max_new_tokens):
  """Greedy decoding that reruns the whole sequence per token: the slow reference."""
  def body(i, seq):
    logits = model.apply({"params": params}, seq)
    token = logits[:, tokens.shape[1] + i - 1].argmax(-1)
    return seq.at[:, tokens.shape[1] + i].set(token)
  seq = jnp.pad(tokens, ((0, 0), (0, max_new_tokens)))
  return jax.lax.fori_loop(0, max_new_tokens, body, seq)[:, tokens.shape[1]:]
