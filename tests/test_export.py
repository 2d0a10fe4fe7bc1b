"""The SavedModel adapts exactly like the in-process learner, and rejects bad shapes clearly."""

import keras
import numpy as np
import pytest

from l2f_tf import export
from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner


def sinusoid_export(path: str, config_path=None, max_steps=None):
  """(domain, learner): a small L2F sinusoid learner, theta moved away from its
  initialisation, exported to ``path`` with 3 inner steps (and ``config_path``'s config, and
  ``max_steps``)."""
  keras.utils.set_random_seed(3)
  domain = SinusoidRegression(num_shots=5)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=2,
                        inner_lr=0.05, attenuation=TaskConditionedAttenuation())
  # Move theta away from its initialisation so the comparison is not trivial.
  for v in learner.meta_variables:
    v.assign(v.numpy() + np.random.default_rng(0).normal(0, 0.05, v.shape).astype(np.float32))
  export.export_for_domain(learner, domain, path, num_steps=3, config_path=config_path,
                           max_steps=max_steps)
  return domain, learner


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("export") / "saved_model")
  domain, learner = sinusoid_export(path)
  episodes, _ = domain.eval_episodes("test", 3)
  return learner, export.load(path), episodes


def test_saved_model_predictions_equal_in_process_learner(exported):
  learner, loaded, episodes = exported
  assert loaded.num_steps == 3
  task = type(episodes)(*(field[0] for field in episodes))
  expected = learner.forward(learner.adapt(task.support_x, task.support_y,
                                           num_steps=3).fast_weights, task.query_x).numpy()
  before = learner.forward(learner.theta(), task.query_x).numpy()
  got = loaded.predict(task.support_x, task.support_y, task.query_x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(got - before).max() > 1e-3  # adaptation happened inside the SavedModel
  batch = loaded.predict_batch(episodes.support_x, episodes.support_y, episodes.query_x)
  np.testing.assert_allclose(batch[0], expected, rtol=1e-5, atol=1e-6)
  assert batch.shape == (3, 100, 1)


def test_wrong_shapes_get_a_clear_error(exported):
  _, loaded, episodes = exported
  task = type(episodes)(*(field[0] for field in episodes))
  with pytest.raises(ValueError, match=r"support_x has shape \[5, 2\].*expects support_x \[\?, 1\]"):
    loaded.predict(np.zeros((5, 2)), task.support_y, task.query_x)
  with pytest.raises(ValueError, match="same number of examples"):
    loaded.predict(task.support_x, task.support_y[:3], task.query_x)
  with pytest.raises(ValueError, match="query_x has shape"):
    loaded.predict_batch(episodes.support_x, episodes.support_y, task.query_x)
  with pytest.raises(ValueError, match="No SavedModel"):
    export.load("/nonexistent/saved_model")
