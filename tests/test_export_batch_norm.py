"""The SavedModel of a few-shot learner in each batch-norm mode: in the inductive modes a query
predicted alone gets exactly its prediction in any batch, through every signature; the
transductive one says in its description that it does not, and warns once when called with
fewer queries than classes. Slow tier (three conv4 exports, ~40 s); the default tier checks the
same equality on the learner (tests/models/test_support_statistics.py)."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf import export
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv4
from tests.domains.test_few_shot import domain as few_shot_domain
from tests.fake_images import write_class_folders

pytestmark = pytest.mark.slow

SIGNATURES = ["adapt_and_predict", "adapt_and_predict_batch", "adapt_and_predict_steps",
              "adapt_and_predict_steps_batch"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  return write_class_folders(str(tmp_path_factory.mktemp("bn_export") / "data"), size=16)


def exported(root: str, mode: str, path: str) -> str:
  """A 3-way 2-shot conv4 learner on 16x16x3 pixels with batch norm in ``mode``, exported with
  1 inner step and max_steps 1."""
  with gin.unlock_config():
    gin.bind_parameter("BatchNorm.mode", mode)
  domain = few_shot_domain(root, backbone=lambda **kw: conv4(filters=2, **kw))
  learner = MetaLearner(domain.build_model(seed=1), domain.loss_fn, num_inner_steps=1,
                        inner_lr=0.5)
  assert learner.batch_norm == mode
  return export.export_for_domain(learner, domain, path, max_steps=1)


def pixels(rng, n):
  return rng.uniform(0, 255, (n, 16, 16, 3)).astype(np.float32)


def calls(loaded, support_x, support_y, queries):
  """Each signature's predictions for ``queries``, as [Q, ...] (steps signatures: [S+1, Q])."""
  one = lambda q: {
      "adapt_and_predict": loaded.predict(support_x, support_y, q),
      "adapt_and_predict_batch": loaded.predict_batch(support_x[None], support_y[None],
                                                      q[None])[0],
      "adapt_and_predict_steps": loaded.predict_steps(support_x, support_y, q),
      "adapt_and_predict_steps_batch": loaded.predict_steps_batch(
          support_x[None], support_y[None], q[None])[0]}
  return one(queries), [one(queries[i:i + 1]) for i in range(len(queries))]


@pytest.mark.parametrize("mode", ["support", "task_norm_i"])
def test_a_query_alone_equals_it_in_a_batch_for_every_signature(data_root, tmp_path, mode):
  loaded = export.load(exported(data_root, mode, str(tmp_path / "sm")))
  assert loaded.batch_norm == mode and "depends on the task and that query alone" in \
      loaded.description
  rng = np.random.default_rng(0)
  support_x, support_y = pixels(rng, 6), np.repeat(np.arange(3), 2).astype(np.int32)
  together, alone = calls(loaded, support_x, support_y, pixels(rng, 5))
  for name in SIGNATURES:
    query_axis = 1 if "steps" in name else 0
    singles = np.concatenate([a[name] for a in alone], axis=query_axis)
    np.testing.assert_allclose(singles, together[name], rtol=1e-5, atol=1e-5, err_msg=name)
  steps = together["adapt_and_predict_steps"]
  assert np.abs(steps[1] - steps[0]).max() > 1e-3  # adapted: the query pass sees fast weights
  np.testing.assert_allclose(steps[1], together["adapt_and_predict"], rtol=1e-5, atol=1e-5)


def test_transductive_export_says_so_and_warns_once_about_few_queries(data_root, tmp_path, capfd):
  path = exported(data_root, "transductive", str(tmp_path / "sm"))
  loaded = export.load(path)
  assert loaded.batch_norm == "transductive"
  assert "depends on the other queries of the call" in loaded.description
  rng = np.random.default_rng(0)
  support_x, support_y = pixels(rng, 6), np.repeat(np.arange(3), 2).astype(np.int32)
  queries = pixels(rng, 4)
  together = loaded.predict(support_x, support_y, queries)
  assert "WARNING" not in capfd.readouterr().err  # 4 queries for 3 classes
  alone = loaded.predict(support_x, support_y, queries[:1])
  err = capfd.readouterr().err
  assert "uses transductive batch norm" in err and "this call has 1 queries for 3 classes" in err
  assert np.abs(alone[0] - together[0]).max() > 1e-3  # what the warning is about
  loaded.predict_batch(support_x[None], support_y[None], queries[None, :2])
  assert "WARNING" not in capfd.readouterr().err  # once per loaded model
  raw = tf.saved_model.load(path)
  raw.signatures["adapt_and_predict_batch"](
      support_x=tf.constant(support_x[None]), support_y=tf.constant(support_y[None]),
      query_x=tf.constant(queries[None, :2]))
  assert "this call has 2 queries for 3 classes" in capfd.readouterr().err
