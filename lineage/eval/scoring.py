"""Batched, jitted log-likelihood scoring of `lm_metrics.Request`s under a GPT.

Requests of any length go through one jitted function over fixed-shape
[batch, length] blocks: lengths are rounded up to a power of two (at most a few
compilations), padding rows and positions carry weight 0, and only per-request
sums and greedy flags leave the device, never the [batch, length, vocab] logits.
The LM head, the largest matmul of a small GPT with a 50k vocabulary, runs only on
the positions a request scores (LAMBADA: its last word; a sliding window: its
last `stride` tokens): the model's final hidden states are gathered at those
positions, and only then projected onto the vocabulary.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lineage.models import gpt

_MIN_BUCKET = 16


@dataclasses.dataclass
class Scores:
  """Per request: summed log-probability of its targets (nats), whether every target is the
  model's argmax, and the same with `banned_first` tokens excluded at the first target."""
  logprob: np.ndarray
  greedy: np.ndarray
  greedy_filtered: np.ndarray


def _bucket(length, max_len, smallest=_MIN_BUCKET):
  size = smallest
  while size < length:
    size *= 2
  return min(size, max_len)


class Scorer:
  """Scores requests with `params` in batches of `batch_size` rows of up to `max_len` inputs.

  `valid_vocab` masks logits of ids the tokenizer never produces (a vocabulary padded
  to a multiple of 64) so they cannot win an argmax or take probability mass.
  Requests longer than `max_len + 1` tokens keep their last `max_len + 1`.
  """

  def __init__(self, model_cfg: gpt.GPTConfig, params, *, batch_size, max_len=None,
               valid_vocab=None):
    self.model = gpt.GPT(model_cfg)
    self.params = jax.device_put(nn.unbox(params))  # Once, not per call (numpy imports).
    self.batch_size = batch_size
    self.max_len = max_len or model_cfg.context
    if self.max_len > model_cfg.context:
      raise ValueError(f"max_len={self.max_len} exceeds the model's context "
                       f"{model_cfg.context}; lower zero_shot.context")
    self.vocab_size = model_cfg.vocab_size
    self.valid_vocab = valid_vocab or model_cfg.vocab_size
    self._score = jax.jit(functools.partial(_score_block, self.model, self.valid_vocab),
                          static_argnames=("with_greedy",))

  def score(self, requests, banned_first=None, with_greedy=False):
    """Scores of `requests`, in their order. `banned_first`: ids ([vocab] bool mask) that the
    filtered greedy check excludes at each request's first target."""
    if banned_first is None:
      banned_first = np.zeros(self.vocab_size, bool)
    banned = jnp.asarray(banned_first)
    order = sorted(range(len(requests)),
                   key=lambda i: (-len(requests[i].tokens), -requests[i].num_targets))
    pending = []
    for first in range(0, len(order), self.batch_size):
      rows = [requests[i] for i in order[first:first + self.batch_size]]
      block = self._block(rows)
      pending.append(self._score(self.params, *block, banned, with_greedy=with_greedy))
    logprob = np.zeros(len(requests))
    greedy = np.zeros(len(requests), bool)
    greedy_filtered = np.zeros(len(requests), bool)
    for first, result in zip(range(0, len(order), self.batch_size), pending):
      index = order[first:first + self.batch_size]
      sums, flags, filtered = (np.asarray(x)[:len(index)] for x in result)
      logprob[index], greedy[index], greedy_filtered[index] = sums, flags, filtered
    return Scores(logprob, greedy, greedy_filtered)

  def _block(self, rows):
    """inputs [batch_size, length]; the scored positions, their targets, weights and
    first-target marks [batch_size, scored], both sizes rounded up to powers of two."""
    length = _bucket(max(min(len(r.tokens) - 1, self.max_len) for r in rows), self.max_len)
    scored = _bucket(max(min(r.num_targets, self.max_len) for r in rows), length, smallest=4)
    inputs = np.zeros((self.batch_size, length), np.int32)
    positions = np.zeros((self.batch_size, scored), np.int32)
    targets = np.zeros((self.batch_size, scored), np.int32)
    weights = np.zeros((self.batch_size, scored), np.float32)
    first = np.zeros((self.batch_size, scored), bool)
    for row, request in enumerate(rows):
      tokens = request.tokens[-(self.max_len + 1):]
      n = len(tokens) - 1
      if int(tokens.max()) >= self.valid_vocab or int(tokens.min()) < 0:
        raise ValueError(f"token ids must lie in [0, {self.valid_vocab}); the tokenizer does "
                         "not match the model's vocabulary")
      inputs[row, :n] = tokens[:-1]
      k = min(request.num_targets, n)
      positions[row, :k] = np.arange(n - k, n)
      targets[row, :k] = tokens[n - k + 1:]
      weights[row, :k] = 1.0
      first[row, 0] = True
    return inputs, positions, targets, weights, first


def _score_block(model, valid_vocab, params, inputs, positions, targets, weights, first, banned,
                 with_greedy):
  dtype = jnp.dtype(model.cfg.dtype)
  hidden = model.apply({"params": params}, inputs, method="hidden_states")
  hidden = jnp.take_along_axis(hidden, positions[..., None], axis=1)
  embedding = params["wte"]["embedding"].astype(dtype)
  logits = jnp.dot(hidden.astype(dtype), embedding.T).astype(jnp.float32)
  if valid_vocab < logits.shape[-1]:
    logits = jnp.where(jnp.arange(logits.shape[-1]) < valid_vocab, logits, -jnp.inf)
  logprobs = -optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  sums = (logprobs * weights).sum(-1)
  if not with_greedy:
    none = jnp.zeros(sums.shape, bool)
    return sums, none, none
  unscored = weights == 0
  greedy = logits.argmax(-1) == targets
  filtered = jnp.where(banned, -jnp.inf, logits).argmax(-1) == targets
  greedy_filtered = jnp.where(first, filtered, greedy)
  return sums, jnp.all(greedy | unscored, -1), jnp.all(greedy_filtered | unscored, -1)
