"""An inner step against a hand-computed SGD step; attenuation shapes, ranges and variants."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta import diagnostics
from l2f_tf.meta.attenuation import (TaskConditionedAttenuation, TaskIndependentAttenuation,
                                     gradient_mean_embedding)
from l2f_tf.meta.learner import MetaLearner, default_inner_loop_variables
from l2f_tf.models.mlp import mlp


def mse(y, p):
  return tf.reduce_mean(tf.square(y - p))


def linear_learner(w, b, inner_lr, steps=1, learn_inner_lr=False):
  model = mlp(hidden_units=(), dtype="float64")
  model.layers[-1].kernel.assign([[w]])
  model.layers[-1].bias.assign([b])
  return MetaLearner(model, mse, num_inner_steps=steps, inner_lr=inner_lr,
                     learn_inner_lr=learn_inner_lr)


def test_one_inner_step_equals_hand_computed_sgd_step():
  w, b, lr = 0.7, -0.2, 0.05
  x = np.array([[1.0], [2.0], [-1.5]])
  y = np.array([[0.5], [3.0], [-1.0]])
  # L = mean((w x + b - y)^2): dL/dw = 2 mean(r x), dL/db = 2 mean(r).
  r = w * x[:, 0] + b - y[:, 0]
  expected_w = w - lr * 2 * np.mean(r * x[:, 0])
  expected_b = b - lr * 2 * np.mean(r)
  adapted = linear_learner(w, b, lr).adapt(x, y).fast_weights
  np.testing.assert_allclose(adapted[0].numpy(), [[expected_w]], rtol=1e-12)
  np.testing.assert_allclose(adapted[1].numpy(), [expected_b], rtol=1e-12)


def test_two_inner_steps_iterate_the_hand_computed_step():
  w, b, lr = 0.3, 0.1, 0.1
  x = np.array([[1.0], [-2.0]])
  y = np.array([[1.0], [0.0]])
  for _ in range(2):
    r = w * x[:, 0] + b - y[:, 0]
    w, b = w - lr * 2 * np.mean(r * x[:, 0]), b - lr * 2 * np.mean(r)
  adaptation = linear_learner(0.3, 0.1, lr, steps=2).adapt(x, y)
  assert len(adaptation.iterates) == 3
  np.testing.assert_allclose(adaptation.fast_weights[0].numpy(), [[w]], rtol=1e-12)
  np.testing.assert_allclose(adaptation.fast_weights[1].numpy(), [b], rtol=1e-12)


def test_learnable_inner_lrs_are_per_step_and_tensor_and_get_gradients():
  learner = linear_learner(0.3, 0.1, 0.1, steps=2, learn_inner_lr=True)
  assert learner.inner_lr_variables[0].shape == (2, 2)
  x = np.array([[1.0], [-2.0]])
  with tf.GradientTape() as tape:
    adapted = learner.adapt(x, np.sin(x)).fast_weights
    loss = mse(np.cos(x), learner.forward(adapted, x))
  grad = tape.gradient(loss, learner.inner_lr_variables)[0]
  assert np.all(np.abs(grad.numpy()) > 0)


def test_l2f_has_one_gamma_per_tensor_in_open_unit_interval():
  keras.utils.set_random_seed(0)
  learner = MetaLearner(mlp(), mse, attenuation=TaskConditionedAttenuation())
  x = np.linspace(-3, 3, 5, dtype=np.float32)[:, None]
  adaptation = learner.adapt(x, 2 * np.sin(x))
  assert adaptation.gamma.shape == (6,)  # 3 kernels + 3 biases
  assert np.all((adaptation.gamma.numpy() > 0) & (adaptation.gamma.numpy() < 1))
  theta = learner.theta()
  # The inner loop starts from theta_bar = gamma * theta.
  learner.num_inner_steps = 0
  theta_bar = learner.adapt(x, 2 * np.sin(x)).fast_weights
  for j, (t, tb) in enumerate(zip(theta, theta_bar)):
    np.testing.assert_allclose(tb.numpy(), adaptation.gamma[j].numpy() * t.numpy(), rtol=1e-6)


def test_gradient_mean_embedding_is_the_mean_of_each_tensor():
  grads = [tf.constant([[1.0, 3.0]]), tf.constant([2.0, 4.0, 6.0])]
  np.testing.assert_allclose(gradient_mean_embedding(grads).numpy(), [2.0, 4.0])


def test_affine_variant_adds_delta():
  keras.utils.set_random_seed(1)
  attenuation = TaskConditionedAttenuation(transform="affine")
  params = [tf.ones((2, 3)), tf.zeros((3,))]
  attenuation.build_for([(2, 3), (3,)])
  gamma, delta = attenuation.gamma_from_embedding(tf.constant([0.5, -0.5]))
  theta_bar, _ = attenuation.attenuate(params, embedding=tf.constant([0.5, -0.5]))
  np.testing.assert_allclose(theta_bar[1].numpy(), np.full(3, delta[1].numpy()), rtol=1e-6)
  np.testing.assert_allclose(theta_bar[0].numpy(), np.full((2, 3), gamma[0] + delta[0]),
                             rtol=1e-6)


@pytest.mark.parametrize("scope,expected_shapes", [
    ("network", [()]),
    ("layer", [(), ()]),
    ("filter", [(3,), (3,)]),
    ("parameter", [(2, 3), (3,)]),
])
def test_task_independent_scopes_start_at_one(scope, expected_shapes):
  attenuation = TaskIndependentAttenuation(scope=scope)
  attenuation.build_for([(2, 3), (3,)])
  assert [tuple(f.shape) for f in attenuation.factors] == expected_shapes
  params = [tf.random.normal((2, 3)), tf.random.normal((3,))]
  theta_bar, gamma = attenuation.attenuate(params)
  for p, q in zip(params, theta_bar):
    np.testing.assert_allclose(p.numpy(), q.numpy())
  np.testing.assert_allclose(gamma.numpy(), np.ones(2))
  attenuation.factors[-1].assign(2 * np.ones(expected_shapes[-1]))
  theta_bar, _ = attenuation.attenuate(params)
  np.testing.assert_allclose(theta_bar[1].numpy(), 2 * params[1].numpy(), rtol=1e-6)


def test_batch_norm_scale_and_offset_are_not_inner_loop_parameters():
  inputs = keras.Input((4,))
  x = keras.layers.Dense(3, use_bias=False)(inputs)
  x = keras.layers.BatchNormalization()(x)
  model = keras.Model(inputs, keras.layers.Dense(2)(x))
  inner = default_inner_loop_variables(model)
  assert len(model.trainable_variables) == 5
  assert [tuple(v.shape) for v in inner] == [(4, 3), (3, 2), (2,)]


def test_bad_configuration_names_the_setting():
  with pytest.raises(ValueError, match="transform"):
    TaskConditionedAttenuation(transform="tanh")
  with pytest.raises(ValueError, match="scope"):
    TaskIndependentAttenuation(scope="block")
  with pytest.raises(ValueError, match="task_reduction"):
    MetaLearner(mlp(), mse, task_reduction="max")
  with pytest.raises(ValueError, match="build it first"):
    MetaLearner(keras.Sequential([keras.layers.Dense(2)]), mse)


def test_degree_of_conflict_against_hand_computed_angles():
  # Two tasks, orthogonal unit gradients: v bisects them, each is 45 degrees away.
  grads = [[tf.constant([1.0, 0.0])], [tf.constant([0.0, 1.0])]]
  np.testing.assert_allclose(diagnostics.degree_of_conflict(grads).numpy(), [45.0], rtol=1e-5)
  # Identical directions (any magnitude) do not conflict.
  grads = [[tf.constant([[1.0, 2.0]])], [tf.constant([[3.0, 6.0]])]]
  np.testing.assert_allclose(diagnostics.degree_of_conflict(grads).numpy(), [0.0], atol=1e-3)
  # Three tasks at 0, 90 and 180 degrees: v = (0, 1); angles 90, 0, 90 -> mean 60 degrees.
  grads = [[tf.constant([1.0, 0.0])], [tf.constant([0.0, 1.0])], [tf.constant([-1.0, 0.0])]]
  np.testing.assert_allclose(diagnostics.degree_of_conflict(grads, degrees=False).numpy(),
                             [math.pi / 3], rtol=1e-5)


def test_tasks_are_vectorized_by_default_unless_the_model_convolves():
  """TensorFlow cannot vectorize a convolution's second-order gradient (a while_loop per task),
  so a conv model unrolls its tasks; an MLP vectorizes them; an explicit choice is kept."""
  from l2f_tf.models.conv4 import conv4  # pylint: disable=import-outside-toplevel
  loss = lambda y, p: tf.reduce_mean(tf.square(y - p))
  assert MetaLearner(mlp(), loss).vectorize_tasks
  conv = conv4(num_classes=2, image_shape=(16, 16, 1), filters=2)
  assert not MetaLearner(conv, loss).vectorize_tasks
  assert MetaLearner(conv, loss, vectorize_tasks=True).vectorize_tasks
  assert not MetaLearner(mlp(), loss, vectorize_tasks=False).vectorize_tasks


def test_predict_adapts_then_runs_the_model_at_the_adapted_weights():
  keras.utils.set_random_seed(0)
  learner = MetaLearner(mlp(), lambda y, p: tf.reduce_mean(tf.square(y - p)),
                        num_inner_steps=2, inner_lr=0.01,
                        attenuation=TaskConditionedAttenuation())
  rng = np.random.default_rng(0)
  x, y, q = (rng.normal(size=(n, 1)) for n in (5, 5, 7))  # float64 arrays: cast inside
  adaptation = learner.adapt(tf.constant(x, tf.float32), tf.constant(y, tf.float32),
                             num_steps=3)
  expected = learner.forward(adaptation.fast_weights, tf.constant(q, tf.float32))
  predicted = learner.predict(x, y, q, num_steps=3)
  assert predicted.shape == (7, 1) and predicted.dtype == tf.float32
  np.testing.assert_allclose(predicted.numpy(), expected.numpy(), rtol=1e-6)
