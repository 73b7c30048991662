"""PPO's rollouts and loss on a tiny random model: the sampler is compiled once as the
parameters change, the first update's ratio is 1, the reward is the KL penalty plus the
score at the last token, the KL coefficient and the minibatches follow the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.decode import generate
from lineage.models import gpt
from lineage.rlhf import kl, layout, ppo

CFG = gpt.GPTConfig(vocab_size=13, context=16, num_layers=1, num_heads=2, embed_dim=16,
                    mlp_dim=32, dropout=0.0, attention_impl="xla")
EOT = 12
SETTINGS = ppo.Settings(rollout_batch=8, minibatch=8, epochs=2, prompt_len=4,
                        max_new_tokens=6, ptx_coef=0.0)


def _params(seed):
  boxed = jax.jit(lambda r: ppo.init_params(CFG, CFG, r))(jax.random.PRNGKey(seed))
  return jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, boxed,
                      is_leaf=lambda x: hasattr(x, "unbox"))


def _rollouts(params, controller, judge=None):
  prompts = [[1, 2], [3], [4, 5, 6], [7, 8, 9, 10]]
  return ppo.Rollouts(CFG, CFG, SETTINGS, prompts, params["policy"], params["value"], EOT,
                      controller, seed=0, judge=judge)


@pytest.mark.slow
def test_rollouts_reuse_one_compiled_sampler_and_start_at_ratio_one():
  params = _params(0)
  rollouts = _rollouts(params, kl.controller("adaptive", 0.1, target=1.0, horizon=16),
                       judge=lambda p, r: float(len(r)))
  first = rollouts.next_batch(params, 1)
  sizes = (generate._prefill._cache_size(), generate._steps._cache_size(),
           ppo._score_rollout._cache_size())
  # New parameters (as after an update), a new rollout: no new executable.
  other = _params(1)
  rollouts.next_batch(other, 1 + SETTINGS.updates_per_rollout)
  assert (generate._prefill._cache_size(), generate._steps._cache_size(),
          ppo._score_rollout._cache_size()) == sizes

  # The reference is the policy: KL zero, the reward is the score at the last action.
  assert np.allclose(first["stat_kl"], 0.0, atol=1e-5)
  mask = np.asarray(layout.action_mask(first))
  assert (mask.sum(1) == first["stat_response_length"]).all()
  assert np.allclose(first["stat_true_score"],
                     first["stat_response_length"] - first["stat_ended"])
  adv = first["advantages"][mask > 0]
  assert abs(adv.mean()) < 1e-4 and abs(adv.std() - 1) < 1e-2  # whitened

  loss_fn = jax.jit(ppo.loss_fn(CFG, CFG, SETTINGS), static_argnums=3)
  _, aux = loss_fn(params, {k: jnp.asarray(v) for k, v in first.items()}, None, False)
  assert float(aux["clip_fraction"]) == 0.0
  assert abs(float(aux["approx_kl"])) < 1e-5
  # The rows' statistics come back as sums over response tokens (the loop divides).
  assert float(aux["score"] / aux["weight"]) == pytest.approx(first["stat_score"].mean(),
                                                              rel=1e-5)


@pytest.mark.slow
def test_minibatches_cover_the_rollout_each_epoch_and_the_kl_coefficient_is_state():
  params = _params(0)
  controller = kl.controller("adaptive", 0.1, target=1.0, horizon=16)
  rollouts = _rollouts(params, controller)
  settings = ppo.Settings(rollout_batch=8, minibatch=4, epochs=2, prompt_len=4,
                          max_new_tokens=6)
  rollouts.settings = settings
  batches = [rollouts.next_batch(params, step) for step in range(1, 5)]
  for epoch in (batches[:2], batches[2:]):
    rows = np.concatenate([b["tokens"] for b in epoch])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, rollouts.buffer["tokens"]))
  # KL 0 < target: the coefficient fell, and the state carries it to a resumed run.
  assert controller.value < 0.1
  fresh = _rollouts(params, kl.controller("adaptive", 0.1, target=1.0, horizon=16))
  fresh.set_state(rollouts.get_state())
  assert fresh.controller.value == controller.value
  with pytest.raises(RuntimeError, match="checkpoints must fall between rollouts"):
    fresh.next_batch(params, 2)


def test_bad_settings_are_clear_errors():
  # The checks come before the parameters are used: none are needed to trigger them.
  with pytest.raises(ValueError, match="not a multiple of minibatch"):
    ppo.Settings(rollout_batch=10, minibatch=4)
  with pytest.raises(ValueError, match="exceed the context"):
    ppo.Rollouts(CFG, CFG, ppo.Settings(rollout_batch=8, minibatch=8, prompt_len=12,
                                        max_new_tokens=8), [[1]], None, None, EOT,
                 kl.FixedKL(0.1), 0)
  with pytest.raises(ValueError, match="longer than prompt_len"):
    ppo.Rollouts(CFG, CFG, SETTINGS, [[1] * 5], None, None, EOT, kl.FixedKL(0.1), 0)
  with pytest.raises(ValueError, match="needs a pretraining batch"):
    ppo.Rollouts(CFG, CFG, ppo.Settings(rollout_batch=8, minibatch=8, prompt_len=4,
                                        max_new_tokens=6, ptx_coef=1.0), [[1]], None, None,
                 EOT, kl.FixedKL(0.1), 0)
