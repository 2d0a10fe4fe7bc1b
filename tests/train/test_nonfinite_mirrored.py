"""The non-finite guard under a MirroredStrategy: both replicas skip a step whose meta-gradient
is not finite on one of them, and stop together (the slow tier, with the other strategy
checks: a subprocess that starts TensorFlow with two logical CPUs)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mirrored_replicas_skip_together():
  """Two logical CPUs, the poisoned task on the first replica only (a subprocess: the
  logical devices must be set before TensorFlow starts)."""
  out = subprocess.run([sys.executable, "-m", "tests.train.nonfinite_mirrored_check"],
                       capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report == {"replicas": 2, "skipped_step_unchanged": True, "step": 3, "skipped": 1,
                    "moved": True, "replicas_agree": True,
                    "stop": {"step": 4, "unchanged": True, "replicas_agree": True}}, report
