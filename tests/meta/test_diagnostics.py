"""The analysis measures on cases with known answers: a quadratic's smoothness, linear
regression's Hessian along the inner loop, the conflict of identical and orthogonal tasks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta import diagnostics
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.inner_loop import InnerLearningRates
from l2f_tf.meta.learner import MetaLearner

MULTIPLIERS = (0.5, 1.0, 3.0)


def quadratic(a):
  a = tf.constant(a, tf.float64)
  return lambda p: 0.5 * tf.reduce_sum(a * tf.square(p[0]))


def test_landscape_of_a_quadratic_along_an_eigenvector_is_known_in_closed_form():
  a, c, lr = np.array([4.0, 1.0, 0.5]), 2.0, 0.1
  x = np.array([c, 0.0, 0.0])  # Along the top eigenvector: g = a_max * x.
  measures = diagnostics.landscape_along_step(quadratic(a), [tf.constant(x)], [lr], MULTIPLIERS)
  measures = dict(zip(diagnostics.LANDSCAPE_MEASURES, measures.numpy()))
  losses = [0.5 * a[0] * (c * (1 - m * lr * a[0])) ** 2 for m in (0.0, *MULTIPLIERS)]
  changes = [m * lr * a[0] ** 2 * c for m in MULTIPLIERS]  # |a * (m lr g)|
  assert measures["loss_min"] == pytest.approx(min(losses), rel=1e-12)
  assert measures["loss_max"] == pytest.approx(max(losses), rel=1e-12)
  assert measures["loss_variation"] == pytest.approx(max(losses) - min(losses), rel=1e-12)
  assert measures["gradient_change_min"] == pytest.approx(min(changes), rel=1e-12)
  assert measures["gradient_change_max"] == pytest.approx(max(changes), rel=1e-12)
  assert measures["beta_smoothness"] == pytest.approx(a[0], rel=1e-12)  # The eigenvalue.


def test_beta_smoothness_of_a_quadratic_lies_between_its_eigenvalues():
  a = np.array([4.0, 1.0, 0.5])
  x = np.random.default_rng(0).normal(size=3)
  beta = diagnostics.landscape_along_step(quadratic(a), [tf.constant(x)], [0.1])[-1].numpy()
  g = a * x
  assert beta == pytest.approx(np.linalg.norm(a * g) / np.linalg.norm(g), rel=1e-12)
  assert a.min() < beta < a.max()


def test_inner_loop_landscape_measures_each_iterate_of_the_loop():
  a, lr = np.array([4.0, 1.0]), 0.1
  x0 = np.array([1.0, -2.0])
  rates = InnerLearningRates(1, 1, lr)
  rows = diagnostics.inner_loop_landscape(quadratic(a), [tf.constant(x0)], 3, rates,
                                       MULTIPLIERS).numpy()
  x = x0.copy()
  for k in range(3):
    expected = diagnostics.landscape_along_step(quadratic(a), [tf.constant(x)], [lr], MULTIPLIERS)
    np.testing.assert_allclose(rows[k], expected.numpy(), rtol=1e-12)
    x = x - lr * a * x  # The hand-computed SGD step.


def test_nonpositive_multipliers_are_refused():
  with pytest.raises(ValueError, match="positive"):
    diagnostics.landscape_along_step(quadratic([1.0]), [tf.constant([1.0], tf.float64)], [0.1],
                                  (0.0, 1.0))


def linear_regression_learner(l2f=False):
  keras.utils.set_random_seed(3)
  inputs = keras.Input((3,), dtype="float64")
  model = keras.Model(inputs, keras.layers.Dense(1, dtype="float64", name="linear")(inputs))
  mse = lambda y, p: tf.reduce_mean(tf.square(y - p))
  return MetaLearner(model, mse, num_inner_steps=2, inner_lr=0.05,
                     attenuation=TaskConditionedAttenuation(dtype="float64") if l2f else None)


def test_task_landscape_of_linear_regression_follows_its_hessian():
  # MSE of a linear model is quadratic in (w, b) with Hessian H = 2/K [X 1]^T [X 1], so along
  # the step the gradient changes by exactly H * step, and the loss is a parabola.
  learner = linear_regression_learner()
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
  measured = diagnostics.task_landscape(learner, tf.constant(x), tf.constant(y), MULTIPLIERS)
  design = np.concatenate([x, np.ones((8, 1))], axis=1)
  hessian = 2.0 / 8 * design.T @ design
  w = np.concatenate([v.numpy().reshape(-1) for v in learner.inner_variables])
  loss = lambda w: np.mean((design @ w - y[:, 0]) ** 2)
  rows = []
  for _ in range(2):
    g = 2.0 / 8 * design.T @ (design @ w - y[:, 0])
    losses = [loss(w - m * 0.05 * g) for m in (0.0, *MULTIPLIERS)]
    changes = [np.linalg.norm(hessian @ (m * 0.05 * g)) for m in MULTIPLIERS]
    rows.append([min(losses), max(losses), max(losses) - min(losses), min(changes),
                 max(changes), np.linalg.norm(hessian @ g) / np.linalg.norm(g)])
    w = w - 0.05 * g
  np.testing.assert_allclose(measured.numpy(), np.mean(rows, axis=0), rtol=1e-10)


def test_task_landscape_of_l2f_starts_from_the_attenuated_initialisation():
  learner = linear_regression_learner(l2f=True)
  rng = np.random.default_rng(1)
  x, y = tf.constant(rng.normal(size=(8, 3))), tf.constant(rng.normal(size=(8, 1)))
  theta_bar, gamma = learner.attenuate(x, y)
  assert not np.allclose(gamma.numpy(), 1.0)
  expected = tf.reduce_mean(diagnostics.inner_loop_landscape(
      lambda p: learner.loss_at(p, x, y), theta_bar, 2, learner.inner_lrs, MULTIPLIERS), axis=0)
  np.testing.assert_allclose(diagnostics.task_landscape(learner, x, y, MULTIPLIERS).numpy(),
                             expected.numpy(), rtol=1e-12)
  from_theta = tf.reduce_mean(diagnostics.inner_loop_landscape(
      lambda p: learner.loss_at(p, x, y), learner.theta(), 2, learner.inner_lrs, MULTIPLIERS),
                              axis=0)
  assert not np.allclose(from_theta.numpy(), expected.numpy())
  np.testing.assert_allclose(  # The controlled comparison: same weights, no attenuation.
      diagnostics.task_landscape(learner, x, y, MULTIPLIERS, attenuate=False).numpy(),
      from_theta.numpy(), rtol=1e-12)


def test_batch_landscape_has_one_row_per_task_in_task_order():
  learner = linear_regression_learner()
  rng = np.random.default_rng(2)
  x, y = tf.constant(rng.normal(size=(3, 8, 3))), tf.constant(rng.normal(size=(3, 8, 1)))

  class Batch:
    support_x, support_y = x, y

  rows = tf.function(lambda: diagnostics.batch_landscape(learner, Batch, MULTIPLIERS))().numpy()
  assert rows.shape == (3, len(diagnostics.LANDSCAPE_MEASURES))
  for t in range(3):
    np.testing.assert_allclose(rows[t], diagnostics.task_landscape(learner, x[t], y[t],
                                                                MULTIPLIERS).numpy(), rtol=1e-12)


def test_per_task_conflict_is_zero_for_identical_tasks_and_45_degrees_for_orthogonal_ones():
  same = [[tf.constant([1.0, 2.0]), tf.constant([[3.0]])]] * 3
  np.testing.assert_allclose(diagnostics.per_task_conflict(same).numpy(), np.zeros((3, 2)),
                             atol=1e-6)
  orthogonal = [[tf.constant([1.0, 0.0])], [tf.constant([0.0, 1.0])]]
  np.testing.assert_allclose(diagnostics.per_task_conflict(orthogonal).numpy(), [[45.0], [45.0]],
                             rtol=1e-6)
  # Unequal norms: the sum leans toward the longer gradient, whose angle is smaller.
  unequal = [[tf.constant([3.0, 0.0])], [tf.constant([0.0, 1.0])]]
  angles = diagnostics.per_task_conflict(unequal).numpy()[:, 0]
  np.testing.assert_allclose(angles, np.degrees([np.arctan(1 / 3), np.arctan(3)]), rtol=1e-6)
  np.testing.assert_allclose(diagnostics.degree_of_conflict(unequal).numpy(), [angles.mean()],
                             rtol=1e-6)
