"""--mode=eval: a tuned policy (PPO or DPO) against the SFT model it started from.

Both answer the same prompts (each prompt samples_per_prompt times, temperature 1, the
policies' own distributions); the i-th answer of one is paired with the i-th of the other,
and a pair is won, lost or tied by the reward model's score and, on the synthetic task, by
the hidden labeller's. The win rate counts a tie as half. Also reported: each model's mean
scores, how often it ends its answer, its length, and the policy's KL to the SFT model
(log pi - log pi_sft summed over its own answers' tokens, averaged).
"""

import os

import jax
import numpy as np

from lineage.decode import Generator
from lineage.milestones.instructgpt import data as data_lib
from lineage.milestones.instructgpt import stages
from lineage.models import gpt
from lineage.rlhf import dpo, layout, ppo, reward


def answers(cfg, model_cfg, params, prompts, eot_id, seed):
  """(responses, ended) for `prompts`, in batches of eval.batch_size (the last padded)."""
  generator = Generator(*gpt.decoding(model_cfg), model_cfg.context)
  bs, out, ended = cfg.eval.batch_size, [], []
  for start in range(0, len(prompts), bs):
    chunk = [prompts[(start + i) % len(prompts)] for i in range(bs)]
    responses, done = ppo.sample(generator, params, chunk, cfg.data.prompt_len,
                                 cfg.data.response_len, eot_id,
                                 jax.random.fold_in(jax.random.PRNGKey(seed), start))
    keep = min(bs, len(prompts) - start)
    out += responses[:keep]
    ended += list(done[:keep])
  return out, np.asarray(ended)


def win_rate(a, b):
  return float(np.mean((a > b) + 0.5 * (a == b)))


def compare(cfg, sft_params, policy, rm, data, seed=0):
  """The policy against the SFT model: win rates, mean scores, KL; and a few answers."""
  model_cfg = stages.model_config(cfg)
  eot = data.tokenizer.eot_id
  prompts = [p for p in data.prompts for _ in range(cfg.eval.samples_per_prompt)]
  result, scored = {}, {}
  for name, params in (("sft", sft_params), ("policy", policy)):
    responses, ended = answers(cfg, model_cfg, params, prompts, eot, seed)
    rows = layout.rows(prompts, responses, cfg.data.prompt_len, cfg.data.response_len)
    rm_scores = reward.score_rows(reward.RewardModel(model_cfg), rm, rows, cfg.eval.batch_size)
    texts = [r[:-1] if e else r for r, e in zip(responses, ended)]
    scored[name] = {"rm": rm_scores, "rows": rows, "texts": texts}
    result.update({f"{name}_rm_score": float(rm_scores.mean()),
                   f"{name}_ended": float(ended.mean()),
                   f"{name}_length": float(np.mean([len(t) for t in texts]))})
    if data.judge is not None:
      scored[name]["true"] = np.asarray([data.judge(p, t) for p, t in zip(prompts, texts)])
      result[f"{name}_true_score"] = float(scored[name]["true"].mean())
  result["win_rate_rm"] = win_rate(scored["policy"]["rm"], scored["sft"]["rm"])
  if data.judge is not None:
    result["win_rate_true"] = win_rate(scored["policy"]["true"], scored["sft"]["true"])
  rows = scored["policy"]["rows"]
  bs = cfg.eval.batch_size
  result["kl_to_sft"] = float(np.mean(dpo.batched_logprobs(model_cfg, policy, rows, bs) -
                                      dpo.batched_logprobs(model_cfg, sft_params, rows, bs)))
  decode = data.tokenizer.decode
  result["examples"] = [{"prompt": decode(prompts[i]), "sft": decode(scored["sft"]["texts"][i]),
                         "policy": decode(scored["policy"]["texts"][i])}
                        for i in range(0, len(prompts), max(1, len(prompts) // 6))][:6]
  return result


def run_eval(cfg, workdir):
  """Win rates of eval.policy against the SFT run (init_from), written to summary.json."""
  if not cfg.init_from or not cfg.eval.policy:
    raise ValueError("--mode=eval needs --config.init_from=DIR (the SFT run) and "
                     "--config.eval.policy=DIR (a PPO or DPO run)")
  data = data_lib.load(cfg)
  result = compare(cfg, stages.policy_params(cfg, cfg.init_from),
                   stages.policy_params(cfg, cfg.eval.policy),
                   stages.reward_params(cfg, cfg.ppo.reward_model, data), data)
  os.makedirs(workdir, exist_ok=True)
  return stages.write_summary(workdir, {"policy": cfg.eval.policy, "sft": cfg.init_from,
                                        **result})
