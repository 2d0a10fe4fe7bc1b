"""Every meta-RL gin file runs end to end (few tasks, short horizon) in a temp dir."""

import glob
import json
import os

import gin
import pytest

from l2f_tf.train import experiment, restore
from tests.test_gin_files import summary_tags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder
RL_FILES = sorted(os.path.relpath(p, GIN_PARENT) for p in glob.glob(os.path.join(GIN_PARENT, "gin", "rl",
                                                                           "*.gin"))
                  if os.path.basename(p) != "setup.gin")
TINY = ["MetaRLDomain.meta_batch_size = 2", "MetaRLDomain.trajectories_per_task = 2",
        "MetaRLDomain.horizon = 5", "run_experiment.num_eval_tasks = 2",
        "run_experiment.eval_steps = (1, 2)", "MetaRLDomain.hidden_units = (8, 8)",
        "MetaRLTrainer.num_iterations = 2", "Runner.checkpoint_every = 1",
        "Runner.log_every_seconds = 0", "MetaRLTrainer.conflict_every = 2",
        "MetaRLDomain.num_workers = 0"]  # worker processes: tests/rl/test_sampler.py


def test_every_environment_has_both_learners():
  environments = ("navigation2d", "halfcheetah_vel", "halfcheetah_dir", "ant_vel", "ant_dir")
  expected = {f"gin/rl/{e}_{m}.gin" for e in environments for m in ("maml", "l2f")}
  assert not sorted(expected - set(RL_FILES))


@pytest.mark.parametrize("gin_file", RL_FILES)
def test_rl_gin_file_runs_end_to_end(gin_file, tmp_path):
  root = str(tmp_path / "run")
  restore.setup_run(root, [os.path.join(GIN_PARENT, gin_file)], TINY)
  results = experiment.run_experiment(root)
  l2f = os.path.basename(gin_file).endswith("_l2f.gin")
  assert results["method"] == ("MAML+L2F" if l2f else "MAML")
  assert results["meta_iterations"] == 2
  assert results["averaging"] == "trajectory"
  assert sorted(results["evaluations"]["test"]) == [f"return_after_{k}_steps" for k in range(3)]
  with open(os.path.join(root, "results.json")) as f:
    assert json.load(f)["evaluations"]["test"]["return_after_1_steps"]["n"] == 2
  assert os.path.getsize(os.path.join(root, "returns.png")) > 5_000
  assert os.path.exists(os.path.join(root, "saved_model", "saved_model.pb"))
  tags = summary_tags(os.path.join(root, "train"))
  assert {"return_before_adaptation", "return_after_adaptation", "kl", "backtracks",
          "env_steps_per_second"} <= tags
  assert sum(t.startswith("gamma/") for t in tags) == (7 if l2f else 0)
  assert sum(t.startswith("degree_of_conflict/") for t in tags) == 7  # At iteration 2.
  assert "test/return_after_1_steps" in summary_tags(os.path.join(root, "eval"))


def test_compare_two_rl_runs(tmp_path):
  from l2f_tf import compare
  roots = []
  for name in ("navigation2d_maml", "navigation2d_l2f"):
    root = str(tmp_path / name)
    gin.clear_config()
    restore.setup_run(root, [os.path.join(GIN_PARENT, "gin", "rl", f"{name}.gin")],
                     TINY + ["MetaRLTrainer.num_iterations = 1"])
    experiment.run_experiment(root)
    roots.append(root)
  assert ("MAML+L2F (reinforce) [navigation2d_l2f] test: return_after_0_steps="
          in compare.results_table(roots))
  png = compare.compare_figure(roots, str(tmp_path / "cmp.png"))
  assert os.path.getsize(png) > 5_000


def test_lvc_inner_objective_from_a_binding(tmp_path):
  import numpy as np
  import tensorflow as tf
  from l2f_tf.domains.meta_rl import MetaRLDomain
  from l2f_tf.rl import policy_gradient as pg
  root = str(tmp_path / "run")
  restore.setup_run(root, [os.path.join(GIN_PARENT, "gin", "rl", "navigation2d_l2f.gin")],
                   TINY + ["MetaRLDomain.inner_objective = 'lvc'",
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
