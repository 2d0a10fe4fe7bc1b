"""``python -m l2f_tf.evaluate`` on a run folder without a SavedModel says how to finish the run,
in one line (tests/test_export_bad_inputs.py checks ``evaluate_saved_model``'s errors in process
in the default tier). Slow tier: the command is a fresh process that imports TensorFlow."""

import os
import subprocess
import sys

import pytest

from l2f_tf.run_folder import RunFolder
from tests import shared_runs

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINUSOID_CONFIG = shared_runs.SINUSOID_CONFIG


def test_evaluate_cli_on_an_unfinished_run_exits_1_with_one_line(tmp_path):
  folder = RunFolder(str(tmp_path / "run"))
  os.makedirs(folder.root)
  with open(folder.config, "w") as f:
    f.write(SINUSOID_CONFIG)
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-m", "l2f_tf.evaluate", f"--saved_model={folder.root}"],
                        capture_output=True, text=True, cwd=REPO, env=env)
  assert done.returncode == 1
  assert "Traceback" not in done.stderr
  lines = [line for line in done.stderr.splitlines() if line.startswith("evaluate: ")]
  assert lines == [f"evaluate: No SavedModel in the run folder {folder.root} (no saved_model/): "
                   "it has no checkpoint yet (or it is still running). Run `python "
                   f"run_experiment.py --root_dir={folder.root}` to finish it (it resumes from "
                   f"its last checkpoint, with its operative_config.gin); it then writes "
                   f"{folder.saved_model}."]
