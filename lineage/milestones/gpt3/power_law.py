"""Power laws L = a * x^-b (+ c), fitted the way scaling-law papers read their plots.

Without c the fit is a straight line in log-log space (least squares on log L), which is
what GPT-3's Figure 3.1 draws. With an irreducible term c > 0 the loss flattens towards c:
c is found by a search over [0, min L), each candidate fitted as a line in log(L - c), and
the one with the smallest squared error in L itself kept. R^2 is reported in the space
that was fitted (log L for the pure power law, L with c), so it says how straight the
points are where the fit claims they are.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  a: float
  b: float
  c: float
  r2: float

  def __call__(self, x):
    return self.a * np.asarray(x, float) ** -self.b + self.c

  def label(self, name="x"):
    offset = f" + {self.c:.3g}" if self.c else ""
    return f"L = {self.a:.3g} * {name}^-{self.b:.3f}{offset} (R^2 {self.r2:.3f})"


def _line(log_x, log_y):
  slope, intercept = np.polyfit(log_x, log_y, 1)
  return slope, intercept


def _r2(y, fitted):
  residual = np.sum((y - fitted) ** 2)
  total = np.sum((y - np.mean(y)) ** 2)
  return 1.0 - residual / total if total > 0 else float(residual == 0)


def _check(x, y):
  x, y = np.asarray(x, float), np.asarray(y, float)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"x and y must be 1-D and of one length; got shapes {x.shape} and {y.shape}")
  if len(x) < 3:
    raise ValueError(f"a power-law fit needs at least 3 points; got {len(x)}")
  if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x * y)):
    raise ValueError("a power-law fit needs finite, positive x and y (sizes, FLOPs, losses)")
  return x, y


def fit(x, y, offset=False, grid=400):
  """The least-squares PowerLaw through (x, y); `offset` also fits the constant c."""
  x, y = _check(x, y)
  log_x = np.log(x)
  if not offset:
    slope, intercept = _line(log_x, np.log(y))
    fitted = intercept + slope * log_x
    return PowerLaw(float(np.exp(intercept)), float(-slope), 0.0,
                    float(_r2(np.log(y), fitted)))
  best = None
  for c in np.linspace(0.0, y.min(), grid, endpoint=False):
    slope, intercept = _line(log_x, np.log(y - c))
    law = PowerLaw(float(np.exp(intercept)), float(-slope), float(c), 0.0)
    error = np.sum((law(x) - y) ** 2)
    if best is None or error < best[0]:
      best = (error, law)
  law = best[1]
  return dataclasses.replace(law, r2=float(_r2(y, law(x))))
