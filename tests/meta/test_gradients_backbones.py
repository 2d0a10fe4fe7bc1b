"""Meta-gradients of conv4 and ResNet12 (with batch norm) against finite differences, float64.

The finite differences only evaluate the meta-loss (forward values, which every path computes
correctly), so they are an independent reference for the gradient code: for each trainable
tensor (inner-loop weights theta, the outer-loop-only batch-norm scale/offset, the L2F
attenuator) the directional derivative along a random unit direction must equal the analytic
meta-gradient's projection on it. Checked on every path that computes a meta-gradient for
vision: a tape around ``MetaLearner.meta_loss`` (eager, ``tf.function`` and XLA-compiled) and
the memory-lean ``sequential.meta_gradients``, second order and first order. As in the
reference code the L2F task embedding (mean support gradient at theta) is a constant, so the
finite differences hold it at its value at the base point.

With Keras' ``BatchNormalization`` (variance around ``stop_gradient(mean)``) the second-order
tests fail with relative errors of 1e-3..1: its second derivative misses a term. With
TensorFlow's ``MaxPool`` op the XLA test fails (wrong maxima in ``MaxPoolGradGrad``).
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv4
from l2f_tf.models.resnet12 import resnet12
from tests.gradient_check import (analytic_meta_gradient, assert_matches_reference,
                                  directional_derivatives, first_order_value_fn,
                                  fixed_embeddings, meta_loss_value_fn)

NUM_WAYS, NUM_SHOTS, NUM_QUERIES, NUM_TASKS = 2, 2, 2, 2
IMAGE_SHAPE = (16, 16, 2)


def cross_entropy(y, logits):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def make_learner(backbone: str, l2f: bool, dtype: str = "float64") -> MetaLearner:
  keras.utils.set_random_seed(3)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(dtype)
  try:
    if backbone == "conv4":
      model = conv4(num_classes=NUM_WAYS, image_shape=IMAGE_SHAPE, filters=3)
    else:
      model = resnet12(num_classes=NUM_WAYS, image_shape=IMAGE_SHAPE, channels=(2, 3, 2, 3))
  finally:
    keras.config.set_dtype_policy(previous)
  attenuation = TaskConditionedAttenuation(dtype=dtype) if l2f else None
  learner = MetaLearner(model, cross_entropy, num_inner_steps=2, inner_lr=0.3,
                        attenuation=attenuation, task_reduction="sum")
  # Batch-norm scale/offset away from their (1, 0) initialisation, so that their gradients
  # and their second-order terms are generic.
  rng = np.random.default_rng(5)
  for v in learner.network_variables:
    if v.path.endswith("gamma") or v.path.endswith("beta"):
      v.assign(v.numpy() + rng.normal(scale=0.3, size=v.shape))
  return learner


def make_batch(seed: int = 0) -> Episode:
  rng = np.random.default_rng(seed)
  images = lambda n: tf.constant(rng.normal(size=(NUM_TASKS, n, *IMAGE_SHAPE)))
  labels = lambda k: tf.constant(
      np.stack([rng.permutation(np.repeat(np.arange(NUM_WAYS), k)) for _ in range(NUM_TASKS)]),
      tf.int32)
  return Episode(images(NUM_WAYS * NUM_SHOTS), labels(NUM_SHOTS),
                 images(NUM_WAYS * NUM_QUERIES), labels(NUM_QUERIES))


@functools.lru_cache(maxsize=None)
def reference(backbone: str, l2f: bool, seed: int, first_order: bool = False):
  """Finite-difference directional derivatives of the meta-loss (shared by every path)."""
  learner = make_learner(backbone, l2f)
  batch = make_batch(seed)
  embeddings = fixed_embeddings(learner, batch)
  make_value_fn = first_order_value_fn if first_order else meta_loss_value_fn
  return directional_derivatives(make_value_fn(learner, batch, embeddings),
                                 learner.meta_variables, seed)


def kinds_of_tensors(learner):
  inner = {id(v) for v in learner.inner_variables}
  network = {id(v) for v in learner.network_variables}
  return ["theta" if id(v) in inner else "bn" if id(v) in network else "attenuator"
          for v in learner.meta_variables]


@pytest.mark.parametrize("path", ["plain", "compiled", "sequential"])
@pytest.mark.parametrize("l2f", [False, True], ids=["maml", "l2f"])
@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
def test_second_order_meta_gradient_matches_finite_differences(backbone, l2f, path):
  learner = make_learner(backbone, l2f)
  kinds = kinds_of_tensors(learner)
  assert {"theta", "bn"} <= set(kinds) and (("attenuator" in kinds) == l2f)
  batch = make_batch(0)
  analytic = analytic_meta_gradient(learner, batch, path)
  assert_matches_reference(analytic, reference(backbone, l2f, 0))
  # The check has teeth: the second-order terms are large here.
  first = analytic_meta_gradient(learner, batch, "plain", first_order=True)
  assert max(np.abs(a - f).max() / np.abs(a).max() for a, f in zip(analytic, first)) > 1e-2


@pytest.mark.parametrize("l2f", [False, True], ids=["maml", "l2f"])
def test_xla_compiled_second_order_meta_gradient_matches_finite_differences(l2f):
  """XLA's own MaxPoolGradGrad selects window maxima at bfloat16 precision (and has no
  float64 kernel); the library's MaxPool is exact under XLA too."""
  learner = make_learner("conv4", l2f)
  analytic = analytic_meta_gradient(learner, make_batch(0), "xla")
  assert_matches_reference(analytic, reference("conv4", l2f, 0))


@pytest.mark.parametrize("path", ["plain", "sequential"])
@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
def test_first_order_meta_gradient_matches_finite_differences(backbone, path):
  learner = make_learner(backbone, l2f=True)
  analytic = analytic_meta_gradient(learner, make_batch(2), path, first_order=True)
  assert_matches_reference(analytic, reference(backbone, True, 2, first_order=True))


def test_this_check_catches_keras_batch_normalization(monkeypatch):
  """The check has teeth: with Keras' BatchNormalization (variance around stop_gradient(mean))
  in conv4, the second-order meta-gradient disagrees with the finite differences."""
  from l2f_tf.models import conv4 as conv4_module  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(conv4_module, "BatchNorm",
                      lambda name: keras.layers.BatchNormalization(epsilon=1e-5, name=name))
  learner = make_learner("conv4", l2f=False)
  assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in learner.model.layers)
  batch = make_batch(0)
  analytic = analytic_meta_gradient(learner, batch, "plain")
  rows = directional_derivatives(meta_loss_value_fn(learner, batch, [None] * NUM_TASKS),
                                 learner.meta_variables, seed=0)
  with pytest.raises(AssertionError, match="analytic vs finite difference"):
    assert_matches_reference(analytic, rows)
