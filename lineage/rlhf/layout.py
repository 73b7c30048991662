"""How prompts and responses sit in one token array, for every RLHF model (reward model,
policy, value function, reference).

A row is the prompt left-padded to a fixed prompt length, then the response, right-padded
to a fixed response length: every response starts in the same column, which is the layout
`lineage.decode.Generator` samples in (left-padded prompts, per-row positions), so the
log-probabilities scored here are those the sampler drew from. Nothing assumes one turn: a
row is tokens plus a `response_mask` marking which tokens the model is trained or scored on,
and a multi-turn dialogue is a row whose mask covers every assistant turn.
"""

import jax
import jax.numpy as jnp
import numpy as np


def rows(prompts, responses, prompt_len, response_len, pad_id=0):
  """Token rows {tokens, segment_ids, positions, response_mask}, each [n, prompt_len +
  response_len] int32, from lists of token ids. segment id 1 marks real tokens, 0 padding.

  A prompt must hold at least one token and at most `prompt_len`; a response at most
  `response_len` (it may be empty: the mask is then all zero and the row is its prompt).
  """
  if len(prompts) != len(responses):
    raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; give one "
                     "response per prompt")
  n, width = len(prompts), prompt_len + response_len
  tokens = np.full((n, width), pad_id, np.int32)
  real = np.zeros((n, width), np.int32)
  mask = np.zeros((n, width), np.int32)
  for i, (prompt, response) in enumerate(zip(prompts, responses)):
    if not len(prompt):
      raise ValueError(f"prompt {i} is empty; start every prompt with at least one token")
    if len(prompt) > prompt_len:
      raise ValueError(f"prompt {i} has {len(prompt)} tokens, more than the prompt length "
                       f"{prompt_len}; truncate it (keep its end) or raise the prompt length "
                       "(prompt length + response length must fit the model's context)")
    if len(response) > response_len:
      raise ValueError(f"response {i} has {len(response)} tokens, more than the response "
                       f"length {response_len}; truncate it or raise the response length")
    tokens[i, prompt_len - len(prompt):prompt_len] = prompt
    real[i, prompt_len - len(prompt):prompt_len + len(response)] = 1
    tokens[i, prompt_len:prompt_len + len(response)] = response
    mask[i, prompt_len:prompt_len + len(response)] = 1
  positions = np.maximum(np.cumsum(real, axis=1) - 1, 0).astype(np.int32)
  return {"tokens": tokens, "segment_ids": real, "positions": positions, "response_mask": mask}


def token_logprobs(logits, tokens):
  """log p(tokens[:, t + 1] | tokens[:, :t + 1]) for t < length - 1: [batch, length - 1].

  Position t of the result is the action token t + 1; `response_mask[:, 1:]` says which
  of them the policy chose."""
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def entropy(logits):
  """The entropy of each next-token distribution that chose an action: [batch, length - 1]."""
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  return -(jnp.exp(logp) * logp).sum(-1)


def last_index(segment_ids):
  """The column of each row's last real token: [batch] (a reward model reads it)."""
  width = segment_ids.shape[1]
  return width - 1 - jnp.argmax(segment_ids[:, ::-1] > 0, axis=1)


def action_mask(batch):
  """response_mask aligned with `token_logprobs`: 1 where position t's next token is an
  action."""
  return batch["response_mask"][:, 1:].astype(jnp.float32)
