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
