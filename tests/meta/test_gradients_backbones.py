"""Meta-gradients of conv4 and ResNet12 (with batch norm) against finite differences, float64.

The finite differences only evaluate the meta-loss (forward values, which every path computes
correctly), so they are an independent reference for the gradient code: for each trainable
tensor (inner-loop weights theta, the outer-loop-only batch-norm scale/offset, the L2F
attenuator) the directional derivative along a random unit direction must equal the analytic
meta-gradient's projection on it. Checked on every path that computes a meta-gradient for
vision: a tape around ``MetaLearner.meta_loss`` (eager and ``tf.function``; XLA's is NaN, which
tests/meta/test_gradients_xla_slow.py documents in the slow tier: the Trainer refuses XLA for
these networks at second order) and
the memory-lean ``sequential.meta_gradients``, second order and first order. As in the
reference code the L2F task embedding (mean support gradient at theta) is a constant, so the
finite differences hold it at its value at the base point.

With Keras' ``BatchNormalization`` (variance around ``stop_gradient(mean)``) the second-order
tests fail with relative errors of 1e-3..1: its second derivative misses a term. With
TensorFlow's ``MaxPool`` op XLA picks wrong maxima in ``MaxPoolGradGrad``
(tests/models/test_layers.py).

What these tests cost is tracing (and XLA-compiling) second-order graphs, whose size grows with
tasks x inner steps x layers, not with the tiny images. So conv4 runs the full setting, 2 tasks
and 2 inner steps (the sum over tasks, and steps chained through the batch-norm scale/offset
that each recomputed step of the sequential path takes as inputs), while ResNet12 (whose own
layers, residual add, 1x1 shortcut and global average pooling, are in every step) and the XLA
check (max pooling's second derivative is in every step) run 1 task and 1 step
(``SETTINGS``). The MLP checks several tasks and steps on every path, XLA included
(tests/meta/test_gradients.py).
"""

import functools

import gin
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

NUM_WAYS, NUM_SHOTS, NUM_QUERIES = 2, 2, 2
IMAGE_SHAPE = (16, 16, 2)
# (tasks per meta-batch, inner steps) of each check: see the module docstring.
SETTINGS = {"conv4": (2, 2), "resnet12": (1, 1), "xla": (1, 1)}


def cross_entropy(y, logits):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def make_learner(backbone: str, l2f: bool, num_inner_steps: int = 2,
                 dtype: str = "float64", mode: str = "transductive") -> MetaLearner:
  """conv4 or ResNet12 with batch norm in ``mode`` (tests/meta/test_gradients_bn_modes.py
  checks the inductive modes)."""
  keras.utils.set_random_seed(3)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(dtype)
  with gin.unlock_config():
    gin.bind_parameter("BatchNorm.mode", mode)
  try:
    if backbone == "conv4":
      model = conv4(num_classes=NUM_WAYS, image_shape=IMAGE_SHAPE, filters=3)
    else:
      model = resnet12(num_classes=NUM_WAYS, image_shape=IMAGE_SHAPE, channels=(2, 3, 2, 3))
  finally:
    keras.config.set_dtype_policy(previous)
  attenuation = TaskConditionedAttenuation(dtype=dtype) if l2f else None
  learner = MetaLearner(model, cross_entropy, num_inner_steps=num_inner_steps, inner_lr=0.3,
                        attenuation=attenuation, task_reduction="sum")
  # Batch-norm scale/offset away from their (1, 0) initialisation, so that their gradients
  # and their second-order terms are generic.
  rng = np.random.default_rng(5)
  for v in learner.network_variables:
    if v.path.endswith(("gamma", "beta", "alpha_scale", "alpha_offset")):
      v.assign(v.numpy() + rng.normal(scale=0.3, size=v.shape))
  return learner


def make_batch(seed: int = 0, num_tasks: int = 2) -> Episode:
  rng = np.random.default_rng(seed)
  images = lambda n: tf.constant(rng.normal(size=(num_tasks, n, *IMAGE_SHAPE)))
  labels = lambda k: tf.constant(
      np.stack([rng.permutation(np.repeat(np.arange(NUM_WAYS), k)) for _ in range(num_tasks)]),
      tf.int32)
  return Episode(images(NUM_WAYS * NUM_SHOTS), labels(NUM_SHOTS),
                 images(NUM_WAYS * NUM_QUERIES), labels(NUM_QUERIES))


def make_case(setting: str, l2f: bool, seed: int, mode: str = "transductive"):
  """The learner and meta-batch of a check in the ``SETTINGS`` of ``setting`` (a backbone, or
  "xla": conv4)."""
  num_tasks, num_inner_steps = SETTINGS[setting]
  backbone = "conv4" if setting == "xla" else setting
  return (make_learner(backbone, l2f, num_inner_steps, mode=mode),
          make_batch(seed, num_tasks))


@functools.lru_cache(maxsize=None)
def reference(setting: str, l2f: bool, seed: int, first_order: bool = False,
              mode: str = "transductive"):
  """Finite-difference directional derivatives of the meta-loss (shared by every path)."""
  learner, batch = make_case(setting, l2f, seed, mode)
  embeddings = fixed_embeddings(learner, batch)
  make_value_fn = first_order_value_fn if first_order else meta_loss_value_fn
  return directional_derivatives(make_value_fn(learner, batch, embeddings),
                                 learner.meta_variables, seed)


@functools.lru_cache(maxsize=None)
def first_order_meta_gradient(setting: str, l2f: bool, mode: str = "transductive"):
  """The plain first-order meta-gradient of the second-order checks' case (shared by them)."""
  learner, batch = make_case(setting, l2f, 0, mode)
  return analytic_meta_gradient(learner, batch, "plain", first_order=True)


def kinds_of_tensors(learner):
  inner = {id(v) for v in learner.inner_variables}
  network = {id(v) for v in learner.network_variables}
  return ["theta" if id(v) in inner else "bn" if id(v) in network else "attenuator"
          for v in learner.meta_variables]


@pytest.mark.parametrize("path", ["plain", "compiled", "sequential"])
@pytest.mark.parametrize("l2f", [False, True], ids=["maml", "l2f"])
@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
def test_second_order_meta_gradient_matches_finite_differences(backbone, l2f, path):
  learner, batch = make_case(backbone, l2f, 0)
  kinds = kinds_of_tensors(learner)
  assert {"theta", "bn"} <= set(kinds) and (("attenuator" in kinds) == l2f)
  analytic = analytic_meta_gradient(learner, batch, path)
  assert_matches_reference(analytic, reference(backbone, l2f, 0))
  # The check has teeth: the second-order terms are large here.
  first = first_order_meta_gradient(backbone, l2f)
  assert max(np.abs(a - f).max() / np.abs(a).max() for a, f in zip(analytic, first)) > 1e-2


@pytest.mark.parametrize("path", ["plain", "sequential"])
@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
def test_first_order_meta_gradient_matches_finite_differences(backbone, path):
  learner, batch = make_case(backbone, True, 2)
  analytic = analytic_meta_gradient(learner, batch, path, first_order=True)
  assert_matches_reference(analytic, reference(backbone, True, 2, first_order=True))


def test_this_check_catches_keras_batch_normalization(monkeypatch):
  """The check has teeth: with Keras' BatchNormalization (variance around stop_gradient(mean))
  in conv4, the second-order meta-gradient disagrees with the finite differences (already with
  1 task and 1 inner step: the missing term is in every step)."""
  from l2f_tf.models import conv4 as conv4_module  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(conv4_module, "BatchNorm",
                      lambda name: keras.layers.BatchNormalization(epsilon=1e-5, name=name))
  learner, batch = make_learner("conv4", l2f=False, num_inner_steps=1), make_batch(0, 1)
  assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in learner.model.layers)
  analytic = analytic_meta_gradient(learner, batch, "plain")
  rows = directional_derivatives(meta_loss_value_fn(learner, batch, [None]),
                                 learner.meta_variables, seed=0)
  with pytest.raises(AssertionError, match="analytic vs finite difference"):
    assert_matches_reference(analytic, rows)
