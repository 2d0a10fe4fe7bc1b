"""``analyze`` draws every figure of the session's tiny MAML and L2F sinusoid runs
(tests/shared_runs.py) and writes the measures behind them. Slow tier: the landscape and the
attenuation sweep are measured at two checkpoints of two runs; tests/test_analyze.py (default
tier) measures a kept checkpoint and reads a meta-RL run, tests/analysis/ checks each measure. The command line's one-line error is a fresh process."""

import json
import os
import subprocess
import sys

import pytest

from l2f_tf import analyze
from tests import shared_runs

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sinusoid_runs(tmp_path_factory):
  """[maml, l2f]: summaries and checkpoints at meta-iterations 2 and 4, 6 evaluation tasks."""
  assert shared_runs.SINUSOID_RUN_STEPS == [2, 4] and shared_runs.SINUSOID_RUN_TASKS == 6
  return shared_runs.sinusoid_runs(tmp_path_factory)


def test_analyze_writes_every_figure_of_two_supervised_runs(sinusoid_runs, tmp_path):
  out = str(tmp_path / "analysis")
  result = analyze.analyze(sinusoid_runs, out, num_tasks=6, sweep_gammas=(0.0, 0.5, 1.0))
  names = sorted(os.path.basename(p) for p in result["figures"])
  assert result["not_drawn"] == []
  assert names == ["conflict_over_training.png", "conflict_per_task.png", "gamma_per_layer.png",
                   "landscape.png", "manual_attenuation_maml.png"]
  for path in result["figures"]:
    assert os.path.getsize(path) > 10_000, path
  with open(os.path.join(out, "analysis.json")) as f:
    saved = json.load(f)
  maml, l2f = saved["runs"]["MAML (maml)"], saved["runs"]["MAML+L2F (l2f)"]
  # Summaries at steps 2 and 4, six measures; conflict per tensor.
  assert maml["landscape_over_training"]["beta_smoothness"]["steps"] == [2, 4]
  assert len(l2f["conflict_over_training"]) == 6
  assert set(l2f["gamma"]) == set(l2f["tensors"]) and "attenuation_sweep" not in l2f
  assert l2f["per_task_conflict"]["dense1/kernel"]["n"] == 6
  for name, value in l2f["landscape_attenuated_minus_unattenuated"].items():
    assert value["mean"] == pytest.approx(
        l2f["landscape_at_checkpoint"][name]["mean"]
        - l2f["landscape_at_checkpoint_without_attenuation"][name]["mean"], abs=1e-9)
  assert "landscape_at_checkpoint_without_attenuation" not in maml
  sweep = maml["attenuation_sweep"]
  assert sweep["layers"] == ["dense1", "dense2", "output"] and sweep["gammas"] == [0, 0.5, 1]
  assert sweep["metric"] == "mse_after_2_steps"
  # The same 6 test tasks as the run's own evaluation: the unscaled figure is results.json's.
  with open(os.path.join(sinusoid_runs[0], "results.json")) as f:
    evaluated = json.load(f)["evaluations"]["test"]["mse_after_2_steps"]["mean"]
  assert sweep["unscaled"]["mean"] == pytest.approx(evaluated, rel=1e-6)
  for row in sweep["paired_difference"]:
    assert row[-1]["mean"] == 0.0 and row[-1]["ci95"] == 0.0


def test_command_line_names_what_to_fix(tmp_path):
  out = subprocess.run([sys.executable, "-m", "l2f_tf.analyze",
                        f"--run_dir={tmp_path / 'nowhere'}", f"--out_dir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True)
  assert out.returncode == 1 and "is not a run folder" in out.stderr
  assert "Traceback" not in out.stderr
