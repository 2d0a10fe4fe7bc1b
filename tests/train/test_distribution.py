"""Multi-replica training (MirroredStrategy over two logical CPUs) equals single-device."""

import json
import os
import subprocess
import sys


def test_mirrored_strategy_matches_default_strategy():
  script = os.path.join(os.path.dirname(__file__), "mirrored_check.py")
  out = subprocess.run([sys.executable, script], check=True, capture_output=True, text=True)
  report = json.loads(out.stdout.strip().splitlines()[-1])
  error = report.pop("indivisible_error")
  assert "meta-batch of 3 tasks does not split evenly across the 2 replicas" in error, error
  assert len(report) == 5
  for reduction, figures in report.items():
    assert figures["max_change"] > 1e-2, (reduction, figures)  # training did move the weights
    assert figures["max_diff"] < 1e-5, (reduction, figures)
