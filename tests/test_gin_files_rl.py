"""Meta-RL gin files, slow tier: every file runs end to end (few tasks, short horizon), two
runs compare, and the LVC inner objective is one binding away."""

import os

import gin
import pytest

from l2f_tf.train import experiment, restore
from tests import end_to_end
from tests.end_to_end import DEFAULT_TIER_FILES, GIN_PARENT, RL_FILES, RL_TINY

pytestmark = pytest.mark.slow


# Run and checked once, then read by its own file's test and by the comparison of two runs.
SHARED_FILE = "gin/rl/navigation2d_maml.gin"


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
  """The run folder of SHARED_FILE, checked end to end (tiny bindings)."""
  root = str(tmp_path_factory.mktemp("shared") / "run")
  end_to_end.check_rl_file(SHARED_FILE, root)
  gin.clear_config()
  return root


@pytest.mark.parametrize("gin_file", [f for f in RL_FILES if f != DEFAULT_TIER_FILES["rl"]])
def test_rl_gin_file_runs_end_to_end(gin_file, tmp_path, request):
  if gin_file == SHARED_FILE:
    request.getfixturevalue("shared_run")  # checks it
  else:
    end_to_end.check_rl_file(gin_file, str(tmp_path / "run"))


def test_compare_two_rl_runs(tmp_path, shared_run):
  from l2f_tf import compare
  root = str(tmp_path / "navigation2d_l2f")
  restore.setup_run(root, [os.path.join(GIN_PARENT, "gin", "rl", "navigation2d_l2f.gin")],
                    RL_TINY + ["MetaRLTrainer.num_iterations = 1"])
  experiment.run_experiment(root)
  roots = [shared_run, root]
  assert ("MAML+L2F (reinforce) [navigation2d_l2f] test: return_after_0_steps="
          in compare.results_table(roots))
  png = compare.compare_figure(roots, str(tmp_path / "cmp.png"))
  assert os.path.getsize(png) > 5_000


def test_evaluate_a_meta_rl_run_with_later_steps_lr(tmp_path):
  """python -m l2f_tf.evaluate on a meta-RL run folder: the returns training reports, the
  later steps at a bound rate, and L2F's theta before attenuation."""
  import json
  import subprocess
  import sys
  from l2f_tf import evaluate
  root = str(tmp_path / "navigation2d_l2f")
  restore.setup_run(root, [os.path.join(GIN_PARENT, "gin", "rl", "navigation2d_l2f.gin")],
                    RL_TINY + ["MetaRLTrainer.num_iterations = 1"])
  experiment.run_experiment(root)
  with open(os.path.join(root, "results.json")) as f:
    trained = json.load(f)["evaluations"]["test"]
  # Same tasks and seeds as training's own evaluation: the same figures.
  same = evaluate.evaluate_saved_model(root, num_tasks=2, seed=20200614, num_steps=2)["test"]
  for key in ("return_after_0_steps", "return_after_2_steps",
              "return_after_0_steps_without_attenuation"):
    assert same[key]["mean"] == trained[key]["mean"], key
  shorter = evaluate.evaluate_saved_model(root, num_tasks=2, seed=20200614, num_steps=2,
                                          gin_bindings=["MetaLearner.later_steps_lr = 0.001"])
  assert shorter["test"]["return_after_1_steps"] == same["return_after_1_steps"]
  assert shorter["test"]["return_after_2_steps"] != same["return_after_2_steps"]
  out = subprocess.run([sys.executable, "-m", "l2f_tf.evaluate", f"--saved_model={root}",
                        "--num_tasks=2", "--num_steps=1", f"--output={tmp_path / 'e.json'}"],
                       capture_output=True, text=True, cwd=os.path.dirname(GIN_PARENT))
  assert out.returncode == 0, out.stderr
  assert "test return_after_0_steps_without_attenuation: " in out.stdout
  with open(tmp_path / "e.json") as f:
    assert json.load(f)["test"]["return_after_1_steps"]["n"] == 2


def test_lvc_inner_objective_from_a_binding(tmp_path):
  import numpy as np
  import tensorflow as tf
  from l2f_tf.domains.meta_rl import MetaRLDomain
  from l2f_tf.rl import policy_gradient as pg
  root = str(tmp_path / "run")
  restore.setup_run(root, [os.path.join(GIN_PARENT, "gin", "rl", "navigation2d_l2f.gin")],
                   RL_TINY + ["MetaRLDomain.inner_objective = 'lvc'",
                           "MetaRLTrainer.num_iterations = 1"])
  assert experiment.run_experiment(root)["meta_iterations"] == 1
  with open(os.path.join(root, "operative_config.gin")) as f:
    assert "MetaRLDomain.inner_objective = 'lvc'" in f.read()
  rng = np.random.default_rng(0)
  y = pg.pack_targets(tf.constant(rng.normal(size=(5, 2))), tf.constant(rng.normal(size=5)),
                      tf.ones(5, tf.float64))
  y_pred = tf.constant(rng.normal(size=(5, 4)))
  for name, loss in (("lvc", pg.lvc_loss), ("reinforce", pg.reinforce_loss)):
    assert float(MetaRLDomain(inner_objective=name).loss_fn(y, y_pred)) == float(loss(y, y_pred))
  with pytest.raises(ValueError, match="inner_objective must be one of"):
    MetaRLDomain(inner_objective="dice")
  with pytest.raises(ValueError, match="MetaRLDomain.averaging must be one of"):
    MetaRLDomain(averaging="episode")


def test_a_meta_iteration_with_the_curvature_on_half_the_tasks(tmp_path):
  """MetaRLTrainer.curvature_subsample = 0.5, compiled: 2 of 4 tasks x 10 x 10 steps give
  400 action means for the 116 weights, and the step is accepted within the KL limit."""
  import keras
  import numpy as np
  from l2f_tf.domains.meta_rl import MetaRLDomain
  from l2f_tf.meta.learner import MetaLearner
  from l2f_tf.train.meta_rl_trainer import MetaRLTrainer
  domain = MetaRLDomain("Navigation2D", meta_batch_size=4, trajectories_per_task=10,
                        horizon=10, hidden_units=(8, 8))
  keras.utils.set_random_seed(0)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.1)
  trainer = MetaRLTrainer(learner, domain, str(tmp_path), num_iterations=1,
                          curvature_subsample=0.5)
  weights = lambda: np.concatenate([v.numpy().ravel() for v in learner.meta_variables])
  before = weights()
  result = trainer.train_iteration(0)
  assert result["accepted"] == 1.0 and 0 < result["kl"] <= 0.01 + 1e-6
  assert np.linalg.norm(weights() - before) > 0
