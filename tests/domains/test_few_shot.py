"""The few-shot classification domain: data, model, metric, export signature, user errors."""

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data import readers
from l2f_tf.domains.few_shot import FewShotClassification, accuracy, cross_entropy
from l2f_tf.models.conv4 import conv4
from tests.fake_images import decode_codes, write_class_folders


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
  return write_class_folders(str(tmp_path_factory.mktemp("mini")), classes=(6, 5, 5),
                             images_per_class=8, size=16)


def domain(root, **kwargs):
  options = dict(num_ways=3, num_shots=2, num_queries=3, meta_batch_size=2, image_size=16,
                 eval_batch_size=4, backbone=lambda **kw: conv4(filters=4, **kw))
  options.update(kwargs)
  return FewShotClassification(root=root, **options)


def test_train_batches_and_model(dataset_root):
  d = domain(dataset_root)
  batch = next(iter(d.train_dataset(seed=0)))
  assert batch.support_x.shape == (2, 6, 16, 16, 3) and batch.query_y.shape == (2, 9)
  assert batch.support_x.dtype == tf.float32
  model = d.build_model()
  assert model.output_shape == (None, 3)
  # Resuming at step 1 starts with the second meta-batch of the stream.
  stream = iter(d.train_dataset(seed=0))
  next(stream)
  np.testing.assert_array_equal(next(stream).query_x.numpy(),
                                next(iter(d.train_dataset(seed=0, start_step=1))).query_x.numpy())


def test_evaluation_episodes_are_fixed_and_splits_are_disjoint(dataset_root):
  a = domain(dataset_root).eval_episodes("test", 5)[0]
  b = domain(dataset_root, backbone=conv4).eval_episodes("test", 5)[0]  # another model
  np.testing.assert_array_equal(a.support_x, b.support_x)
  raw = domain(dataset_root)
  test = next(iter(raw.eval_batches("test", 4, preprocessed=False)))
  val = next(iter(raw.eval_batches("val", 4, preprocessed=False)))
  assert set(decode_codes(test.support_x.numpy())[..., 0].ravel()) == {2}
  assert set(decode_codes(val.support_x.numpy())[..., 0].ravel()) == {1}


def test_loss_and_accuracy():
  labels = tf.constant([0, 1, 2, 1])
  logits = tf.constant([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
  assert float(accuracy(labels, logits)) == pytest.approx(0.5)
  expected = np.mean(-np.log(tf.nn.softmax(logits).numpy()[np.arange(4), labels.numpy()]))
  assert float(cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-6)


def test_export_signature_fixes_way_and_shot(dataset_root):
  sx, sy, qx = domain(dataset_root).export_signature()
  assert sx.shape.as_list() == [6, 16, 16, 3] and sy.dtype == tf.int32
  assert qx.shape.as_list() == [None, 16, 16, 3]
  assert "3-way 2-shot" in domain(dataset_root).export_description()


def test_user_errors_name_the_fix(dataset_root, tmp_path):
  with pytest.raises(readers.DatasetError, match="does not exist"):
    domain(str(tmp_path / "nowhere")).build_model()
  with pytest.raises(readers.DatasetError, match="fewer than the 7 ways"):
    domain(dataset_root, num_ways=7).build_model()
  with pytest.raises(readers.DatasetError, match="fewer than the 10 needed"):
    domain(dataset_root, num_shots=5, num_queries=5).build_model()
  with pytest.raises(ValueError, match="normalization"):
    domain(dataset_root, normalization="zscore")
  with pytest.raises(ValueError, match="at least 16x16"):
    domain(dataset_root, image_size=12, backbone=conv4).build_model()
