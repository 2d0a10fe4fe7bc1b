"""``benchmarks/vision_profile.py``: a real profiler trace of a tiny meta-iteration, summarised
into the per-layer, per-op-type and per-op tables."""

import os
import subprocess
import sys

import pytest

# A benchmark script run end to end under the profiler (10 s of the default tier's 5 minutes):
# the slow tier (docs/testing.md).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_of_a_tiny_step_names_every_layer_kind(tmp_path):
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "vision_profile.py"), "--size=16",
       "--case=1,1,0,0,1", "--iterations=1", "--top=5", f"--logdir={tmp_path}"],
      capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  text = out.stdout
  assert "s wall per meta-iteration under the profiler" in text
  layer_rows = {line.split("|")[1].strip() for line in text.splitlines()
                if line.startswith("| ") and line.count("|") == 4}
  assert {"conv", "bn", "pool", "relu"} <= layer_rows, text
  assert "_MklNativeConv2D" in text or "Conv2D" in text
  assert any(name.endswith(".xplane.pb") for _, _, files in os.walk(tmp_path) for name in files)
