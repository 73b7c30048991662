"""Direct preference optimisation (Rafailov et al. 2023): the policy trained on comparisons
directly, with no reward model and no sampling.

For a chosen response y_w and a rejected y_l to one prompt x, with the frozen reference
(the SFT model) pi_ref:
  loss = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x))
                              - (log pi(y_l|x) - log pi_ref(y_l|x))])
The implicit reward is beta * (log pi - log pi_ref); beta plays the KL coefficient's part.
The reference's log-probabilities never change, so they are computed once, before training,
and travel in the batches. Comparisons of K responses become their K-choose-2 pairs.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from lineage.models import gpt
from lineage.rlhf import layout


def sequence_logprobs(model, params, rows):
  """Summed log-probability of each row's response tokens: [batch]."""
  logits = model.apply({"params": params}, rows["tokens"], positions=rows["positions"],
                       segment_ids=rows["segment_ids"])
  return (layout.token_logprobs(logits, rows["tokens"]) * layout.action_mask(rows)).sum(-1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
  """(per-pair losses, implicit reward margins), each [pairs]."""
  margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
  return -jax.nn.log_sigmoid(margin), margin


def pairs_from_comparisons(comparisons):
  """(prompt, chosen, rejected) for every pair of a comparison whose preferences differ;
  identical responses are dropped and counted: (pairs, identical)."""
  pairs, identical = [], 0
  for prompt, responses, preference in comparisons:
    for i, j in itertools.combinations(range(len(responses)), 2):
      if preference[i] == preference[j]:
        continue
      if list(responses[i]) == list(responses[j]):
        identical += 1
        continue
      chosen, rejected = (i, j) if preference[i] > preference[j] else (j, i)
      pairs.append((prompt, responses[chosen], responses[rejected]))
  if not pairs:
    raise ValueError(f"none of the {len(comparisons)} comparisons has two different responses "
                     "with different preferences; nothing to train on")
  return pairs, identical


def encode_pairs(pairs, prompt_len, response_len, eot_id):
  """{chosen_*, rejected_*: [n, length]} layout rows (responses end with end of text)."""
  out = {}
  for side, index in (("chosen", 1), ("rejected", 2)):
    rows = layout.rows([p[0] for p in pairs], [list(p[index]) + [eot_id] for p in pairs],
                       prompt_len, response_len)
    out.update({f"{side}_{k}": v for k, v in rows.items()})
  return out


def _side(batch, side):
  return {k: batch[f"{side}_{k}"] for k in ("tokens", "positions", "segment_ids",
                                             "response_mask")}


@functools.partial(jax.jit, static_argnums=0)
def _logprobs_jit(cfg, params, rows):
  return sequence_logprobs(gpt.GPT(cfg), params, rows)


def batched_logprobs(cfg, params, rows, batch_size):
  """`sequence_logprobs` of a GPT of `cfg` over many rows, in batches (the last one padded
  by wrapping around, so every batch has one shape)."""
  n = len(rows["tokens"])
  out = []
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size) % n
    out.append(np.asarray(_logprobs_jit(cfg, params, {k: v[idx] for k, v in rows.items()})))
  return np.concatenate(out)[:n]


def add_reference(cfg, ref_params, arrays, batch_size):
  """`arrays` plus ref_chosen / ref_rejected, the frozen reference's log-probabilities."""
  out = dict(arrays)
  for side in ("chosen", "rejected"):
    out[f"ref_{side}"] = batched_logprobs(cfg, ref_params, _side(arrays, side),
                                          batch_size).astype(np.float32)
  return out


def loss_fn(model, beta):
  """The loop's loss over pair batches (encode_pairs + add_reference): one weight per pair;
  aux: implicit-reward accuracy (chosen above rejected) and margin."""
  def fn(params, batch, rng, deterministic):
    del rng, deterministic
    chosen = sequence_logprobs(model, params, _side(batch, "chosen"))
    rejected = sequence_logprobs(model, params, _side(batch, "rejected"))
    losses, margin = dpo_loss(chosen, rejected, batch["ref_chosen"], batch["ref_rejected"],
                              beta)
    return losses.sum(), {"weight": jnp.float32(losses.shape[0]),
                          "reward_accuracy": (margin > 0).sum().astype(jnp.float32),
                          "reward_margin": (margin / beta).sum()}
  return fn
