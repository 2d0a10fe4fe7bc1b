"""Sinusoid gin files, slow tier: every file runs end to end (tiny bindings), and the command
line runs, resumes, evaluates the SavedModel and compares runs."""

import json
import os
import subprocess
import sys

import pytest

from tests import end_to_end
from tests.end_to_end import DEFAULT_TIER_FILES, REPO, SINUSOID_FILES, SINUSOID_TINY

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("gin_file",
                         [f for f in SINUSOID_FILES if f != DEFAULT_TIER_FILES["sinusoid"]])
def test_gin_file_runs_end_to_end(gin_file, tmp_path):
  end_to_end.check_sinusoid_file(gin_file, str(tmp_path / "run"))


def test_command_line_runs_and_resumes(tmp_path):
  root = str(tmp_path / "cli")
  args = [sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
          "--gin_file=gin/sinusoid/maml_5shot.gin"] + [f"--gin_bindings={b}" for b in SINUSOID_TINY]
  subprocess.run(args, check=True, cwd=REPO, capture_output=True)
  with open(os.path.join(root, "results.json")) as f:
    assert json.load(f)["meta_iterations"] == 4
  # The same command with more iterations continues from step 4, from the saved config.
  more = args + ["--gin_bindings=Trainer.num_iterations = 6"]
  out = subprocess.run(more, check=True, cwd=REPO, capture_output=True, text=True)
  assert "Resumed from" in out.stderr
  with open(os.path.join(root, "results.json")) as f:
    results = json.load(f)
  assert results["meta_iterations"] == 6
  # The evaluation entry point on the SavedModel, with the run's own evaluation seed, reproduces
  # the in-process figure (same tasks, same adaptation).
  from l2f_tf import evaluate
  exported = evaluate.evaluate_saved_model(os.path.join(root, "saved_model"), num_tasks=6,
                                           seed=20200614, distributions=["test"])
  # 0..the exported number of steps (the training setting).
  assert list(exported["test"]) == [f"mse_after_{k}_steps" for k in range(3)]
  assert exported["test"]["mse_after_2_steps"]["mean"] == pytest.approx(
      results["evaluations"]["test"]["mse_after_2_steps"]["mean"], rel=1e-4)
  # Comparing runs: a text table and one figure with every learner.
  from l2f_tf import compare
  assert "MAML [cli] test: mse_after_0_steps=" in compare.results_table([root])
  png = compare.compare_figure([root, root], str(tmp_path / "compare.png"))
  assert os.path.getsize(png) > 10_000
