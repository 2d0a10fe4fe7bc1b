"""LEO gin files, slow tier: every glyph file runs end to end (tiny), and a miniImageNet file
runs through the CLI on pickles in the exact format of LEO's release and its SavedModel
reproduces the test figure and equals the learner."""

import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from l2f_tf import evaluate, export
from l2f_tf.train import restore
from tests import end_to_end
from tests.end_to_end import DEFAULT_TIER_FILES, LEO_GLYPH_FILES, LEO_TINY, REPO, write_leo_pickles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glyph_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("glyph_cache"))


@pytest.mark.parametrize("gin_file", [f for f in LEO_GLYPH_FILES
                                      if f != DEFAULT_TIER_FILES["leo"]])
def test_glyph_file_runs_end_to_end(gin_file, glyph_cache, tmp_path):
  end_to_end.check_leo_glyph_file(gin_file, str(tmp_path / "run"), glyph_cache)


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("leo_mini")
  data = write_leo_pickles(str(base / "leo_embeddings"))
  root = str(base / "run")
  bindings = LEO_TINY + [f"FewShotEmbeddings.root = '{data}'", "FewShotEmbeddings.num_queries = 3"]
  subprocess.run([sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
                  "--gin_file=gin/leo/mini_imagenet_leo_l2f_5shot.gin"] +
                 [f"--gin_bindings={b}" for b in bindings], check=True, cwd=REPO,
                 capture_output=True)
  return root, data


def test_mini_imagenet_file_runs_and_its_saved_model_reproduces_the_test_figure(mini_run):
  root, data = mini_run
  with open(os.path.join(root, "results.json")) as f:
    results = json.load(f)
  assert results["domain"] == "mini_imagenet_leo" and results["method"] == "LEO+L2F"
  exported = evaluate.evaluate_saved_model(
      os.path.join(root, "saved_model"), num_tasks=4, seed=20200614, distributions=["test"],
      gin_bindings=[f"FewShotEmbeddings.root = '{data}'"])
  assert exported["test"]["accuracy_after_2_steps"]["mean"] == pytest.approx(
      results["evaluations"]["test"]["accuracy_after_2_steps"]["mean"], abs=1e-6)


def test_saved_model_equals_the_learner_and_checks_its_inputs(mini_run):
  """The export's logits are the restored learner's on the same (normalised) task."""
  root, data = mini_run
  loaded = export.load(os.path.join(root, "saved_model"))
  gin.clear_config()
  domain, learner = restore.restore_learner(root, gin_bindings=[
      f"FewShotEmbeddings.root = '{data}'"])
  batch = next(iter(domain.eval_batches("test", 2, preprocessed=False)))
  logits = loaded.predict(*(np.asarray(f[0]) for f in batch[:3]))
  normalised = next(iter(domain.eval_batches("test", 2)))
  adaptation = learner.adapt(normalised.support_x[0], normalised.support_y[0])
  expected = learner.forward(adaptation.fast_weights, normalised.query_x[0]).numpy()
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(5), 5).astype(np.int32)
  with pytest.raises(ValueError, match=r"support_x has shape \[25, 64\].*\[25, 640\]"):
    loaded.predict(rng.normal(size=(25, 64)).astype(np.float32), labels,
                   rng.normal(size=(3, 640)).astype(np.float32))
  with pytest.raises(ValueError, match=r"exactly K=5 support examples of each of the 5 "
                                       r"classes.*got per class \[6 4 5 5 5\]"):
    unbalanced = labels.copy()
    unbalanced[5] = 0
    loaded.predict(rng.normal(size=(25, 640)).astype(np.float32), unbalanced,
                   rng.normal(size=(3, 640)).astype(np.float32))
  with pytest.raises(ValueError, match=r"labels must be in 0..4"):
    loaded.predict(rng.normal(size=(25, 640)).astype(np.float32), labels + 1,
                   rng.normal(size=(3, 640)).astype(np.float32))
