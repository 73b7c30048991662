"""lineage.rlhf's pieces against plain computations: GAE, the KL estimators and controllers,
the response-only SFT mask and packing, the K-way pairwise loss, DPO, the row layout."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.models import gpt
from lineage.rlhf import dpo, gae, kl, layout, reward, sft
from lineage.train import lm_loss

TINY = gpt.GPTConfig(vocab_size=11, context=16, num_layers=1, num_heads=2, embed_dim=16,
                     mlp_dim=32, dropout=0.0, attention_impl="xla")


def _init_gpt(seed):
  """A TINY GPT's parameters, initialised under jit (eager initialisation dispatches every
  op on its own, seconds on a busy machine)."""
  init = jax.jit(lambda r: gpt.GPT(TINY).init(r, jnp.zeros((1, 4), jnp.int32))["params"])
  return init(jax.random.PRNGKey(seed))


def _numpy_gae(rewards, values, mask, gamma, lam):
  """The textbook loop over each row's actions, compacted (the mask's gaps removed)."""
  adv = np.zeros_like(rewards)
  for row in range(rewards.shape[0]):
    steps = np.flatnonzero(mask[row])
    running, next_value = 0.0, 0.0
    for t in steps[::-1]:
      delta = rewards[row, t] + gamma * next_value - values[row, t]
      running = delta + gamma * lam * running
      adv[row, t] = running
      next_value = values[row, t]
  return adv, (adv + values) * mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5)])
def test_gae_matches_a_plain_loop_with_gaps_in_the_mask(gamma, lam):
  rng = np.random.default_rng(0)
  rewards, values = rng.normal(size=(3, 9)), rng.normal(size=(3, 9))
  mask = np.array([[0, 0, 1, 1, 1, 1, 0, 0, 0],      # one response
                   [0, 1, 1, 0, 0, 1, 1, 1, 0],      # two assistant turns
                   [1, 1, 1, 1, 1, 1, 1, 1, 1]], np.float64)
  expected_adv, expected_ret = _numpy_gae(rewards, values, mask, gamma, lam)
  adv, ret = gae.gae(jnp.asarray(rewards, jnp.float32), jnp.asarray(values, jnp.float32),
                     jnp.asarray(mask), gamma, lam)
  np.testing.assert_allclose(adv, expected_adv, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ret, expected_ret, rtol=1e-5, atol=1e-5)


def test_whiten_over_the_mask_only():
  x = jnp.array([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
  mask = jnp.array([[1, 1, 0], [1, 1, 0]])
  out = np.asarray(gae.whiten(x, mask))
  np.testing.assert_allclose(out[:, :2].mean(), 0.0, atol=1e-6)
  np.testing.assert_allclose(out[:, :2].std(), 1.0, atol=1e-3)
  assert (out[:, 2] == 0).all()


def test_kl_estimators_against_exact_kl():
  rng = np.random.default_rng(1)
  for _ in range(3):
    p = rng.dirichlet(np.ones(5))
    q = rng.dirichlet(np.ones(5))
    exact = float((p * np.log(p / q)).sum())
    x = rng.choice(5, size=400_000, p=p)
    logp, logq = jnp.log(p[x]), jnp.log(q[x])
    k1, k2, k3 = (float(kl.ESTIMATORS[k](logp, logq).mean()) for k in ("k1", "k2", "k3"))
    assert k1 == pytest.approx(exact, abs=0.01)  # unbiased
    assert k3 == pytest.approx(exact, abs=0.01)  # unbiased
    assert (np.asarray(kl.k3(logp, logq)) >= -1e-7).all()  # never negative
    del k2
  # k2 is biased, but for nearby distributions its expectation is the KL to second order.
  p = rng.dirichlet(np.ones(5))
  q = 0.95 * p + 0.05 * rng.dirichlet(np.ones(5))
  exact = float((p * np.log(p / q)).sum())
  x = rng.choice(5, size=400_000, p=p)
  k2 = float(kl.k2(jnp.log(p[x]), jnp.log(q[x])).mean())
  assert k2 == pytest.approx(exact, rel=0.1)


def test_adaptive_controller_follows_ziegler_et_al():
  c = kl.controller("adaptive", 0.2, target=6.0, horizon=10_000)
  # KL 9 -> error 0.5, clipped to 0.2; 512 samples: beta *= 1 + 0.2 * 512 / 10000.
  assert c.update(9.0, 512) == pytest.approx(0.2 * (1 + 0.2 * 0.0512))
  before = c.value
  # KL 5.4 -> error -0.1 (inside the clip).
  assert c.update(5.4, 1000) == pytest.approx(before * (1 - 0.1 * 0.1))
  before = c.value
  assert c.update(0.0, 1000) == pytest.approx(before * (1 - 0.2 * 0.1))  # clipped at -0.2
  fixed = kl.controller("fixed", 0.05)
  assert fixed.update(100.0, 64) == 0.05
  with pytest.raises(ValueError, match="target > 0"):
    kl.controller("adaptive", 0.1, target=0.0, horizon=10)
  with pytest.raises(ValueError, match="adaptive or fixed"):
    kl.controller("pid", 0.1)


def test_pairwise_loss_with_four_responses_matches_brute_force():
  rng = np.random.default_rng(2)
  rewards = rng.normal(size=(2, 4)).astype(np.float32)
  preference = np.array([[3, 1, 2, 0], [1, 1, 0, 2]], np.float32)  # ties in row 2
  valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.float32)  # row 2: 3 responses
  losses, count, correct = reward.pairwise_loss(jnp.asarray(rewards), jnp.asarray(preference),
                                                jnp.asarray(valid))
  for row in range(2):
    terms, right = [], 0
    for i, j in itertools.combinations(range(4), 2):
      if not (valid[row, i] and valid[row, j]) or preference[row, i] == preference[row, j]:
        continue
      w, l_ = (i, j) if preference[row, i] > preference[row, j] else (j, i)
      margin = rewards[row, w] - rewards[row, l_]
      terms.append(-math.log(1 / (1 + math.exp(-margin))))
      right += margin > 0
    assert count[row] == len(terms)
    assert correct[row] == right
    assert losses[row] == pytest.approx(np.mean(terms), rel=1e-5)
  assert count[0] == 6  # all 4-choose-2 pairs of the first prompt


def test_sft_mask_covers_only_the_response_and_packing_keeps_examples_apart():
  eot = 10
  tokens, mask = sft.example([1, 2, 3], [4, 5], eot)
  assert tokens == [1, 2, 3, 4, 5, 10] and mask == [0, 0, 0, 1, 1, 1]
  examples = [sft.example([1, 2], [3], eot), sft.example([4], [5, 6], eot),
              sft.example([7], [], eot), sft.example([8, 9, 1], [2, 3, 4], eot)]
  packed = sft.pack(examples[:2] + [([7, eot], [0, 0])] + examples[3:], seq_len=8)
  assert packed.skipped_empty == 1  # [7, eot] with nothing to learn
  a = packed.arrays
  # Row 0: [1 2 3 eot] then [4 5 6 eot]: 3 + 3 pairs; row 1 the third example (6 pairs).
  np.testing.assert_array_equal(a["inputs"][0], [1, 2, 3, 4, 5, 6, 0, 0])
  np.testing.assert_array_equal(a["targets"][0], [2, 3, 10, 5, 6, 10, 0, 0])
  np.testing.assert_array_equal(a["weights"][0], [0, 1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(a["segment_ids"][0], [1, 1, 1, 2, 2, 2, 0, 0])
  np.testing.assert_array_equal(a["positions"][0], [0, 1, 2, 0, 1, 2, 0, 0])
  np.testing.assert_array_equal(a["weights"][1], [0, 0, 1, 1, 1, 1, 0, 0])

  # The packed loss is the sum of each example's response loss computed alone.
  model = gpt.GPT(TINY)
  params = _init_gpt(0)
  loss_sum, aux = jax.jit(lm_loss.lm_loss_fn(model), static_argnums=3)(
      params, {k: jnp.asarray(v) for k, v in a.items()}, None, True)
  apply = jax.jit(lambda p, t: model.apply({"params": p}, t))
  expected = 0.0
  for toks, m in (examples[0], examples[1], examples[3]):
    logits = apply(params, jnp.asarray([toks[:-1]]))
    logp = jax.nn.log_softmax(logits[0])
    expected += sum(-float(logp[t, toks[t + 1]]) for t in range(len(toks) - 1) if m[t + 1])
  assert float(loss_sum) == pytest.approx(expected, rel=1e-4)
  assert float(aux["weight"]) == 2 + 3 + 4

  with pytest.raises(ValueError, match="seq_len"):
    sft.pack([sft.example([1] * 8, [2, 3], eot)], seq_len=8)
  with pytest.raises(ValueError, match="none has a trained token"):
    sft.pack([([1, eot], [0, 0])], seq_len=8)
  kept, skipped = sft.examples([([1], [2]), ([3], []), ([4], [5, 6])], eot)
  assert skipped == 1 and [t for t, _ in kept] == [[1, 2, eot], [4, 5, 6, eot]]
  with pytest.raises(ValueError, match="empty prompt"):
    sft.example([], [1], eot)


def test_epoch_batches_resume_where_they_left_off():
  arrays = {"x": np.arange(10)}
  a = sft.EpochBatches(arrays, 4, seed=3)
  first = [next(a)["x"].tolist() for _ in range(5)]
  b = sft.EpochBatches(arrays, 4, seed=3)
  b.set_state(a.get_state())
  c = sft.EpochBatches(arrays, 4, seed=3)
  [next(c) for _ in range(5)]
  assert next(b)["x"].tolist() == next(c)["x"].tolist()
  assert len(set(sum(first[:2], []))) == 8  # one epoch's batches never repeat a row
  assert first[:2] != first[2:4]  # the next epoch is reshuffled


def test_rows_layout_and_its_errors():
  r = layout.rows([[1, 2], [3]], [[4], []], prompt_len=3, response_len=2, pad_id=0)
  np.testing.assert_array_equal(r["tokens"], [[0, 1, 2, 4, 0], [0, 0, 3, 0, 0]])
  np.testing.assert_array_equal(r["segment_ids"], [[0, 1, 1, 1, 0], [0, 0, 1, 0, 0]])
  np.testing.assert_array_equal(r["positions"], [[0, 0, 1, 2, 2], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(r["response_mask"], [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(layout.last_index(jnp.asarray(r["segment_ids"])), [3, 2])
  with pytest.raises(ValueError, match="more than the prompt length 3"):
    layout.rows([[1, 2, 3, 4]], [[5]], 3, 2)
  with pytest.raises(ValueError, match="prompt 0 is empty"):
    layout.rows([[]], [[5]], 3, 2)
  with pytest.raises(ValueError, match="more than the response length"):
    layout.rows([[1]], [[5, 6, 7]], 3, 2)


def test_comparisons_drop_identical_responses_and_count_them():
  comparisons = [([1, 2], [[3], [4], [3]], [2, 1, 0]),   # responses 0 and 2 identical
                 ([5], [[6], [6]], [1, 0]),              # only an identical pair: skipped
                 ([7], [[8], []], [1, 0])]               # an empty response is a response
  arrays, counts = reward.encode_comparisons(comparisons, prompt_len=2, response_len=2,
                                             eot_id=9)
  assert counts == {"identical_pairs": 2, "skipped": 1}
  assert arrays["tokens"].shape == (2, 3, 4)
  np.testing.assert_array_equal(arrays["valid"], [[1, 1, 0], [1, 1, 0]])
  np.testing.assert_array_equal(arrays["tokens"][1, 1], [0, 7, 9, 0])  # empty + end of text
  pairs, identical = dpo.pairs_from_comparisons(comparisons)
  assert identical == 2 and len(pairs) == 3 - 1 + 1


@pytest.mark.slow
def test_reward_model_reads_the_final_token():
  model = reward.RewardModel(TINY)
  params = jax.jit(lambda r: reward.init_params(model, r))(jax.random.PRNGKey(0))
  params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                        is_leaf=lambda x: hasattr(x, "unbox"))
  params["score_head"]["kernel"] = jax.random.normal(jax.random.PRNGKey(1), (16, 1))
  rows = layout.rows([[1, 2], [3]], [[4, 9], [9]], 2, 3)
  got = jax.jit(lambda p, r: model.apply({"params": p}, r["tokens"], r["positions"],
                                         r["segment_ids"], method="reward"))(params, rows)
  values = jax.jit(lambda p, t: model.apply({"params": p}, t, method="values"))
  for i, toks in enumerate([[1, 2, 4, 9], [3, 9]]):
    alone = values(params, jnp.asarray([toks]))[0, -1]
    assert float(got[i]) == pytest.approx(float(alone), rel=1e-4, abs=1e-5)
  shifted, shift = reward.normalised(model, params, rows, batch_size=2)
  scores = reward.score_rows(model, shifted, rows, batch_size=2)
  assert abs(scores.mean()) < 1e-5 and shift == pytest.approx(float(got.mean()), rel=1e-4)


@pytest.mark.slow
def test_dpo_loss_matches_brute_force():
  model = gpt.GPT(TINY)
  params, ref = _init_gpt(0), _init_gpt(1)
  pairs = [([1, 2], [3, 4], [5]), ([6], [7], [8, 9, 1])]
  arrays = dpo.encode_pairs(pairs, prompt_len=3, response_len=4, eot_id=10)
  arrays = dpo.add_reference(TINY, ref, arrays, batch_size=2)
  beta = 0.3
  loss_sum, aux = jax.jit(dpo.loss_fn(model, beta), static_argnums=3)(
      params, {k: jnp.asarray(v) for k, v in arrays.items()}, None, True)
  apply = jax.jit(lambda p, t: model.apply({"params": p}, t))

  def brute_logprob(p, prompt, response):
    toks = list(prompt) + list(response) + [10]
    logp = jax.nn.log_softmax(apply(p, jnp.asarray([toks[:-1]]))[0])
    return sum(float(logp[t - 1, toks[t]]) for t in range(len(prompt), len(toks)))

  expected = 0.0
  for prompt, chosen, rejected in pairs:
    margin = beta * ((brute_logprob(params, prompt, chosen) - brute_logprob(ref, prompt, chosen))
                     - (brute_logprob(params, prompt, rejected) -
                        brute_logprob(ref, prompt, rejected)))
    expected += math.log1p(math.exp(-margin))
  assert float(loss_sum) == pytest.approx(expected, rel=1e-4)
  assert float(aux["weight"]) == 2
