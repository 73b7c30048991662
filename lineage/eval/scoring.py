"""Batched, jitted log-likelihood scoring of `lm_metrics.Request`s under a GPT.

Requests of any length go through one jitted function over fixed-shape
[batch, length] blocks: lengths are rounded up to a power of two (at most a few
compilations), padding rows and positions carry weight 0, and only per-request
sums and greedy flags leave the device, never the [batch, length, vocab] logits.
The LM head, the largest matmul of a small GPT with a 50k vocabulary, runs only on
the positions a request scores (LAMBADA: its last word; a sliding window: its
last `stride` tokens): the model's final hidden states are gathered at those
positions, and only then projected onto the vocabulary.

The head and the log-softmax always run in float32, whatever the model's compute
dtype: bf16 logits over 50k entries would round the log-probabilities a perplexity
is made of, and turn near-ties of the argmax into coin flips.
"""

import copy
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
  """Per request: summed log-probability of its targets (nats), and whether every target is
  the model's argmax (greedy decoding would spell them)."""
  logprob: np.ndarray
  greedy: np.ndarray


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
    self._score = jax.jit(functools.partial(_score_block, self.model, self.valid_vocab))
    self._next = jax.jit(functools.partial(_next_block, self.model, self.valid_vocab))

  def with_params(self, params):
    """The same scorer, compiled functions and all, reading other parameters of the same
    shapes (a model evaluated as it trains)."""
    other = copy.copy(self)
    other.params = jax.device_put(nn.unbox(params))
    return other

  def score(self, requests):
    """Scores of `requests`, in their order."""
    results = self._in_blocks([len(r.tokens) for r in requests], lambda rows: self._score(
        self.params, *self._score_inputs([requests[i] for i in rows])))
    logprob = np.zeros(len(requests))
    greedy = np.zeros(len(requests), bool)
    for index, (sums, flags) in results:
      logprob[index], greedy[index] = sums, flags
    return Scores(logprob, greedy)

  def next_tokens(self, prefixes, banned=None):
    """The model's most likely next token after each prefix (a sequence of ids), in order;
    `banned[i]` lists ids that prefix i may not continue with."""
    banned = banned or [()] * len(prefixes)
    results = self._in_blocks([len(p) for p in prefixes], lambda rows: self._next(
        self.params, *self._next_inputs([prefixes[i] for i in rows], [banned[i] for i in rows])))
    chosen = np.zeros(len(prefixes), np.int32)
    for index, (tokens,) in results:
      chosen[index] = tokens
    return chosen

  def _in_blocks(self, lengths, run_block):
    """[(indices, per-row numpy outputs)] of `run_block` over batches of similar lengths; every
    block is dispatched before the first result is read, so the device never waits on numpy."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    blocks = [order[first:first + self.batch_size]
              for first in range(0, len(order), self.batch_size)]
    pending = [run_block(rows) for rows in blocks]
    return [(rows, [np.asarray(x)[:len(rows)] for x in result])
            for rows, result in zip(blocks, pending)]

  def _check_ids(self, tokens):
    if int(tokens.max()) >= self.valid_vocab or int(tokens.min()) < 0:
      raise ValueError(f"token ids must lie in [0, {self.valid_vocab}); the tokenizer does "
                       "not match the model's vocabulary")

  def _score_inputs(self, rows):
    """inputs [batch_size, length]; the scored positions, their targets and weights
    [batch_size, scored], both sizes rounded up to powers of two."""
    length = _bucket(max(min(len(r.tokens) - 1, self.max_len) for r in rows), self.max_len)
    scored = _bucket(max(min(r.num_targets, self.max_len) for r in rows), length, smallest=4)
    inputs = np.zeros((self.batch_size, length), np.int32)
    positions = np.zeros((self.batch_size, scored), np.int32)
    targets = np.zeros((self.batch_size, scored), np.int32)
    weights = np.zeros((self.batch_size, scored), np.float32)
    for row, request in enumerate(rows):
      tokens = request.tokens[-(self.max_len + 1):]
      self._check_ids(tokens)
      n = len(tokens) - 1
      inputs[row, :n] = tokens[:-1]
      k = min(request.num_targets, n)
      positions[row, :k] = np.arange(n - k, n)
      targets[row, :k] = tokens[n - k + 1:]
      weights[row, :k] = 1.0
    return inputs, positions, targets, weights

  def _next_inputs(self, prefixes, banned):
    """inputs [batch_size, length], each row's last position [batch_size], and its banned ids
    [batch_size, width] (-1 = none), the sizes rounded up to powers of two."""
    length = _bucket(max(min(len(p), self.max_len) for p in prefixes), self.max_len)
    width = _bucket(max(len(b) for b in banned), 1 << 30, smallest=4)
    inputs = np.zeros((self.batch_size, length), np.int32)
    last = np.zeros(self.batch_size, np.int32)
    banned_ids = np.full((self.batch_size, width), -1, np.int32)
    for row, (prefix, ids) in enumerate(zip(prefixes, banned)):
      tokens = np.asarray(prefix, np.int32)[-self.max_len:]
      self._check_ids(tokens)
      inputs[row, :len(tokens)] = tokens
      last[row] = len(tokens) - 1
      banned_ids[row, :len(ids)] = ids
    return inputs, last, banned_ids


def _logits_at(model, valid_vocab, params, inputs, positions):
  """float32 logits [batch, scored, vocab] at `positions` [batch, scored] of `inputs`."""
  hidden = model.apply({"params": params}, inputs, method="hidden_states")
  hidden = jnp.take_along_axis(hidden, positions[..., None], axis=1).astype(jnp.float32)
  logits = jnp.dot(hidden, params["wte"]["embedding"].astype(jnp.float32).T,
                   precision=jax.lax.Precision.HIGHEST)
  if valid_vocab < logits.shape[-1]:
    logits = jnp.where(jnp.arange(logits.shape[-1]) < valid_vocab, logits, -jnp.inf)
  return logits


def _score_block(model, valid_vocab, params, inputs, positions, targets, weights):
  logits = _logits_at(model, valid_vocab, params, inputs, positions)
  logprobs = -optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  greedy = (logits.argmax(-1) == targets) | (weights == 0)
  return (logprobs * weights).sum(-1), jnp.all(greedy, -1)


def _next_block(model, valid_vocab, params, inputs, last, banned):
  logits = _logits_at(model, valid_vocab, params, inputs, last[:, None])[:, 0]
  vocab = logits.shape[-1]
  # Unused slots (-1) point past the vocabulary, where mode="drop" ignores them.
  mask = jax.vmap(lambda ids: jnp.zeros(vocab, bool).at[jnp.where(ids < 0, vocab, ids)].set(
      True, mode="drop"))(banned)
  return (jnp.where(mask, -jnp.inf, logits).argmax(-1),)
