"""``python -m l2f_tf.compare`` says a missing run folder in one line, nothing else (the rest of
compare's console is checked in process in tests/test_quiet_tools.py). Slow tier: the command
is a fresh process that imports TensorFlow."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compare_names_a_missing_run_folder_in_one_line(tmp_path):
  missing = str(tmp_path / "nowhere")
  done = subprocess.run([sys.executable, "-m", "l2f_tf.compare", f"--run_dir={missing}"],
                        capture_output=True, text=True, cwd=REPO)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      f"compare: {missing} is not a run folder: it does not exist."]
  assert done.stdout == ""
