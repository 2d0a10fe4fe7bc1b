"""The SavedModel's step-count signatures give the in-process learner's predictions after every
number of inner steps (beyond the exported one too), and ``evaluate`` reports each of them."""

import os

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf import evaluate, export
from l2f_tf.export import checks, supervised
from l2f_tf.export.saved_model import FORMAT_VERSION, save
from l2f_tf.meta.predictions import per_task_metrics
from l2f_tf.run_folder import RunFolder
from tests import shared_runs

CONFIG = shared_runs.SINUSOID_CONFIG
# 5 (the messages below say so): the learner trains with 2 inner steps and is exported with 3.
MAX_STEPS = shared_runs.SINUSOID_EXPORT_MAX_STEPS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(run folder, domain, learner, loaded SavedModel): the session's shared sinusoid export
  (max_steps=5) and the same learner rebuilt here."""
  folder = shared_runs.sinusoid_export_run(tmp_path_factory)
  domain, learner = shared_runs.sinusoid_learner()
  return folder, domain, learner, export.load(folder.root)


def tasks(domain, n=3):
  episodes, _ = domain.eval_episodes("test", n)
  return episodes


def test_predict_steps_equal_the_learner_after_every_step_count(run):
  _, domain, learner, loaded = run
  assert (loaded.num_steps, loaded.max_steps) == (3, MAX_STEPS)
  episodes = tasks(domain)
  x, y, q = (np.asarray(f) for f in episodes[:3])
  steps = loaded.predict_steps(x[0], y[0], q[0], num_steps=MAX_STEPS)
  assert steps.shape == (MAX_STEPS + 1, 100, 1)
  iterates = learner.adapt(x[0], y[0], num_steps=MAX_STEPS).iterates
  for k, params in enumerate(iterates):  # 0 (attenuated theta), 1, 2 (training), 3 (export), 4, 5
    np.testing.assert_allclose(steps[k], learner.forward(params, q[0]).numpy(), rtol=1e-5,
                               atol=1e-6, err_msg=f"after {k} steps")
  assert np.abs(steps[-1] - steps[0]).max() > 1e-3  # the steps changed the predictions
  # Default: 0..the exported steps; the last one is what predict gives.
  default = loaded.predict_steps(x[0], y[0], q[0])
  assert default.shape == (4, 100, 1)
  np.testing.assert_allclose(default[3], loaded.predict(x[0], y[0], q[0]), rtol=1e-5, atol=1e-6)
  # The batch signature equals the single one, task by task.
  batch = loaded.predict_steps_batch(x, y, q, num_steps=4)
  assert batch.shape == (3, 5, 100, 1)
  for t in range(3):
    np.testing.assert_allclose(batch[t], loaded.predict_steps(x[t], y[t], q[t], num_steps=4),
                               rtol=1e-5, atol=1e-6)
  assert loaded.predict_steps(x[0], y[0], q[0], num_steps=0).shape == (1, 100, 1)


def test_num_steps_above_max_steps_names_how_to_export_more(run):
  folder, domain, _, loaded = run
  x, y, q = (np.asarray(f)[0] for f in tasks(domain)[:3])
  for bad in (MAX_STEPS + 1, -1, 2.0):
    with pytest.raises(ValueError, match=r"num_steps must be an integer in 0\.\.5 \(this "
                       r"SavedModel was exported with max_steps=5\).*export_max_steps"):
      loaded.predict_steps(x, y, q, num_steps=bad)
  # The graph checks it too, for consumers that bypass export.load.
  raw = tf.saved_model.load(folder.saved_model).signatures["adapt_and_predict_steps"]
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    raw(support_x=x, support_y=y, query_x=q, num_steps=tf.constant(MAX_STEPS + 1))
  assert checks.graph_error_text(error.value.message).startswith(
      "num_steps must be in 0..5: this SavedModel was exported with max_steps=5; export it "
      "again with more (run_experiment.export_max_steps")
  # And the same input checks as the other signatures.
  with pytest.raises(ValueError, match="same number of examples"):
    loaded.predict_steps(x, y[:3], q)
  with pytest.raises(ValueError, match=r"max_steps \(run_experiment.export_max_steps\) must be "
                     r"an integer >= the exported number of inner steps \(3\)"):
    supervised.check_max_steps(2, 3)


def test_evaluate_reports_every_step_count_like_the_learner(run):
  folder, domain, learner, _ = run
  results = evaluate.evaluate_saved_model(folder.root, num_tasks=4, seed=1, distributions=["test"],
                                          num_steps=MAX_STEPS)
  names = [f"mse_after_{k}_steps" for k in range(MAX_STEPS + 1)]
  assert list(results["test"]) == names
  domain.eval_seed = 1
  expected = per_task_metrics(learner, domain.eval_batches("test", 4), domain.task_metric,
                              MAX_STEPS).mean(axis=0)
  got = [results["test"][name]["mean"] for name in names]
  np.testing.assert_allclose(got, expected, rtol=1e-4)
  assert all(results["test"][name]["n"] == 4 for name in names)
  default = evaluate.evaluate_saved_model(folder.root, num_tasks=4, seed=1)
  assert list(default["test"]) == names[:4]  # 0..the exported 3 steps
  with pytest.raises(ValueError, match="max_steps=5"):
    evaluate.evaluate_saved_model(folder.root, num_tasks=4, seed=1, num_steps=6)


def test_an_export_of_another_format_version_is_refused_in_one_line(run, tmp_path):
  folder = run[0]
  # The run's export loaded, its format version changed, and saved again: its functions are
  # saved as they were traced (tracing new ones is most of an export's time).
  module = tf.saved_model.load(folder.saved_model)
  for version in (FORMAT_VERSION + 1, None):  # None: an export from before format versions.
    if version is None:
      del module.format_version
    else:
      module.format_version.assign(version)
    old = RunFolder(str(tmp_path / f"v{version}"))
    os.makedirs(old.root)
    with open(old.config, "w") as f:
      f.write(CONFIG)
    save(module, old.saved_model, {"serving_default": module.signatures["serving_default"]},
         old.config)
    message = (rf"^{old.saved_model} holds export format {version or 0} \(0: none recorded\), "
               rf"this l2f_tf reads format {FORMAT_VERSION}: re-export it \(delete it and run "
               r"`python run_experiment.py --root_dir=<its run folder>`, which exports without "
               r"training\)\.$")
    with pytest.raises(ValueError, match=message):
      export.load(old.root)
    with pytest.raises(ValueError, match=message):
      evaluate.evaluate_saved_model(old.root, num_tasks=4, seed=1)
