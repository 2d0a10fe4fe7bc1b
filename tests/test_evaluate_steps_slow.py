"""``python -m l2f_tf.evaluate`` on the session's shared sinusoid export prints and writes every
step count (tests/test_evaluate_steps.py checks the same numbers in process in the default
tier). Slow tier: the command is a fresh process that imports TensorFlow and loads the export."""

import json
import os
import subprocess
import sys

import pytest

from tests import shared_runs

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(run folder,): the session's shared sinusoid export (max_steps=5)."""
  return (shared_runs.sinusoid_export_run(tmp_path_factory),)


def test_evaluate_command_prints_and_writes_every_step_count(run, tmp_path):
  folder = run[0]
  output = str(tmp_path / "eval.json")
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-m", "l2f_tf.evaluate", f"--saved_model={folder.root}",
                         "--num_tasks=3", "--num_steps=4", "--distribution=test",
                         f"--output={output}"], capture_output=True, text=True, cwd=REPO, env=env)
  assert done.returncode == 0, done.stderr[-2000:]
  lines = [line for line in done.stdout.splitlines() if line.startswith("test mse_after_")]
  assert [line.split(":")[0] for line in lines] == [f"test mse_after_{k}_steps" for k in range(5)]
  with open(output) as f:
    written = json.load(f)
  assert list(written["test"]) == [f"mse_after_{k}_steps" for k in range(5)]
  assert all(set(v) >= {"mean", "ci95", "n"} for v in written["test"].values())
