"""``benchmarks/vision_floor.py`` and ``benchmarks/vision_inner_steps.py`` run as commands on a
tiny case (16x16 images, one inner step); the authors' side of the sweep is unavailable here
(an unreachable URL and an empty scratch folder), which the sweep reports in one line."""

import json
import os
import subprocess
import sys

import pytest

# Benchmark scripts run end to end (tens of seconds of tracing): the slow tier (docs/testing.md).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout


def test_floor_counts_times_and_compares_with_the_step():
  text = _run("vision_floor.py", "--size=16", "--case=1,1,0,0,1", "--kernel_repeats=2",
              "--repeats=1", "--warmup=1")
  assert "traced: " in text and " operations in the step's graphs" in text
  assert "| Conv2DBackpropFilter |" in text and "| all | |" in text
  assert "convolutions timed alone, back to back: " in text
  assert "the whole step: " in text


def test_floor_trace_only_stops_after_the_graph_size():
  text = _run("vision_floor.py", "--size=16", "--case=1,2,0,0,1", "--trace_only")
  assert text.startswith("traced: ") and "| all |" not in text


def test_inner_steps_sweep_without_the_authors_writes_table_figure_and_json(tmp_path):
  text = _run("vision_inner_steps.py", "--size=16", "--steps=1,2", "--repeats=1", "--warmup=1",
              f"--reference_dir={tmp_path / 'scratch'}",
              "--reference_url=https://example.invalid/L2F",
              f"--figure={tmp_path / 'steps.png'}", f"--output={tmp_path / 'results.json'}")
  assert "Authors' reference unavailable" in text
  header = next(line for line in text.splitlines() if line.startswith("| inner steps |"))
  assert "l2f_tf default" in header and "authors" not in header
  assert any(line.startswith("| 2 | ") for line in text.splitlines())
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["l2f_tf default (sequential)"]) == {"1", "2"}
  assert results["l2f_tf plain (one tape)"]["2"]["peak_mb"] > 0
  drawn = json.loads((tmp_path / "steps.json").read_text())  # the figure's numbers
  assert drawn["panels"][0]["series"]["l2f_tf default (sequential)"]["x"] == [1.0, 2.0]
