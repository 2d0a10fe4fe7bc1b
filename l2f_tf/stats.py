"""Summary statistics with error bars."""

import math
from typing import Dict, Sequence

import numpy as np


def mean_and_ci95(values: Sequence[float]) -> Dict[str, float]:
  """Mean, 95% confidence half-width (1.96 * sample std / sqrt(n)), n, and diverged count.

  Adaptation can diverge on tasks far from training (inf or nan loss); such values are kept
  (the mean becomes inf/nan, honestly) and counted in "num_non_finite".
  """
  values = np.asarray(values, dtype=np.float64).reshape(-1)
  if values.size == 0:
    raise ValueError("mean_and_ci95 needs at least one value.")
  n = values.size
  with np.errstate(invalid="ignore", over="ignore"):
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    mean = float(values.mean())
  return {"mean": mean, "ci95": 1.96 * std / math.sqrt(n), "n": int(n),
          "num_non_finite": int(np.sum(~np.isfinite(values)))}


def t_quantile_975(df: float) -> float:
  """The 0.975 quantile of Student's t with ``df`` (> 0, possibly fractional: Welch) degrees of
  freedom: the factor of a 95% CI of a mean from a few values (a handful of training seeds),
  where 1.96 would be far too narrow (n = 3: 4.30). Bisection on the t CDF, integrated with
  Simpson's rule (no SciPy needed); accurate to about 1e-6."""
  if not df > 0:
    raise ValueError(f"t_quantile_975 needs df > 0, got {df}.")
  log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

  def mass(x: float) -> float:  # P(0 < T < x); x = tan(u) keeps the heavy tails integrable
    upper = math.atan(x)
    u = np.linspace(0.0, upper, 2001)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(np.tan(u) ** 2 / df)) / np.cos(u) ** 2
    h = upper / 2000
    return float(h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum()
                          + 2 * density[2:-1:2].sum()))

  low, high = 0.0, 1.0
  while mass(high) < 0.475:
    low, high = high, 2 * high
  for _ in range(60):
    middle = (low + high) / 2
    low, high = (middle, high) if mass(middle) < 0.475 else (low, middle)
  return (low + high) / 2


def mean_and_t_ci95(values: Sequence[float]) -> Dict[str, float]:
  """Mean and 95% CI half-width t(n-1) * std / sqrt(n) of a few independent runs (seeds):
  the error bar of a mean over training runs, where :func:`mean_and_ci95` (1.96) is for the
  hundreds of test episodes of one run. Needs at least 2 values."""
  values = np.asarray(values, dtype=np.float64).reshape(-1)
  if values.size < 2:
    raise ValueError("mean_and_t_ci95 needs at least 2 values (runs) for a spread.")
  n = values.size
  std = float(values.std(ddof=1))
  return {"mean": float(values.mean()), "ci95": t_quantile_975(n - 1) * std / math.sqrt(n),
          "std": std, "n": int(n)}


def difference_t_ci95(first: Sequence[float], second: Sequence[float]) -> Dict[str, float]:
  """mean(first) - mean(second) with Welch's 95% CI, for two sets of independent runs that
  are not paired (two implementations, each over its own seeds)."""
  a = np.asarray(first, dtype=np.float64).reshape(-1)
  b = np.asarray(second, dtype=np.float64).reshape(-1)
  if a.size < 2 or b.size < 2:
    raise ValueError("difference_t_ci95 needs at least 2 runs on each side.")
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  se = math.sqrt(va + vb)
  if se == 0.0:
    return {"mean": float(a.mean() - b.mean()), "ci95": 0.0, "df": float(a.size + b.size - 2)}
  df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
  return {"mean": float(a.mean() - b.mean()), "ci95": t_quantile_975(df) * se, "df": float(df)}
