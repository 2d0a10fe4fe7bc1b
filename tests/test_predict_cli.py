"""``python -m l2f_tf.predict`` in a subprocess (slow tier: TensorFlow starts twice): it prints
one line per image, writes the JSON, notes transductive batch norm, and exits 1 with one line
on a mistake."""

import json
import os
import subprocess
import sys

import pytest

from l2f_tf import predict
from l2f_tf.export import image_folders
from tests.test_predict import REPO, folders, models, support_dir  # pylint: disable=unused-import

pytestmark = pytest.mark.slow


def test_command_line_prints_writes_json_and_exits_1_on_a_mistake(models, folders, tmp_path):
  output = tmp_path / "out" / "preds.json"
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  run = lambda *flags: subprocess.run([sys.executable, "-m", "l2f_tf.predict", *flags],
                                      capture_output=True, text=True, cwd=str(tmp_path), env=env)
  query = os.path.join(folders[1], "q0.bmp")
  loaded, support = models["transductive"], support_dir(folders)
  done = run(f"--saved_model={loaded.path}", f"--support_dir={support}", f"--query={folders[1]}",
             f"--query={query}", f"--output={output}")
  assert done.returncode == 0, done.stderr[-3000:]
  expected = loaded.classify(support, [folders[1], query])  # all five in one call
  assert done.stdout.splitlines() == predict.prediction_lines(expected)
  assert done.stdout.splitlines()[0] == f"{query}\t{expected[0]['class']}\t" \
      f"{expected[0]['probability']:.4f}"
  notes = [line for line in done.stderr.splitlines() if line.startswith("predict: note: ")]
  assert notes == [f"predict: note: {image_folders.TRANSDUCTIVE_NOTE}"]
  written = json.loads(output.read_text())
  assert written == {"saved_model": loaded.path, "batch_norm": "transductive",
                     "support_dir": support,
                     "classes": ["class_a", "class_b", "class_c"],
                     "predictions": expected}
  done = run(f"--saved_model={tmp_path}", f"--support_dir={support}", f"--query={query}")
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert [line for line in done.stderr.splitlines() if line.startswith("predict: ")] == [
      f"predict: No SavedModel at {tmp_path}: it has no saved_model.pb and is not a run folder "
      "(no operative_config.gin). Pass a run folder or its saved_model/ directory."]
