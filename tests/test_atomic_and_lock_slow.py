"""run_experiment.py refuses a folder another run holds, and turns a bad dataset root into one
line, leaving a folder the corrected command is not refused in (tests/test_atomic_and_lock.py
checks the lock and the folder handling in process). Slow tier: each command is a fresh
process that imports TensorFlow."""

import os
import signal
import subprocess
import sys
import time

import pytest

from l2f_tf import __main__ as cli
from l2f_tf import run_folder
from l2f_tf.train import restore
from tests.test_atomic_and_lock import HOLDER

pytestmark = pytest.mark.slow


def test_a_second_run_into_a_busy_folder_is_refused_by_the_command(tmp_path):
  """run_experiment.py names the process that holds the folder, exits 1, and writes nothing
  into the folder."""
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    started = time.time()
    result = subprocess.run(
        [sys.executable, "run_experiment.py", f"--root_dir={tmp_path}",
         "--gin_bindings=Trainer.num_iterations = 1"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
        timeout=300)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert result.returncode == 1, result.stderr
  assert f"Another run is using {tmp_path}: PID {holder.pid}" in result.stderr
  assert "Traceback" not in result.stderr
  assert sorted(os.listdir(tmp_path)) == [".lock"]
  assert time.time() - started < 120


def test_a_bad_dataset_root_is_one_line_and_the_fixed_command_starts_afresh(tmp_path):
  """The command line turns a user error into one line and exit status 1 (no traceback); the
  folder it leaves never trained, so the corrected command is not refused as another
  experiment."""
  root = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "run_experiment.py", f"--root_dir={root}",
       "--gin_file=gin/mini_imagenet/conv4_l2f_5shot.gin",
       f"--gin_bindings=FewShotClassification.root = '{tmp_path / 'missing'}'"],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)), timeout=300)
  assert result.returncode == 1, result.stderr
  assert f"Dataset root {tmp_path / 'missing'} does not exist" in result.stderr
  assert "The dataset root is the gin binding FewShotClassification.root" in result.stderr
  assert "Traceback" not in result.stderr and "cuInit" not in result.stderr
  assert not os.path.exists(root)  # the folder it made held nothing but its config
  # A folder left with anything else is kept (the command removes only a folder it created);
  # one that never trained is not refused.
  restore.setup_run(str(root), ["gin/sinusoid/maml_5shot.gin"], [])
  (root / "notes.txt").write_text("mine")
  cli.remove_unused_folder(str(root))
  assert sorted(os.listdir(root)) == [".lock", "notes.txt", "operative_config.gin"]
  try:
    restore.setup_run(str(root), ["gin/sinusoid/l2f_5shot.gin"], [])  # not refused
  finally:
    run_folder.release_locks()
  os.remove(root / "notes.txt")
  cli.remove_unused_folder(str(root))
  assert not os.path.exists(root)
