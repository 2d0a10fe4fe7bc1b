"""The SavedModel adapts exactly like the in-process learner, and rejects bad shapes clearly."""

import numpy as np
import pytest

from l2f_tf import export
from tests import shared_runs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(learner, its SavedModel loaded, 3 test tasks): the session's shared sinusoid export (3
  inner steps) and the same learner rebuilt here."""
  folder = shared_runs.sinusoid_export_run(tmp_path_factory)
  domain, learner = shared_runs.sinusoid_learner()
  episodes, _ = domain.eval_episodes("test", 3)
  return learner, export.load(folder.saved_model), episodes


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
