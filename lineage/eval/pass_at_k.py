"""Codex's pass@k (Chen et al. 2021, section 2.1): the chance that at least one of k samples
of a problem passes its tests, estimated without bias from n >= k samples of which c pass.

Drawing k of the n samples, the chance that all k fail is C(n-c, k) / C(n, k). The binomial
coefficients overflow for the paper's n = 200, so the ratio is computed as the product
prod_{i=n-c+1}^{n} (1 - k/i), as the paper's Figure 3 does. The naive estimate
1 - (1 - c/n)^k is biased low; averaging this one over problems gives the benchmark's pass@k.
"""

import numpy as np


def pass_at_k(n, c, k):
  """pass@k of one problem with n samples, c of them correct."""
  n, c, k = int(n), int(c), int(k)
  if not 0 <= c <= n:
    raise ValueError(f"c={c} correct samples out of n={n}: need 0 <= c <= n")
  if not 1 <= k <= n:
    raise ValueError(f"pass@{k} from {n} samples: k must lie in [1, n]; draw more samples "
                     "or ask for a smaller k")
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(num_samples, num_correct, ks=(1, 10, 100)):
  """{"pass@k": mean over problems} for each k in `ks` that every problem's n allows.

  num_samples: one n for all problems, or one per problem; num_correct: c per problem.
  """
  num_correct = list(num_correct)
  if not num_correct:
    raise ValueError("no problems: pass@k needs at least one problem's results")
  if np.ndim(num_samples) == 0:
    num_samples = [num_samples] * len(num_correct)
  if len(num_samples) != len(num_correct):
    raise ValueError(f"{len(num_samples)} sample counts for {len(num_correct)} problems")
  smallest = min(int(n) for n in num_samples)
  return {f"pass@{k}": float(np.mean([pass_at_k(n, c, k)
                                      for n, c in zip(num_samples, num_correct)]))
          for k in ks if k <= smallest}
