"""The meta-RL trainer on a tiny Navigation2D, driven by the same Runner as supervised training:
training, Ctrl-C, resume, evaluation, figure, the returns comparison of finished runs."""

import glob
import json
import os
import shutil
from typing import Dict, NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.domains.meta_rl import MetaRLDomain
from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.rl import maml_trpo, trpo
from l2f_tf.train import settings
from l2f_tf.train.meta_rl_trainer import MetaRLTrainer
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer
from tests.test_plots import assert_draws


def tiny_domain():
  return MetaRLDomain("Navigation2D", meta_batch_size=2, trajectories_per_task=3, horizon=6,
                      hidden_units=(8, 8))


def make_trainer(root, l2f=True, num_iterations=2, **options):
  domain = tiny_domain()
  keras.utils.set_random_seed(0)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.1,
                        attenuation=TaskConditionedAttenuation() if l2f else None)
  return MetaRLTrainer(learner, domain, str(root), num_iterations=num_iterations, **options)


def train(trainer) -> int:
  return Runner(trainer, checkpoint_every=1, log_every_seconds=0).train()


def flat_weights(trainer) -> np.ndarray:
  return np.concatenate([v.numpy().ravel() for v in trainer.learner.meta_variables])


class StraightRun(NamedTuple):
  """An uninterrupted run of STRAIGHT_ITERATIONS meta-iterations, checkpointed after each:
  its trainer, the diagnostics and the weight change of its first iteration, and a copy of
  its folder as it was after two iterations (a run stopped there)."""
  trainer: MetaRLTrainer
  first_result: Dict
  first_step: np.ndarray
  stopped_after_two: str


STRAIGHT_ITERATIONS = 3


def straight_training(l2f, base) -> StraightRun:
  """Trains a run of STRAIGHT_ITERATIONS in ``base``/run, recording what `StraightRun` holds."""
  trainer = make_trainer(base / "run", l2f, num_iterations=STRAIGHT_ITERATIONS)
  train_iteration, seen = trainer.train_iteration, {}

  def recorded(i):
    if i == 2:  # checkpoint 2 is saved: the folder of a run stopped after two iterations
      shutil.copytree(base / "run", base / "stopped")
    before = flat_weights(trainer)
    result = train_iteration(i)
    if i == 0:
      seen.update(result=dict(result), step=flat_weights(trainer) - before)
    return result

  trainer.train_iteration = recorded
  assert train(trainer) == STRAIGHT_ITERATIONS
  return StraightRun(trainer, seen["result"], seen["step"], str(base / "stopped"))


# One run per learner, shared by the tests that only read it (compiling the TRPO step is most
# of a run's time); two fixtures, not one parametrized one, so that both stay alive.
@pytest.fixture(scope="module")
def maml_run(tmp_path_factory) -> StraightRun:
  return straight_training(False, tmp_path_factory.mktemp("maml"))


@pytest.fixture(scope="module")
def l2f_run(tmp_path_factory) -> StraightRun:
  return straight_training(True, tmp_path_factory.mktemp("l2f"))


def straight_run(request, l2f: bool) -> StraightRun:
  return request.getfixturevalue("l2f_run" if l2f else "maml_run")


@pytest.mark.parametrize("l2f", [False, True])
def test_training_logs_and_respects_the_kl_limit(l2f, request):
  run = straight_run(request, l2f)
  result = run.first_result
  assert result["kl"] <= 0.01 + 1e-6
  assert result["accepted"] in (0.0, 1.0) and 0 <= result["backtracks"] <= 15
  assert ("gamma" in result) == l2f
  if l2f:
    assert result["gamma"].shape == (7,)
  assert run.trainer.step == STRAIGHT_ITERATIONS  # the Runner ran every iteration
  root = run.trainer.folder.root
  assert glob.glob(os.path.join(root, "train", "events.out.tfevents.*"))
  assert sorted(p for p in os.listdir(os.path.join(root, "checkpoints"))
                if p.endswith(".index")) == ["ckpt-1.index", "ckpt-2.index", "ckpt-3.index"]


def test_resume_equals_uninterrupted(l2f_run):
  # The straight run's folder after two iterations is that of a run stopped there.
  resumed = make_trainer(l2f_run.stopped_after_two, num_iterations=STRAIGHT_ITERATIONS)
  runner = Runner(resumed, checkpoint_every=1)
  assert resumed.step == 2  # restored when the runner was built
  runner.train()
  for a, b in zip(l2f_run.trainer.learner.meta_variables, resumed.learner.meta_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fisher_curvature_takes_the_same_trpo_step(request, tmp_path):
  # The Gauss-Newton products are the KL's Hessian at the old policy, so the compiled TRPO
  # step moves the weights to the same place (up to float32 rounding in conjugate gradient).
  # The fisher step (the default curvature) is the straight run's first. L2F only: MAML's
  # step is the same graph without the attenuation (tests/rl/test_maml_trpo.py checks the
  # Gauss-Newton products against finite differences of the KL gradient for both).
  l2f = True
  run = straight_run(request, l2f)
  assert run.trainer.curvature == "fisher"
  trainer = make_trainer(tmp_path, l2f, curvature="hessian")
  before = flat_weights(trainer)
  diagnostics = trainer.train_iteration(0)
  results = {"hessian": (flat_weights(trainer) - before, diagnostics),
             "fisher": (run.first_step, run.first_result)}
  step, fisher_step = results["hessian"][0], results["fisher"][0]
  assert np.linalg.norm(step) > 0.1
  assert np.linalg.norm(fisher_step - step) < 1e-2 * np.linalg.norm(step)
  assert results["fisher"][1]["step_size"] == pytest.approx(results["hessian"][1]["step_size"],
                                                            rel=1e-3)
  assert results["fisher"][1]["accepted"] == results["hessian"][1]["accepted"] == 1.0


def test_resuming_into_another_learner_names_the_folder_to_fix(maml_run):
  """The Runner's settings check refuses it first; with resume=True, the meta-RL trainer
  restores through the same checkpoint code as the supervised one, which names the folder."""
  root = maml_run.trainer.folder.root
  with pytest.raises(settings.ConfigMismatchError,
                     match=f"(?s){root} holds a run trained.*MetaLearner.attenuation: "
                           "None in the run, TaskConditionedAttenuation now"):
    Runner(make_trainer(root, l2f=True, num_iterations=2))
  with pytest.raises(ValueError, match="does not match this configuration.*--root_dir"):
    Runner(make_trainer(root, l2f=True, num_iterations=2), resume=True)


def test_ctrl_c_saves_the_interrupted_iteration(tmp_path, monkeypatch):
  trainer = make_trainer(tmp_path, l2f=False, num_iterations=5)
  original = trainer.train_iteration

  def interrupted(i):
    if i == 2:
      raise KeyboardInterrupt
    return original(i)

  monkeypatch.setattr(trainer, "train_iteration", interrupted)
  with pytest.raises(KeyboardInterrupt):
    Runner(trainer, checkpoint_every=100).train()
  assert (tmp_path / "checkpoints" / "ckpt-2.index").exists()
  assert make_trainer(tmp_path, l2f=False).step == 0  # nothing restored without a Runner
  resumed = make_trainer(tmp_path, l2f=False, num_iterations=5)
  Runner(resumed)
  assert resumed.step == 2


def test_max_seconds_stops_early_with_a_checkpoint(tmp_path):
  trainer = make_trainer(tmp_path, l2f=False, num_iterations=50)
  assert Runner(trainer, max_seconds=0.0).train() == 1
  assert (tmp_path / "checkpoints" / "ckpt-1.index").exists()


def test_l2f_samples_the_support_set_with_theta_bar(tmp_path):
  trainer = make_trainer(tmp_path)
  tasks = trainer.task_env.sample_tasks(2, seed=1)
  embeddings, start, probe = trainer.start_policies(tasks, seed=[0, 0, 2])
  assert embeddings.shape == (2, 7)
  # The probe is theta's trajectories: the ones the embedding is computed from.
  theta_batch = trainer.sample(tasks, maml_trpo.tile_params(trainer.learner.theta(), 2),
                               seed=[0, 0, 2])
  np.testing.assert_array_equal(probe.returns, theta_batch.returns)
  theta = trainer.learner.theta()
  for i in range(2):
    gamma = trainer.learner.attenuation.gamma_from_embedding(embeddings[i])[0].numpy()
    for j, t in enumerate(theta):
      np.testing.assert_allclose(start[j][i].numpy(), gamma[j] * t.numpy(), rtol=1e-6)


def test_evaluation_reports_returns_after_the_requested_steps(tmp_path):
  trainer = make_trainer(tmp_path)
  evaluations, extra = trainer.evaluate(4, steps=[1, 3])
  results = evaluations["test"]
  assert sorted(results) == sorted([f"return_after_{k}_steps" for k in (0, 1, 3)] + [
      "return_after_0_steps_without_attenuation"])
  assert extra["later_steps_lr"] == 0.1  # not set: the trained rate
  assert all(r["n"] == 4 and np.isfinite(r["mean"]) for r in results.values())
  assert all(np.mean(r["per_task"]) == pytest.approx(r["mean"]) for r in results.values())
  assert extra["inner_objective"] == "reinforce"
  # Step k of the report is step k of the held-out adaptation, whatever steps are listed.
  returns = trainer.held_out_returns(4, 3, trainer.domain.eval_seed)
  assert results["return_after_3_steps"]["mean"] == pytest.approx(np.mean(returns.after_steps[3]))
  with pytest.raises(ValueError, match="multiple of MetaRLDomain.meta_batch_size"):
    trainer.evaluate(3, steps=[1])


def test_later_steps_take_later_steps_lr_and_l2f_reports_theta_before_attenuation(tmp_path):
  trainer = make_trainer(tmp_path / "a")
  tasks = trainer.task_env.sample_tasks(2, seed=3)
  params = maml_trpo.tile_params(trainer.learner.theta(), 2)
  batch = trainer.sample(tasks, params, seed=[3, 0, 0])
  # By hand: one plain step from params at the trained rate 0.1, no attenuation.
  gradient = tf.GradientTape(persistent=True)
  with gradient:
    gradient.watch(params)
    loss = tf.reduce_sum(maml_trpo._per_task(  # pylint: disable=protected-access
        trainer.learner.loss_fn, batch.y,
        maml_trpo.vectorized_forward(trainer.learner, params, batch.x)))
  grads = gradient.gradient(loss, params)
  stepped = trainer.step_from(params, batch)
  for p, g, q in zip(params, grads, stepped):
    np.testing.assert_allclose(q.numpy(), (p - 0.1 * g).numpy(), rtol=1e-5, atol=1e-6)
  # With MetaLearner.later_steps_lr the later steps take it; the trained step does not change.
  domain = tiny_domain()
  keras.utils.set_random_seed(0)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.1,
                        later_steps_lr=0.025, attenuation=TaskConditionedAttenuation())
  shorter = MetaRLTrainer(learner, domain, str(tmp_path / "b"), num_iterations=2)
  for p, g, q in zip(params, grads, shorter.step_from(params, batch)):
    np.testing.assert_allclose(q.numpy(), (p - 0.025 * g).numpy(), rtol=1e-5, atol=1e-6)
  embeddings = trainer.start_policies(tasks, seed=[3, 0, 2])[0]
  for a, b in zip(shorter._adapt(batch, embeddings)[0],  # pylint: disable=protected-access
                  trainer._adapt(batch, embeddings)[0]):  # pylint: disable=protected-access
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  _, extra = shorter.evaluate(2, steps=[1])
  assert extra["later_steps_lr"] == 0.025
  with pytest.raises(ValueError, match="later_steps_lr must be > 0"):
    MetaLearner(domain.build_model(), domain.loss_fn, later_steps_lr=0.0)
  # Theta's returns before attenuation are the probe's, which L2F's embedding comes from;
  # MAML has none.
  returns = trainer.held_out_returns(2, 1, 5)
  embeddings, start, probe = trainer.start_policies(trainer.task_env.sample_tasks(2, seed=[5, 0]),
                                                    seed=[5, 0, 2])
  np.testing.assert_allclose(returns.unattenuated, probe.returns.mean(axis=1))
  assert make_trainer(tmp_path / "c", l2f=False).held_out_returns(2, 1, 5).unattenuated is None


def test_navigation_figure_has_paths_and_goals(tmp_path):
  trainer = make_trainer(tmp_path)
  paths = trainer.navigation_paths(num_tasks=2)
  assert len(paths) == 2
  for before, after, goal in paths:
    assert before.shape[1] == 2 and after.shape[1] == 2 and goal.shape == (2,)
    np.testing.assert_allclose(before[0], [0.0, 0.0])  # every episode starts at the origin
  evaluations, _ = trainer.evaluate(2, steps=[1])
  from l2f_tf.run_folder import RunFolder
  png = trainer.plot(RunFolder(str(tmp_path)), evaluations, 1)
  assert png.endswith("returns.png") and os.path.getsize(png) > 5_000
  with open(os.path.join(tmp_path, "returns.json")) as f:  # what returns.png draws
    curves, trajectories = json.load(f)["panels"]
  assert_draws(curves["series"][trainer.learner.method_name], evaluations["test"], "return")
  assert {"task 0: before adaptation", "task 0: after one step", "task 0: goal",
          "start"} <= set(trajectories["series"])
  assert {"before adaptation", "after one step", "goal", "start"} <= set(trajectories["legend"])


def test_a_trainer_refuses_the_other_kind_of_domain(tmp_path):
  rl, sinusoid = tiny_domain(), SinusoidRegression()
  with pytest.raises(ValueError, match="run_experiment.trainer = @MetaRLTrainer"):
    Trainer(MetaLearner(rl.build_model(), rl.loss_fn), rl, str(tmp_path))
  with pytest.raises(ValueError, match="run_experiment.trainer = @Trainer"):
    MetaRLTrainer(MetaLearner(sinusoid.build_model(), sinusoid.loss_fn), sinusoid,
                  str(tmp_path))


def test_compare_figure_names_the_inner_objective_when_runs_differ(tmp_path, monkeypatch):
  from l2f_tf import compare
  seen = {}
  monkeypatch.setattr(compare.plots, "plot_returns",
                      lambda path, evaluations, title: seen.update(evaluations) or path)
  test = {f"return_after_{k}_steps": {"mean": -k, "ci95": 1.0, "n": 2} for k in range(2)}
  run = lambda method, objective: {"method": method, "domain": "Navigation2D",
                                   "inner_objective": objective, "evaluations": {"test": test}}
  compare.returns_figure([run("MAML", "reinforce"), run("MAML", "lvc")], "x.png")
  assert sorted(seen) == ["MAML (lvc)", "MAML (reinforce)"]
  seen.clear()
  compare.returns_figure([run("MAML", "lvc"), run("MAML+L2F", "lvc")], "x.png")
  assert sorted(seen) == ["MAML", "MAML+L2F"]


def test_an_unknown_curvature_names_the_choices(tmp_path):
  with pytest.raises(ValueError, match="MetaRLTrainer.curvature.*hessian.*fisher"):
    make_trainer(tmp_path, curvature="newton")


def test_how_sampling_calls_the_policy_is_no_setting_of_the_run(tmp_path):
  # The numpy sampling policy is an implementation detail: a run folder's settings (what a
  # resume must match) do not mention it, so a resume never depends on which path samples.
  trainer = make_trainer(tmp_path, l2f=False)
  assert trainer._numpy_policy is not None  # pylint: disable=protected-access
  described = settings.describe(trainer)
  assert not [key for key in described if "numpy" in key.lower() or "DensePolicy" in key]


@pytest.mark.parametrize("curvature", ["fisher", "hessian"])
def test_curvature_subsample_takes_the_products_on_the_first_tasks(tmp_path, monkeypatch,
                                                                   curvature):
  # MetaRLTrainer.curvature_subsample = 0.5 of a meta-batch of 2: the curvature objective is
  # the first task's, the loss (gradient, line search) both tasks'.
  trainer = make_trainer(tmp_path, l2f=True, curvature=curvature, curvature_subsample=0.5)
  batch = trainer.sample_iteration(0)
  captured = {}
  monkeypatch.setattr(trpo, "trpo_step",
                      lambda loss_fn, kl_fn, variables, **options: captured.update(
                          loss_fn=loss_fn, **options))
  trainer._trpo_step_graph(batch)  # pylint: disable=protected-access
  first = maml_trpo.first_tasks(1, *batch[:4])
  expected = (maml_trpo.surrogate_and_outputs if curvature == "fisher" else
              maml_trpo.outer_objective)

  @tf.function  # one trace: eagerly, every vectorized_map is converted again
  def evaluate():
    return (captured["loss_fn"](), captured["curvature_objective"](),
            expected(trainer.learner, *first))

  (loss, full_second), (sub_loss, sub_second), (expected_loss, expected_second) = evaluate()
  if curvature == "fisher":
    assert full_second.shape[0] == 2 and sub_second.shape[0] == 1  # the outputs
    np.testing.assert_allclose(sub_second.numpy(), expected_second.numpy(), rtol=1e-6)
    assert float(captured["curvature_output_kl"](sub_second)) == pytest.approx(0.0, abs=1e-6)
  else:  # the KL
    assert float(sub_second) == pytest.approx(float(expected_second), abs=1e-7)
  assert float(sub_loss) == pytest.approx(float(expected_loss), rel=1e-5)
  assert float(sub_loss) != pytest.approx(float(loss), rel=1e-3)  # not both tasks'


def test_curvature_subsample_is_a_setting_of_the_run(tmp_path):
  # (A compiled meta-iteration with it: tests/test_gin_files_rl.py, slow tier.)
  trainer = make_trainer(tmp_path, l2f=False, curvature_subsample=0.5)
  assert settings.describe(trainer)["MetaRLTrainer.curvature_subsample"] == "0.5"
  assert [trainer.curvature_tasks(n) for n in (20, 2, 1)] == [10, 1, 1]

@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.5])
def test_a_curvature_subsample_outside_0_1_names_the_range(tmp_path, fraction):
  with pytest.raises(ValueError, match=r"curvature_subsample must be in \(0, 1\]"):
    make_trainer(tmp_path, curvature_subsample=fraction)


def test_a_curvature_subsample_that_sees_fewer_means_than_weights_warns(tmp_path, caplog):
  import logging  # pylint: disable=import-outside-toplevel
  with caplog.at_level(logging.WARNING):
    make_trainer(tmp_path, l2f=False, curvature_subsample=0.5)  # 1 x 3 x 6 x 2 means
  assert "curvature_subsample = 0.5" in caplog.text and "36 action means" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    make_trainer(tmp_path / "all", l2f=False)
  assert "curvature_subsample" not in caplog.text
