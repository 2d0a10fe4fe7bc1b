"""Few-shot gin files, slow tier: every glyphs file runs end to end (tiny), and one miniImageNet
file runs through the CLI on a tiny class-folder copy (JPEGs); its SavedModel reproduces the
test figure and names what is wrong with bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from l2f_tf import evaluate, export
from tests import end_to_end
from tests.end_to_end import DEFAULT_TIER_FILES, GLYPH_FILES, REPO, VISION_TINY
from tests.fake_images import write_class_folders

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glyph_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("glyph_cache"))


@pytest.mark.parametrize("gin_file", [f for f in GLYPH_FILES if f != DEFAULT_TIER_FILES["glyphs"]])
def test_glyph_file_runs_end_to_end(gin_file, glyph_cache, tmp_path):
  end_to_end.check_glyph_file(gin_file, str(tmp_path / "run"), glyph_cache)


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
  """conv4_l2f_5shot.gin through the CLI on a tiny miniImageNet class-folder copy (JPEGs)."""
  base = tmp_path_factory.mktemp("mini_run")
  data = write_class_folders(str(base / "mini"), classes=(6, 5, 5), images_per_class=8,
                             size=20, extension=".jpg")
  root = str(base / "run")
  bindings = VISION_TINY + [f"FewShotClassification.root = '{data}'",
                     "FewShotClassification.image_size = 16",
                     "FewShotClassification.num_queries = 2"]
  subprocess.run([sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
                  "--gin_file=gin/mini_imagenet/conv4_l2f_5shot.gin"] +
                 [f"--gin_bindings={b}" for b in bindings], check=True, cwd=REPO,
                 capture_output=True)
  return root, data


def test_mini_imagenet_file_runs_and_its_saved_model_reproduces_the_test_figure(mini_run):
  root, data = mini_run
  with open(os.path.join(root, "results.json")) as f:
    results = json.load(f)
  assert results["domain"] == "mini_imagenet" and results["method"] == "MAML+L2F"
  exported = evaluate.evaluate_saved_model(
      os.path.join(root, "saved_model"), num_tasks=4, seed=20200614, distributions=["test"],
      gin_bindings=[f"FewShotClassification.root = '{data}'"])
  assert exported["test"]["accuracy_after_2_steps"]["mean"] == pytest.approx(
      results["evaluations"]["test"]["accuracy_after_2_steps"]["mean"], abs=1e-6)


def test_saved_model_names_what_is_wrong_with_the_input(mini_run):
  loaded = export.load(os.path.join(mini_run[0], "saved_model"))
  rng = np.random.default_rng(0)
  images = lambda n, size=16: rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
  labels = np.repeat(np.arange(5), 5).astype(np.int32)
  logits = loaded.predict(images(25), labels, images(7))
  assert logits.shape == (7, 5)
  with pytest.raises(ValueError,
                     match=r"query_x has shape \[7, 20, 20, 3\].*5-way 5-shot.*16x16x3"):
    loaded.predict(images(25), labels, images(7, size=20))
  with pytest.raises(ValueError, match=r"support_x has shape \[5, 16, 16, 3\].*expects support_x "
                                       r"\[25, 16, 16, 3\]"):
    loaded.predict(images(5), labels[::5], images(7))  # 1-shot input for a 5-shot model
  with pytest.raises(ValueError, match=r"labels must be in 0..4"):
    loaded.predict(images(25), labels + 1, images(7))
  with pytest.raises(ValueError, match="integer class labels"):
    loaded.predict(images(25), labels.astype(np.float32), images(7))
