"""python -m l2f_tf.analyze: a kept checkpoint of the session's tiny MAML and L2F sinusoid runs
(tests/shared_runs.py: trained with the landscape logged), and a meta-RL run folder whose
summaries the test writes."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf import analyze
from l2f_tf.train import restore
from tests import shared_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder


@pytest.fixture(scope="module")
def sinusoid_runs(tmp_path_factory):
  """[maml, l2f]: summaries and checkpoints at meta-iterations 2 and 4, 6 evaluation tasks."""
  assert shared_runs.SINUSOID_RUN_STEPS == [2, 4] and shared_runs.SINUSOID_RUN_TASKS == 6
  return shared_runs.sinusoid_runs(tmp_path_factory)


def test_analyze_measures_any_kept_checkpoint(sinusoid_runs, tmp_path):
  result = analyze.analyze(sinusoid_runs[1:], str(tmp_path), num_tasks=3, step=2)
  run = result["runs"]["MAML+L2F (l2f)"]
  assert run["checkpoint_step"] == 2
  _, learner = restore.restore_learner(sinusoid_runs[1], step=2)
  _, final = restore.restore_learner(sinusoid_runs[1])
  assert not np.allclose(learner.theta()[0].numpy(), final.theta()[0].numpy())
  with pytest.raises(ValueError, match=r"no checkpoint of step 3; it keeps steps \[2, 4\]"):
    restore.restore_learner(sinusoid_runs[1], step=3)


def test_analyze_reads_a_meta_rl_runs_summaries(tmp_path):
  root = str(tmp_path / "nav_l2f")
  restore.setup_run(root, [os.path.join(GIN_PARENT, "gin/rl/navigation2d_l2f.gin")], [])
  writer = tf.summary.create_file_writer(os.path.join(root, "train"))
  with writer.as_default():
    for step in range(1, 6):
      for name in ("dense1/kernel", "output/bias"):
        tf.summary.scalar(f"gamma/{name}", 0.1 * step, step=step)
        tf.summary.scalar(f"degree_of_conflict/{name}", 10.0 * step, step=step)
  writer.close()
  out = str(tmp_path / "analysis")
  result = analyze.analyze([root], out)
  assert sorted(os.path.basename(p) for p in result["figures"]) == [
      "conflict_over_training.png", "gamma_over_training.png"]
  # What is not drawn is said, in the log and in analysis.json.
  assert [r.split(":")[0] for r in result["not_drawn"]] == ["landscape.png"]
  with open(os.path.join(out, "analysis.json")) as f:
    assert "Trainer.landscape = True" in json.load(f)["not_drawn"][0]
  run = result["runs"]["MAML+L2F (nav_l2f)"]
  assert run["kind"] == "meta_rl"
  np.testing.assert_allclose(run["gamma_over_training"]["output/bias"]["values"],
                             [0.1, 0.2, 0.3, 0.4, 0.5])


