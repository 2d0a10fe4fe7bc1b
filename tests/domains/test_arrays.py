"""Tasks of one's own from arrays (l2f_tf.domains.arrays): the domains' episodes, networks and
errors, two meta-iterations of each through the Runner, their SavedModels read back with
l2f_tf.export.load, and their data as a setting of the run."""

import logging

import gin
import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging

import l2f_tf
from l2f_tf import export, run_folder
from l2f_tf.data.readers import DatasetError
from l2f_tf.models.mlp import mlp_classifier
from l2f_tf.train import restore, settings


@pytest.fixture(autouse=True)
def release_locks():
  yield
  run_folder.release_locks()


def clusters(num_classes=8, per_class=6, dim=4, seed=0):
  """Gaussian clusters: x [num_classes * per_class, dim], integer labels."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_classes, dim)) * 3
  y = np.repeat(np.arange(num_classes), per_class)
  return (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def classification_splits(**kwargs):
  x, y = clusters(**kwargs)
  train, test = y < 5, y >= 5
  return {"train": (x[train], y[train]), "test": (x[test], y[test])}


def lines(num_tasks=6, num_points=12, seed=0):
  """Tasks y = a x + b: x [tasks, points, 1], y [tasks, points, 1]."""
  rng = np.random.default_rng(seed)
  a, b = rng.uniform(-2, 2, (2, num_tasks, 1, 1))
  x = rng.uniform(-3, 3, (num_tasks, num_points, 1))
  return x, a * x + b


def regression_splits(**kwargs):
  return {"train": lines(**kwargs), "val": lines(seed=1), "test": lines(seed=2)}


def classifier(**kwargs):
  options = dict(splits=classification_splits(), num_ways=3, num_shots=1, num_queries=2,
                 meta_batch_size=2, eval_batch_size=4)
  options.update(kwargs)
  return l2f_tf.ArrayClassification(**options)


def regressor(**kwargs):
  options = dict(splits=regression_splits(), num_shots=3, num_queries=4, meta_batch_size=2)
  options.update(kwargs)
  return l2f_tf.ArrayRegression(**options)


def test_classification_batches_network_and_fixed_evaluation_episodes():
  domain = classifier()
  assert domain.validation_split is None and domain.input_shape == (4,)
  batch = next(iter(domain.train_dataset(seed=0)))
  assert batch.support_x.shape == (2, 3, 4) and batch.query_y.shape == (2, 6)
  # Resuming at step 1 starts with the stream's second meta-batch.
  stream = iter(domain.train_dataset(seed=0))
  next(stream)
  np.testing.assert_array_equal(next(stream).query_x.numpy(),
                                next(iter(domain.train_dataset(0, start_step=1))).query_x.numpy())
  model = domain.build_model()
  assert model.output_shape == (None, 3)
  # The test episodes are the same for another network, and hold test classes only.
  seen = {}
  other = classifier(network=lambda **kw: seen.update(kw) or mlp_classifier(hidden_units=(3,),
                                                                          **kw))
  other.build_model()
  assert seen == {"num_classes": 3, "input_shape": (4,)}
  a, b = domain.eval_episodes("test", 5)[0], other.eval_episodes("test", 5)[0]
  np.testing.assert_array_equal(a.support_x, b.support_x)
  x, y = classification_splits()["test"]
  rows = {tuple(row) for row in x}
  assert all(tuple(row) in rows for row in a.query_x.reshape(-1, 4))


def test_classification_errors_name_the_split_and_the_fix():
  splits = classification_splits()
  x, y = splits["test"]
  few = {"train": splits["train"], "test": (x[y < 7], y[y < 7])}  # 2 test classes
  with pytest.raises(DatasetError, match=r"Split 'test' of ArrayClassification.splits has 2 "
                     r"classes, fewer than the 3 ways requested: lower num_ways"):
    classifier(splits=few)
  with pytest.raises(DatasetError, match=r"Class '0' in split 'train' of ArrayClassification"
                     r".splits has 6 examples \(and 4 other classes\), fewer than the 8 "
                     r"needed per class"):
    classifier(num_shots=3, num_queries=5)
  other_shape = {"train": splits["train"], "test": (x[:, :3], y)}
  with pytest.raises(DatasetError, match=r"examples of different shapes"):
    classifier(splits=other_shape)
  with pytest.raises(ValueError, match=r"ArrayClassification.splits has no 'test' split"):
    classifier(splits={"train": splits["train"]})


def test_regression_batches_evaluation_episodes_and_errors():
  domain = regressor()
  assert (domain.input_dim, domain.output_dim, domain.validation_split) == (1, 1, "val")
  batch = next(iter(domain.train_dataset(seed=0, tasks=(1, 1))))  # a share of one task
  assert batch.support_x.shape == (1, 3, 1) and batch.query_y.shape == (1, 4, 1)
  whole = next(iter(domain.train_dataset(seed=0)))
  np.testing.assert_array_equal(batch.query_y[0], whole.query_y[1])
  episodes = domain.eval_batches("test", 7)
  assert episodes.support_x.shape == (7, 3, 1) and episodes.query_x.shape == (7, 9, 1)  # 12 - 3
  np.testing.assert_array_equal(episodes.query_y, regressor().eval_episodes("test", 7)[0].query_y)
  assert not np.array_equal(domain.eval_batches("val", 7).query_y, episodes.query_y)
  assert domain.build_model().output_shape == (None, 1)
  with pytest.raises(DatasetError, match=r"The tasks of split 'train' of ArrayRegression.splits "
                     r"have 12 points each, fewer than the 13 an episode needs"):
    regressor(num_shots=3, num_queries=10)
  with pytest.raises(DatasetError, match=r"split 'test' of ArrayRegression.splits have 3 points "
                     r"each, fewer than the 4 an episode needs \(num_shots=3 \+ at least 1"):
    regressor(splits=dict(regression_splits(), test=lines(num_points=3)))
  with pytest.raises(ValueError, match=r"ArrayRegression.num_queries must be >= 1"):
    regressor(num_queries=0)


def run_and_load(domain, root, **learner_options):
  learner = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1,
                               **learner_options)
  trainer = l2f_tf.Trainer(learner, domain, root, num_iterations=2, jit_compile=False,
                           summary_every=0, num_val_episodes=4)
  results = l2f_tf.Runner(trainer, log_every_seconds=0).run(num_eval_tasks=4, plot=False,
                                                            export_max_steps=2)
  return learner, results, export.load(root)


def test_a_classification_run_trains_evaluates_and_exports(tmp_path):
  domain = classifier()
  learner, results, loaded = run_and_load(domain, str(tmp_path / "run"), inner_lr=0.1)
  assert results["meta_iterations"] == 2 and results["domain"] == "array_classification"
  assert results["evaluations"]["test"]["accuracy_after_1_steps"]["n"] == 4
  assert loaded.num_classes == 3 and "3-way 1-shot classification" in loaded.description
  episodes = domain.eval_episodes("test", 1)[0]
  task = (episodes.support_x[0], episodes.support_y[0], episodes.query_x[0])
  np.testing.assert_allclose(loaded.predict(*task), learner.predict(*task), atol=1e-5)
  with pytest.raises(ValueError, match="support_x"):
    loaded.predict(task[0][:2], task[1][:2], task[2])  # the export fixes N*K support examples


def test_a_regression_run_validates_evaluates_and_exports(tmp_path, monkeypatch):
  domain = regressor()
  logger = absl_logging.get_absl_logger()
  monkeypatch.setattr(logger, "level", logging.INFO)  # a library run's progress lines
  learner, results, loaded = run_and_load(domain, str(tmp_path / "run"),
                                          attenuation=l2f_tf.TaskConditionedAttenuation())
  assert logger.level == logging.INFO  # saving the SavedModel left them on
  figures = results["evaluations"]["test"]
  assert set(figures) == {"mse_after_0_steps", "mse_after_1_steps"}
  assert "test_ensemble" in results["evaluations"] and results["validation"]["split"] == "val"
  assert loaded.num_classes == 0 and "K=3" in loaded.description
  episodes = domain.eval_episodes("test", 2)[0]
  # Any number of support and query points.
  task = (episodes.support_x[0][:2], episodes.support_y[0][:2], episodes.query_x[0])
  steps = loaded.predict_steps(*task, num_steps=2)
  assert steps.shape == (3, 9, 1)
  np.testing.assert_allclose(steps[1], learner.predict(*task, num_steps=1), atol=1e-5)


def test_the_arrays_are_a_setting_of_the_run(tmp_path):
  """Other arrays in a trained folder are another experiment (the Runner refuses them); the
  same arrays made again are not."""
  root = str(tmp_path / "run")

  def trainer(splits):
    domain = regressor(splits=splits, num_queries_eval=3)
    learner = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1)
    return l2f_tf.Trainer(learner, domain, root, num_iterations=1, jit_compile=False,
                          summary_every=0, num_val_episodes=0)

  l2f_tf.Runner(trainer(regression_splits()), log_every_seconds=0).train()
  run_folder.release_locks()
  l2f_tf.Runner(trainer(regression_splits()))  # the same data, built again
  run_folder.release_locks()
  with pytest.raises(settings.ConfigMismatchError, match=r"ArrayRegression.data_sha256: '"):
    l2f_tf.Runner(trainer(regression_splits(seed=5)))


@gin.configurable
def gin_splits_for_test(seed=0):
  return regression_splits(seed=seed)


def test_the_domains_are_gin_configurable():
  domain = restore.parse_domain([], [
      "run_experiment.domain = @ArrayRegression()",
      "ArrayRegression.splits = @gin_splits_for_test()", "ArrayRegression.num_shots = 2",
      "ArrayRegression.network = @mlp", "mlp.hidden_units = (7,)"])
  assert isinstance(domain, l2f_tf.ArrayRegression) and domain.num_shots == 2
  assert [tuple(w.shape) for w in domain.build_model().weights] == [(1, 7), (7,), (7, 1), (1,)]
  assert domain.data_sha256 == regressor().data_sha256
  domain = restore.parse_domain([], [
      "run_experiment.domain = @ArrayClassification()", "ArrayClassification.num_ways = 2",
      "ArrayClassification.splits = @gin_classification_splits_for_test()",
      "ArrayClassification.network = @mlp_classifier", "mlp_classifier.hidden_units = (5,)"])
  assert domain.build_model().output_shape == (None, 2)
  assert tf.reduce_prod(domain.build_model().weights[0].shape) == 4 * 5


@gin.configurable
def gin_classification_splits_for_test():
  return classification_splits()
