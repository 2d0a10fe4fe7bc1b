"""Multi-replica training (MirroredStrategy over two logical CPUs) equals single-device."""

import json
import os
import subprocess
import sys

import pytest

from tests.train.distributed_runs import REPO, SINUSOID, assert_same_training, run_one_process

pytestmark = pytest.mark.slow


def test_mirrored_strategy_matches_default_strategy():
  script = os.path.join(os.path.dirname(__file__), "mirrored_check.py")
  out = subprocess.run([sys.executable, script], check=True, capture_output=True, text=True)
  report = json.loads(out.stdout.strip().splitlines()[-1])
  error = report.pop("indivisible_error")
  assert "meta-batch of 3 tasks does not split evenly across the 2 replicas" in error, error
  assert len(report) == 4
  for reduction, figures in report.items():
    assert figures["max_change"] > 1e-2, (reduction, figures)  # training did move the weights
    assert figures["max_diff"] < 1e-5, (reduction, figures)


def test_command_line_mirrored_run_equals_the_default_run(tmp_path):
  """run_experiment.py --strategy=mirrored over two logical CPUs: same checkpoint as the
  one-device run (to 1e-5), and the evaluation, export and figure work on mirrored weights."""
  gin_file, bindings = SINUSOID
  root, reference = str(tmp_path / "mirrored"), str(tmp_path / "default")
  command = [sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
             f"--gin_file={gin_file}", "--strategy=mirrored"]
  command += [f"--gin_bindings={b}" for b in bindings + ["make_strategy.num_cpu_devices = 2"]]
  out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "mirroring over 2 logical CPU devices" in out.stderr
  run_one_process(reference, gin_file, bindings)
  assert_same_training(root, reference)
  for name in ("results.json", "saved_model/saved_model.pb", "test_tasks.png"):
    assert os.path.exists(os.path.join(root, name)), name
