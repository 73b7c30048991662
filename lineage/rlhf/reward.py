"""The reward model: a GPT trunk with a scalar head, trained on comparisons.

The head reads the hidden state of a sequence's final token (the end of text that closes
the response), which has attended to the whole prompt and response. Labellers rank K
responses to one prompt; InstructGPT trains on all K-choose-2 pairs of a prompt as one batch
element, loss -log sigmoid(r_chosen - r_rejected) averaged over its pairs, so a prompt with
many responses neither dominates the batch nor gets its pairs split across batches (which
overfits). After training, a bias is subtracted so that the demonstrations score 0 on
average: PPO's rewards then start near 0 for the SFT policy.

The same module, read at every position, is PPO's value function (initialised from it).
"""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lineage.models import gpt
from lineage.rlhf import layout


class RewardModel(gpt.GPT):
  """GPT plus `score_head` (embed -> 1). Its trunk's parameters have the GPT's names, so a
  GPT or SFT checkpoint loads into them and only the head starts fresh."""

  def setup(self):
    super().setup()
    self.score_head = nn.Dense(
        1, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (None,)))

  def values(self, tokens, positions=None, segment_ids=None, deterministic=True):
    """The head at every position: [batch, length]."""
    hidden = self.hidden_states(tokens, positions, segment_ids, deterministic=deterministic)
    return self.score_head(hidden.astype(jnp.float32))[..., 0]

  def reward(self, tokens, positions=None, segment_ids=None, deterministic=True):
    """The head at each row's last real token: [batch]."""
    hidden = self.hidden_states(tokens, positions, segment_ids, deterministic=deterministic)
    real = jnp.ones_like(tokens) if segment_ids is None else segment_ids
    last = hidden[jnp.arange(tokens.shape[0]), layout.last_index(real)]
    return self.score_head(last.astype(jnp.float32))[..., 0]


def init_params(model, rng):
  """Boxed parameters of a RewardModel (trunk and head)."""
  return model.init(rng, jnp.zeros((1, 4), jnp.int32), method="values")["params"]


def pair_mask(preference, valid):
  """[..., K, K]: 1 where response i is preferred to response j and both are valid."""
  better = preference[..., :, None] > preference[..., None, :]
  both = (valid[..., :, None] > 0) & (valid[..., None, :] > 0)
  return (better & both).astype(jnp.float32)


def pairwise_loss(rewards, preference, valid):
  """Per batch element: the mean of -log sigmoid(r_i - r_j) over its pairs i > j, and the
  pair count and correctly ordered count. rewards, preference, valid: [batch, K]."""
  pairs = pair_mask(preference, valid)
  margins = rewards[..., :, None] - rewards[..., None, :]
  count = pairs.sum((-2, -1))
  losses = (-jax.nn.log_sigmoid(margins) * pairs).sum((-2, -1)) / jnp.maximum(count, 1.0)
  correct = ((margins > 0) * pairs).sum((-2, -1))
  return losses, count, correct


def _score(model, params, batch, deterministic=True, rng=None):
  """Rewards [batch, K] of the rows tokens/positions/segment_ids [batch, K, length]."""
  flat = lambda x: x.reshape(-1, x.shape[-1])
  rewards = model.apply({"params": params}, flat(batch["tokens"]), flat(batch["positions"]),
                        flat(batch["segment_ids"]), deterministic, method="reward",
                        rngs=None if deterministic else {"dropout": rng})
  return rewards.reshape(batch["tokens"].shape[:2])


def loss_fn(model):
  """The loop's loss over comparison batches (see `encode_comparisons`): one weight per
  prompt; aux: pair accuracy summed per prompt and the mean chosen-minus-rejected margin."""
  def fn(params, batch, rng, deterministic):
    rewards = _score(model, params, batch, deterministic, rng)
    losses, count, correct = pairwise_loss(rewards, batch["preference"], batch["valid"])
    has_pairs = (count > 0).astype(jnp.float32)
    return (losses * has_pairs).sum(), {
        "weight": has_pairs.sum(),
        "accuracy": (correct / jnp.maximum(count, 1.0) * has_pairs).sum()}
  return fn


def encode_comparisons(comparisons, prompt_len, response_len, eot_id):
  """Comparison arrays and what was left out.

  comparisons: (prompt ids, [response ids, ...], [preference, ...]) with K responses each
  (higher preference is better; K is the most any comparison has, fewer are padded as
  invalid). Each response gets the end-of-text token the model reads. A pair whose two
  responses are identical says nothing and is dropped (counted as identical_pairs); a
  comparison left with no pair is dropped (counted as skipped).
  Returns ({tokens, positions, segment_ids: [n, K, length], preference, valid: [n, K]},
  {"identical_pairs": ..., "skipped": ...}).
  """
  k = max(len(responses) for _, responses, _ in comparisons)
  out = {"tokens": [], "positions": [], "segment_ids": [], "preference": [], "valid": []}
  identical = skipped = 0
  for prompt, responses, preference in comparisons:
    if len(responses) != len(preference):
      raise ValueError(f"a comparison has {len(responses)} responses but {len(preference)} "
                       "preferences; give one per response")
    preference = [float(p) for p in preference]
    keep, same = _distinct_pairs(responses, preference)
    identical += same
    if not keep:
      skipped += 1
      continue
    candidates = [list(r) + [eot_id] for r in responses]
    pad = k - len(candidates)
    encoded = layout.rows([prompt] * k, candidates + [[]] * pad, prompt_len, response_len)
    valid = [1.0 if i in keep else 0.0 for i in range(len(candidates))] + [0.0] * pad
    for key in ("tokens", "positions", "segment_ids"):
      out[key].append(encoded[key])
    out["preference"].append(preference + [0.0] * pad)
    out["valid"].append(valid)
  if not out["tokens"]:
    raise ValueError(f"none of the {len(comparisons)} comparisons has two different responses "
                     "with different preferences; nothing to train on")
  arrays = {key: np.asarray(v, np.float32 if key in ("preference", "valid") else np.int32)
            for key, v in out.items()}
  return arrays, {"identical_pairs": identical, "skipped": skipped}


def _distinct_pairs(responses, preference):
  """(indices of responses in at least one informative pair, identical pairs dropped).

  Two identical responses with different preferences are a labelling error; the later one
  is made invalid, so the pair cannot enter the loss."""
  keep, identical, dropped = set(), 0, set()
  for i, j in itertools.combinations(range(len(responses)), 2):
    if list(responses[i]) == list(responses[j]):
      if preference[i] != preference[j]:
        identical += 1
        dropped.add(j)
  for i, j in itertools.combinations(range(len(responses)), 2):
    if i in dropped or j in dropped or preference[i] == preference[j]:
      continue
    keep.update((i, j))
  return keep, identical


@functools.partial(jax.jit, static_argnums=0)
def _rewards_jit(cfg, params, batch):
  return _score(RewardModel(cfg), params, batch)


def score_comparisons(model, params, arrays, batch_size):
  """Rewards [n, K] of every comparison's responses, in batches (the last one padded)."""
  n = len(arrays["tokens"])
  out = []
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size) % n
    batch = {k: arrays[k][idx] for k in ("tokens", "positions", "segment_ids")}
    out.append(np.asarray(_rewards_jit(model.cfg, params, batch))[:min(batch_size, n - start)])
  return np.concatenate(out)


def pair_accuracy(rewards, preference, valid):
  """Fraction of all valid pairs ordered as the labeller ordered them, ties counted half."""
  pairs = np.asarray(pair_mask(jnp.asarray(preference), jnp.asarray(valid))) > 0
  margins = rewards[:, :, None] - rewards[:, None, :]
  wins = (margins > 0) + 0.5 * (margins == 0)
  return float(wins[pairs].mean())


def evaluator(model, arrays, batch_size):
  """The loop's evaluate hook: held-out pair accuracy and the mean reward."""
  def evaluate(params, step):
    del step
    rewards = score_comparisons(model, params, arrays, batch_size)
    valid = arrays["valid"] > 0
    return {"pair_accuracy": pair_accuracy(rewards, arrays["preference"], arrays["valid"]),
            "mean_reward": float(rewards[valid].mean())}
  return evaluate


def score_rows(model, params, rows, batch_size):
  """Rewards [n] of layout rows (tokens, positions, segment_ids: [n, length])."""
  arrays = {k: rows[k][:, None] for k in ("tokens", "positions", "segment_ids")}
  return score_comparisons(model, params, arrays, batch_size)[:, 0]


def normalised(model, params, demonstration_rows, batch_size):
  """(params with the head's bias shifted so the demonstrations score 0 on average, the
  shift)."""
  shift = float(score_rows(model, params, demonstration_rows, batch_size).mean())
  head = dict(params["score_head"])
  head["bias"] = head["bias"] - shift
  return {**params, "score_head": head}, shift
