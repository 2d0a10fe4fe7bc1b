"""BatchNorm and MaxPool: forward values, exact second derivatives, saving, inner-loop rule,
and the learner's warning about the Keras layers they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.learner import default_inner_loop_variables, warn_about_inexact_layers
from l2f_tf.models.batch_norm import BatchNorm
from l2f_tf.models.conv4 import conv4
from l2f_tf.models import pooling
from l2f_tf.models.pooling import MaxPool
from l2f_tf.models.resnet12 import resnet12


def test_batch_norm_forward_is_the_batch_statistics_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(2.0, 3.0, size=(3, 5, 4, 2))
  layer = BatchNorm(epsilon=1e-5, dtype="float64")
  layer.build(x.shape)
  layer.gamma.assign([0.5, -2.0])
  layer.beta.assign([1.0, 0.25])
  mean = x.mean(axis=(0, 1, 2))
  var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
  expected = (x - mean) / np.sqrt(var + 1e-5) * [0.5, -2.0] + [1.0, 0.25]
  np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12)
  # No running averages: training and inference give the same (batch-statistics) output.
  np.testing.assert_allclose(layer(x, training=False).numpy(), expected, rtol=1e-12)
  assert not layer.non_trainable_variables


def test_batch_norm_equals_keras_batch_normalization_in_training_mode():
  x = np.random.default_rng(1).normal(size=(6, 3, 3, 4)).astype(np.float32)
  ours, theirs = BatchNorm(epsilon=1e-3), keras.layers.BatchNormalization(epsilon=1e-3)
  np.testing.assert_allclose(ours(x).numpy(), theirs(x, training=True).numpy(), atol=2e-6)


def second_derivative_error(layer_fn, x, jit_compile=None):
  """Max relative error of d/dx <v, d/dx sum(w * f(x))> against central differences; the
  whole computation runs eagerly (jit_compile None) or in one tf.function (with or without
  XLA), as a meta-training step does."""
  rng = np.random.default_rng(2)
  weights = tf.constant(rng.normal(size=layer_fn(x).shape))
  v = tf.constant(rng.normal(size=x.shape))

  def directional_gradient(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.reduce_sum(weights * tf.sin(layer_fn(x)))
    return tf.reduce_sum(v * tape.gradient(y, x))

  def second_order(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      value = directional_gradient(x)
    return tape.gradient(value, x)

  if jit_compile is not None:
    directional_gradient = tf.function(directional_gradient, jit_compile=jit_compile)
    second_order = tf.function(second_order, jit_compile=jit_compile)
  x = tf.constant(x)
  analytic = second_order(x).numpy()
  u = rng.normal(size=x.shape)
  h = 1e-6
  numeric = (directional_gradient(x + h * u) - directional_gradient(x - h * u)).numpy() / (2 * h)
  return abs(np.sum(analytic * u) - numeric) / abs(numeric)


def test_batch_norm_second_derivative_is_exact_and_keras_is_not():
  x = np.random.default_rng(3).normal(size=(4, 3, 3, 2))
  ours = BatchNorm(dtype="float64")
  theirs = keras.layers.BatchNormalization(epsilon=1e-5, dtype="float64")
  assert second_derivative_error(ours, x) < 1e-7
  assert second_derivative_error(lambda t: theirs(t, training=True), x) > 1e-3


@pytest.mark.parametrize("jit_compile", [None, False, True])
def test_max_pool_matches_keras_and_has_exact_second_derivatives(jit_compile):
  x = np.random.default_rng(4).normal(size=(2, 7, 6, 3))  # odd height: last row dropped
  layer = MaxPool(2, dtype="float64")
  np.testing.assert_array_equal(layer(x).numpy(),
                                keras.layers.MaxPooling2D(2, dtype="float64")(x).numpy())
  assert layer.compute_output_shape((None, 7, 6, 3)) == (None, 3, 3, 3)
  assert second_derivative_error(layer, x, jit_compile) < 1e-7


def test_xla_max_pool_grad_grad_picks_wrong_maxima():
  """Why MaxPool exists: values equal to bfloat16 precision confuse XLA's MaxPoolGradGrad."""
  x = tf.constant([[[[1.0], [1.001]], [[-1.0], [0.0]]]])  # one 2x2 window, max 1.001

  def grad_of_grad(x):
    with tf.GradientTape() as outer:
      outer.watch(x)
      with tf.GradientTape() as inner:
        inner.watch(x)
        y = tf.reduce_sum(tf.nn.max_pool2d(x, 2, 2, "VALID") * x[0, 0, 0, 0])
      g = inner.gradient(y, x)
      z = tf.reduce_sum(g * tf.constant([[[[1.0], [2.0]], [[0.0], [0.0]]]]))
    return outer.gradient(z, x)

  exact = tf.function(grad_of_grad)(x).numpy()
  xla = tf.function(grad_of_grad, jit_compile=True)(x).numpy()
  assert not np.allclose(exact, xla)


def test_layers_serialise_and_batch_norm_is_outer_loop_only():
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(2, 3, use_bias=False)(inputs)
  x = BatchNorm(epsilon=1e-4, name="bn")(x)
  x = MaxPool(3, name="pool")(x)
  model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
  clone = keras.Model.from_config(model.get_config())
  assert clone.get_layer("bn").epsilon == 1e-4 and clone.get_layer("pool").size == 3
  assert [tuple(v.shape) for v in default_inner_loop_variables(model)] == [
      (3, 3, 1, 2), (8, 2), (2,)]
  with pytest.raises(ValueError, match="size"):
    MaxPool(0)


def test_learner_warns_about_keras_layers_that_break_second_order():
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 3)(inputs))
  x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
  keras_model = keras.Model(inputs, keras.layers.Dense(2)(x), name="mine")
  messages = warn_about_inexact_layers(keras_model)
  assert len(messages) == 2
  assert "l2f_tf.BatchNorm" in messages[0] and "l2f_tf.MaxPool" in messages[1]
  assert warn_about_inexact_layers(conv4(num_classes=2, image_shape=(16, 16, 1), filters=2)) == []
  assert warn_about_inexact_layers(
      resnet12(num_classes=2, image_shape=(16, 16, 1), channels=(2, 2, 2, 2))) == []


def test_max_pool_xla_safe_path_is_exact_outside_xla_too(monkeypatch):
  """The mask-based second derivative (used under XLA, or if TensorFlow's XLA test is gone)."""
  monkeypatch.setattr(pooling, "_in_xla_context", lambda: True)
  x = np.random.default_rng(6).normal(size=(2, 5, 4, 2))
  layer = MaxPool(2, dtype="float64")
  assert second_derivative_error(layer, x) < 1e-7
  assert second_derivative_error(layer, x, jit_compile=False) < 1e-7


@pytest.mark.parametrize("size", [2, 3])
def test_max_pool_second_order_equals_tensorflows_max_pool_grad_grad(size):
  """Outside XLA the derivative of the backward pass is MaxPoolGrad's one-hot mask times the
  incoming gradient, summed per window; TensorFlow's own MaxPoolGradGrad gives the same."""
  rng = np.random.default_rng(8)
  x = tf.constant(rng.normal(size=(3, 11, 9, 4)).astype(np.float32))
  weights = tf.constant(rng.normal(size=(3, 11 // size, 9 // size, 4)).astype(np.float32))
  v = tf.constant(rng.normal(size=x.shape).astype(np.float32))

  @tf.function
  def hessian_vector(pool_fn, x):
    with tf.GradientTape() as outer:
      outer.watch(x)
      with tf.GradientTape() as inner:
        inner.watch(x)
        y = tf.reduce_sum(weights * tf.square(pool_fn(x)))
      directional = tf.reduce_sum(v * inner.gradient(y, x))
    return outer.gradient(directional, x)

  ours = hessian_vector(lambda t: pooling.max_pool(t, size), x)
  window = [1, size, size, 1]
  theirs = hessian_vector(lambda t: tf.nn.max_pool2d(t, window, window, "VALID"), x)
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-6)
  assert np.abs(theirs.numpy()).max() > 0.1
