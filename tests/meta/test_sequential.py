"""The memory-lean meta-gradient equals the plain one (tape around meta_loss)."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.meta import diagnostics, sequential
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv4


def cross_entropy(y, logits):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def make(l2f=True, lslr=False, reduction="sum"):
  keras.utils.set_random_seed(1)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("float64")
  try:
    model = conv4(num_classes=3, image_shape=(16, 16, 1), filters=4)
  finally:
    keras.config.set_dtype_policy(previous)
  assert model.dtype == "float64"
  return MetaLearner(model, cross_entropy, num_inner_steps=2, inner_lr=0.1,
                     learn_inner_lr=lslr, task_reduction=reduction,
                     attenuation=TaskConditionedAttenuation(dtype="float64") if l2f else None)


def episodes(num_tasks=2):
  rng = np.random.default_rng(0)
  x = lambda n: tf.constant(rng.normal(size=(num_tasks, n, 16, 16, 1)))
  y = lambda k: tf.constant(np.tile(np.repeat(np.arange(3), k), (num_tasks, 1)).astype(np.int32))
  return Episode(x(6), y(2), x(9), y(3))


@functools.lru_cache(maxsize=None)
def lean_results(l2f, lslr, reduction, first_order):
  """(loss, gradients, metrics) of the memory-lean path for ``make(l2f, lslr, reduction)`` on
  ``episodes()``: traced once per setting, shared by the tests below."""
  learner = make(l2f, lslr, reduction)
  lean = tf.function(lambda e: sequential.meta_gradients(learner, e, first_order, True))
  return lean(episodes())


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("l2f,lslr,reduction", [(True, False, "sum"), (False, True, "mean"),
                                                (True, True, "mean")])
def test_same_loss_gradients_and_metrics(first_order, l2f, lslr, reduction):
  learner = make(l2f, lslr, reduction)
  batch = episodes()
  with tf.GradientTape() as tape:
    loss, metrics = learner.meta_loss(batch, first_order=first_order, with_metrics=True)
  expected = tape.gradient(loss, learner.meta_variables,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
  lean_loss, grads, lean_metrics = lean_results(l2f, lslr, reduction, first_order)
  np.testing.assert_allclose(lean_loss.numpy(), loss.numpy(), rtol=1e-12)
  assert len(grads) == len(expected) == len(learner.meta_variables)
  for g, e, v in zip(grads, expected, learner.meta_variables):
    # The learnable inner lrs are float32: the vectorized meta_loss sums their per-task terms
    # in another order (float32 round-off, ~5e-7 relative).
    rtol = 1e-9 if v.dtype == "float64" else 1e-5
    np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=rtol, atol=1e-12, err_msg=v.path)
  for key in metrics:
    np.testing.assert_allclose(lean_metrics[key].numpy(), metrics[key].numpy(), rtol=1e-6)
  conflict = diagnostics.degree_of_conflict(
      learner.per_task_meta_gradients(batch, first_order=first_order))
  np.testing.assert_allclose(lean_metrics["degree_of_conflict"].numpy(), conflict.numpy(),
                             rtol=1e-5, atol=1e-4)


def test_second_order_terms_are_present():
  """Guards against a checkpointed step that silently drops the Hessian term (MAML, on the
  memory-lean gradients of the test above: no trace of its own)."""
  second, first = (lean_results(False, True, "mean", fo)[1] for fo in (False, True))
  assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(second, first)) > 1e-6
