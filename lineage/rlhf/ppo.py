"""PPO against a reward model with a KL penalty to the SFT model (Ouyang et al. 2022;
Ziegler et al. 2019; Stiennon et al. 2020), and the pretraining mix of PPO-ptx.

It plugs into the generic loop (lineage.train.loop) as data that depends on the parameters:
`Rollouts.next_batch(params, step)` samples responses from the current policy every
`epochs * minibatches` steps, scores them, and hands out minibatches of that rollout for the
following steps; `loss_fn` is the clipped PPO objective of one minibatch. So every loop step
is one optimiser update, and checkpoints, resume, logging and the NaN guard are the loop's.

A rollout:
  1. prompts -> responses, sampled with `lineage.decode.Generator` at temperature 1, top_k 0,
     top_p 1 (the policy's own distribution), the parameters passed as arguments so the
     compiled sampler is reused as they change;
  2. per token: log-probabilities under the policy and the frozen reference (the SFT model),
     values from the value model; per response: the reward model's score at its final token,
     minus `no_end_penalty` when it never produced the end-of-text token;
  3. rewards r_t = -beta * (log pi - log pi_ref) at every response token, plus the score at
     the last one; beta from a fixed or adaptive controller (lineage.rlhf.kl), updated with
     the rollout's mean KL per response;
  4. advantages by GAE (lineage.rlhf.gae), whitened over the rollout; returns as value
     targets.
The parameters are {"policy": a GPT, "value": a RewardModel read at every position,
initialised from the reward model}. The policy and value model run without dropout: the
ratio pi / pi_old must be 1 before the first update.
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from lineage.decode import Generator, Sampling
from lineage.models import gpt
from lineage.rlhf import gae as gae_lib
from lineage.rlhf import kl as kl_lib
from lineage.rlhf import layout
from lineage.rlhf.reward import RewardModel
from lineage.train import lm_loss


@dataclasses.dataclass(frozen=True)
class Settings:
  """PPO's knobs. rollout_batch prompts per rollout, split into minibatches of
  `minibatch` rows, each seen `epochs` times; prompt_len + max_new_tokens must fit the
  context. ptx_coef: gamma of PPO-ptx (0 turns the pretraining mix off)."""
  rollout_batch: int = 64
  minibatch: int = 32
  epochs: int = 2
  prompt_len: int = 16
  max_new_tokens: int = 16
  clip_ratio: float = 0.2
  value_clip: float = 0.2
  vf_coef: float = 0.5
  gamma: float = 1.0
  lam: float = 0.95
  no_end_penalty: float = 1.0
  ptx_coef: float = 0.0

  def __post_init__(self):
    if self.rollout_batch % self.minibatch:
      raise ValueError(f"rollout_batch={self.rollout_batch} is not a multiple of "
                       f"minibatch={self.minibatch}; make it one")

  @property
  def updates_per_rollout(self):
    return self.epochs * self.rollout_batch // self.minibatch


def init_params(policy_cfg, value_cfg, rng):
  """Boxed {"policy", "value"} parameters."""
  tokens = jnp.zeros((1, 4), jnp.int32)
  policy_rng, value_rng = jax.random.split(rng)
  return {"policy": gpt.GPT(policy_cfg).init(policy_rng, tokens)["params"],
          "value": RewardModel(value_cfg).init(value_rng, tokens, method="values")["params"]}


def _forward(policy_cfg, value_cfg, params, rows):
  logits = gpt.GPT(policy_cfg).apply({"params": params["policy"]}, rows["tokens"],
                                     positions=rows["positions"],
                                     segment_ids=rows["segment_ids"])
  values = RewardModel(value_cfg).apply({"params": params["value"]}, rows["tokens"],
                                        rows["positions"], rows["segment_ids"],
                                        method="values")
  return logits, values[:, :-1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _score_rollout(policy_cfg, value_cfg, gamma, lam, params, ref_params, rm_params, rows,
                   penalty, beta):
  """Everything the updates need from one rollout, and its per-response statistics."""
  logits, values = _forward(policy_cfg, value_cfg, params, rows)
  ref_logits = gpt.GPT(policy_cfg).apply({"params": ref_params}, rows["tokens"],
                                         positions=rows["positions"],
                                         segment_ids=rows["segment_ids"])
  mask = layout.action_mask(rows)
  logp = layout.token_logprobs(logits, rows["tokens"]) * mask
  ref_logp = layout.token_logprobs(ref_logits, rows["tokens"]) * mask
  score = RewardModel(value_cfg).apply({"params": rm_params}, rows["tokens"],
                                       rows["positions"], rows["segment_ids"],
                                       method="reward") - penalty
  kl = kl_lib.k1(logp, ref_logp) * mask
  last = jnp.argmax(jnp.cumsum(mask, axis=1), axis=1)  # the last action's column
  rewards = -beta * kl + jax.nn.one_hot(last, mask.shape[1]) * score[:, None]
  advantages, returns = gae_lib.gae(rewards, values * mask, mask, gamma, lam)
  return {"old_logp": logp, "old_values": values * mask,
          "advantages": gae_lib.whiten(advantages, mask), "returns": returns,
          "stat_score": score, "stat_kl": kl.sum(1),
          "stat_entropy_rollout": (layout.entropy(logits) * mask).sum(1) /
                                  jnp.maximum(mask.sum(1), 1.0)}


def loss_fn(policy_cfg, value_cfg, settings: Settings):
  """The clipped PPO objective of a minibatch, per response token, plus PPO-ptx.

  loss = sum over tokens of [max(-A r, -A clip(r, 1 +- eps))
                             + vf_coef * max((V - R)^2, (V_old + clip(V - V_old) - R)^2) / 2]
         + ptx_coef * (mean LM loss on the pretraining batch) * tokens
  so that the loop's division by the token count leaves per-token means and gamma times
  the pretraining loss. Batch keys "stat_*" (one value per response) are logged as the
  minibatch's mean.
  """
  eps, clip_v = settings.clip_ratio, settings.value_clip

  def fn(params, batch, rng, deterministic):
    del rng, deterministic
    logits, values = _forward(policy_cfg, value_cfg, params, batch)
    mask = layout.action_mask(batch)
    n = jnp.maximum(mask.sum(), 1.0)
    logp = layout.token_logprobs(logits, batch["tokens"])
    log_ratio = (logp - batch["old_logp"]) * mask
    ratio = jnp.exp(log_ratio)
    adv = batch["advantages"]
    policy_loss = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - eps, 1 + eps)) * mask
    old_values, returns = batch["old_values"], batch["returns"]
    clipped = old_values + jnp.clip(values - old_values, -clip_v, clip_v)
    value_loss = 0.5 * jnp.maximum(jnp.square(values - returns),
                                   jnp.square(clipped - returns)) * mask
    total = policy_loss.sum() + settings.vf_coef * value_loss.sum()
    aux = {"weight": mask.sum(), "policy_loss": policy_loss.sum(),
           "value_loss": value_loss.sum(),
           "clip_fraction": ((jnp.abs(ratio - 1) > eps) * mask).sum(),
           "value_clip_fraction": ((jnp.abs(values - old_values) > clip_v) * mask).sum(),
           "approx_kl": (kl_lib.k3(batch["old_logp"], logp) * mask).sum(),
           "entropy": (layout.entropy(logits) * mask).sum()}
    if settings.ptx_coef:
      ptx_logits = gpt.GPT(policy_cfg).apply(
          {"params": params["policy"]}, batch["ptx_inputs"], positions=batch["ptx_positions"],
          segment_ids=batch["ptx_segment_ids"])
      losses, _ = lm_loss.cross_entropy(ptx_logits, batch["ptx_targets"])
      weights = batch["ptx_weights"]
      ptx = (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)
      total = total + settings.ptx_coef * ptx * n
      aux["ptx_loss"] = ptx * n
    for key in batch:
      if key.startswith("stat_"):
        aux[key.removeprefix("stat_")] = batch[key].astype(jnp.float32).mean() * n
    return total, aux
  return fn


def sample(generator, params, prompts, prompt_len, max_new_tokens, eot_id, rng):
  """(responses, whether each ended): the policy's own distribution (temperature 1, no top-k
  or top-p), responses ending with the end-of-text token when they produced it. Prompts are
  left-padded to prompt_len, so every call of one batch size shares the compiled sampler."""
  out = generator.generate(params, prompts, max_new_tokens, sampling=Sampling(1.0, 0, 1.0),
                           rng=rng, stop_tokens=(eot_id,), bucket=prompt_len)
  ended = [len(r) < max_new_tokens for r in out]
  return [r + [eot_id] if e else r for r, e in zip(out, ended)], np.asarray(ended)


class Rollouts:
  """The loop's parameter-dependent data: a rollout every `updates_per_rollout` steps, then
  its minibatches (reshuffled each epoch).

  prompts: token lists; ref_params: the frozen SFT policy; rm_params: the reward model
  (normalised); judge(prompt ids, response ids) -> float, optional: a true score logged
  beside the reward model's (the synthetic task's labeller); ptx: an iterator of LM batches
  (inputs, targets, weights, positions, segment_ids) with get_state/set_state, needed when
  ptx_coef > 0. State: the KL coefficient and the pretraining iterator's; checkpoints must
  fall between rollouts (steps that are multiples of updates_per_rollout).
  """

  def __init__(self, policy_cfg, value_cfg, settings: Settings, prompts, ref_params,
               rm_params, eot_id, controller, seed, judge=None, ptx=None):
    if settings.prompt_len + settings.max_new_tokens > policy_cfg.context:
      raise ValueError(f"prompt_len {settings.prompt_len} + max_new_tokens "
                       f"{settings.max_new_tokens} exceed the context {policy_cfg.context}")
    if settings.ptx_coef and ptx is None:
      raise ValueError("ptx_coef > 0 needs a pretraining batch iterator (ptx)")
    too_long = [i for i, p in enumerate(prompts) if len(p) > settings.prompt_len]
    if too_long:
      raise ValueError(f"{len(too_long)} prompts (e.g. #{too_long[0]}, "
                       f"{len(prompts[too_long[0]])} tokens) are longer than prompt_len "
                       f"{settings.prompt_len}; truncate them or raise ppo.prompt_len")
    self.policy_cfg, self.value_cfg, self.settings = policy_cfg, value_cfg, settings
    self.prompts, self.ref_params, self.rm_params = prompts, ref_params, rm_params
    self.eot_id, self.controller, self.seed = eot_id, controller, seed
    self.judge, self.ptx = judge, ptx
    self.generator = Generator(*gpt.decoding(policy_cfg), policy_cfg.context)
    self.buffer, self.buffer_iteration = None, None
    self.timings = {"rollout_seconds": [], "rollout_tokens": [], "score_seconds": []}

  def next_batch(self, params, step):
    iteration, index = divmod(step - 1, self.settings.updates_per_rollout)
    if index == 0:
      self.buffer, self.buffer_iteration = self.rollout(params, iteration), iteration
    elif self.buffer_iteration != iteration:
      raise RuntimeError(f"step {step} falls inside rollout {iteration}, whose samples are not "
                         "in memory: checkpoints must fall between rollouts (make "
                         "train.checkpoint_every a multiple of ppo.epochs * rollout_batch / "
                         "minibatch)")
    per_epoch = self.settings.rollout_batch // self.settings.minibatch
    epoch, m = divmod(index, per_epoch)
    order = np.random.default_rng([self.seed, iteration, epoch]).permutation(
        self.settings.rollout_batch)
    rows = order[m * self.settings.minibatch:(m + 1) * self.settings.minibatch]
    batch = {k: v[rows] for k, v in self.buffer.items()}
    if self.settings.ptx_coef:
      batch.update({f"ptx_{k}": v for k, v in next(self.ptx).items()})
    return batch

  def rollout(self, params, iteration):
    s = self.settings
    rng = np.random.default_rng([self.seed, iteration])
    chosen = rng.choice(len(self.prompts), s.rollout_batch,
                        replace=len(self.prompts) < s.rollout_batch)
    prompts = [list(self.prompts[i]) for i in chosen]
    start = time.perf_counter()
    responses, ended = sample(self.generator, params["policy"], prompts, s.prompt_len,
                              s.max_new_tokens, self.eot_id,
                              jax.random.fold_in(jax.random.PRNGKey(self.seed), iteration))
    self.timings["rollout_seconds"].append(time.perf_counter() - start)
    self.timings["rollout_tokens"].append(sum(len(r) for r in responses))
    rows = layout.rows(prompts, responses, s.prompt_len, s.max_new_tokens)
    beta = self.controller.value
    start = time.perf_counter()
    out = _score_rollout(self.policy_cfg, self.value_cfg, s.gamma, s.lam, params,
                         self.ref_params, self.rm_params, rows,
                         jnp.where(jnp.asarray(ended), 0.0, s.no_end_penalty),
                         jnp.float32(beta))
    buffer = {**rows, **{k: np.asarray(v) for k, v in out.items()}}
    self.timings["score_seconds"].append(time.perf_counter() - start)
    buffer["stat_kl_coef"] = np.full(s.rollout_batch, beta, np.float32)
    buffer["stat_ended"] = ended.astype(np.float32)
    buffer["stat_response_length"] = np.asarray([len(r) for r in responses], np.float32)
    if self.judge is not None:
      buffer["stat_true_score"] = np.asarray(
          [self.judge(p, r[:-1] if e else r) for p, r, e in zip(prompts, responses, ended)],
          np.float32)
    self.controller.update(float(buffer["stat_kl"].mean()), s.rollout_batch)
    return buffer

  def get_state(self):
    state = {"kl_coef": self.controller.value}
    if self.ptx is not None:
      state["ptx"] = self.ptx.get_state()
    return state

  def set_state(self, state):
    self.controller.value = float(state["kl_coef"])
    if self.ptx is not None:
      self.ptx.set_state(state["ptx"])
