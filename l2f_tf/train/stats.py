"""Summary statistics with error bars."""

import math
from typing import Dict, Sequence

import numpy as np


def mean_and_ci95(values: Sequence[float]) -> Dict[str, float]:
  """Mean, 95% confidence half-width (1.96 * sample std / sqrt(n)) and n."""
  values = np.asarray(values, dtype=np.float64).reshape(-1)
  if values.size == 0:
    raise ValueError("mean_and_ci95 needs at least one value.")
  n = values.size
  std = float(values.std(ddof=1)) if n > 1 else 0.0
  return {"mean": float(values.mean()), "ci95": 1.96 * std / math.sqrt(n), "n": int(n)}
