"""Meta-gradients of MAML and L2F against central finite differences in float64."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.meta import inner_loop as inner_loop_lib
from l2f_tf.meta.attenuation import TaskConditionedAttenuation, gradient_mean_embedding
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.mlp import mlp
from tests import gradient_check

EPS = 1e-6


def mse(y, p):
  return tf.reduce_mean(tf.square(y - p))


def tiny_task(seed=0):
  rng = np.random.default_rng(seed)
  sx = rng.uniform(-2, 2, (4, 1))
  qx = rng.uniform(-2, 2, (6, 1))
  return sx, np.sin(sx), qx, np.sin(qx)


def make_learner(attenuation=None, steps=2, seed=1, activation="relu", vectorize_tasks=True):
  """A float64 learner on a tiny MLP (tanh where ReLU kinks would meet gamma = 0 exactly)."""
  keras.utils.set_random_seed(seed)
  model = mlp(hidden_units=(5, 4), activation=activation, dtype="float64")
  return MetaLearner(model, mse, num_inner_steps=steps, inner_lr=0.3,
                     attenuation=attenuation, vectorize_tasks=vectorize_tasks)


def query_loss(learner, theta, task, first_order=False, embedding=None):
  sx, sy, qx, qy = task
  adaptation = learner.adapt(sx, sy, theta=theta, first_order=first_order, embedding=embedding)
  return learner.loss_at(adaptation.fast_weights, qx, qy)


def analytic_grad(learner, task, first_order=False):
  theta = learner.theta()
  with tf.GradientTape() as tape:
    tape.watch(theta)
    loss = query_loss(learner, theta, task, first_order)
  return [g.numpy() for g in tape.gradient(loss, theta)]


def finite_difference(fn, values):
  """Central differences of scalar fn(list of tensors) w.r.t. every entry of every array.

  fn is traced once (a tf.function, called with tensors of the same shapes at every entry)
  rather than run eagerly twice per entry."""
  compiled = tf.function(fn)
  value = lambda arrays: float(compiled([tf.constant(a) for a in arrays]))
  grads = []
  for j, v in enumerate(values):
    g = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
      plus = [u.copy() for u in values]
      minus = [u.copy() for u in values]
      plus[j][idx] += EPS
      minus[j][idx] -= EPS
      g[idx] = (value(plus) - value(minus)) / (2 * EPS)
    grads.append(g)
  assert compiled.experimental_get_tracing_count() == 1
  return grads


def assert_grads_close(a, b):
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_maml_second_order_meta_gradient_matches_finite_differences():
  learner = make_learner()
  task = tiny_task()
  theta0 = [t.numpy() for t in learner.theta()]
  numeric = finite_difference(lambda th: query_loss(learner, th, task), theta0)
  assert_grads_close(analytic_grad(learner, task), numeric)


def test_first_order_differs_exactly_by_the_second_order_term():
  learner = make_learner(steps=1)
  sx, sy, qx, qy = task = tiny_task(3)
  second = analytic_grad(learner, task)
  first = analytic_grad(learner, task, first_order=True)
  # One step: d/dtheta L_q(theta - a g(theta)) = (I - a H) v with v = grad L_q(theta').
  theta = learner.theta()
  adapted = learner.adapt(sx, sy, theta=theta).fast_weights
  _, v = inner_loop_lib.gradients(lambda p: learner.loss_at(p, qx, qy), adapted)
  with tf.GradientTape() as outer:
    outer.watch(theta)
    _, g = inner_loop_lib.gradients(lambda p: learner.loss_at(p, sx, sy), theta)
    g_dot_v = tf.add_n([tf.reduce_sum(a * tf.stop_gradient(b)) for a, b in zip(g, v)])
  hessian_v = outer.gradient(g_dot_v, theta)
  assert not np.allclose(second[0], first[0])
  for s, f, hv in zip(second, first, hessian_v):
    np.testing.assert_allclose(s - f, -0.3 * hv.numpy(), rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(first[0], v[0].numpy(), rtol=1e-10)


@pytest.mark.parametrize("transform", ["sigmoid", "unconstrained", "affine"])
def test_l2f_meta_gradient_wrt_theta_holds_embedding_constant(transform):
  learner = make_learner(TaskConditionedAttenuation(transform=transform, dtype="float64"),
                         activation="tanh")
  sx, sy, _, _ = task = tiny_task(1)
  theta0 = [t.numpy() for t in learner.theta()]
  _, support_grads = inner_loop_lib.gradients(lambda p: learner.loss_at(p, sx, sy),
                                              learner.theta())
  embedding = gradient_mean_embedding(support_grads)
  numeric = finite_difference(
      lambda th: query_loss(learner, th, task, embedding=embedding), theta0)
  assert_grads_close(analytic_grad(learner, task), numeric)


def test_l2f_meta_gradient_wrt_attenuator_matches_finite_differences():
  learner = make_learner(TaskConditionedAttenuation(dtype="float64"))
  task = tiny_task(2)
  phi = learner.attenuator_variables
  with tf.GradientTape() as tape:
    loss = query_loss(learner, learner.theta(), task)
  analytic = [g.numpy() for g in tape.gradient(loss, phi)]

  def loss_at_phi(values):
    for var, value in zip(phi, values):
      var.assign(value)
    return query_loss(learner, learner.theta(), task)

  phi0 = [v.numpy() for v in phi]
  numeric = finite_difference(loss_at_phi, phi0)
  for var, value in zip(phi, phi0):
    var.assign(value)
  assert_grads_close(analytic, numeric)
  assert any(np.abs(g).max() > 1e-6 for g in analytic)


def test_meta_loss_gradient_of_l2f_flows_to_theta_and_phi():
  learner = make_learner(TaskConditionedAttenuation(dtype="float64"))
  sx, sy, qx, qy = tiny_task(4)
  batch = Episode(*(tf.constant(np.stack([a, a])) for a in (sx, sy, qx, qy)))
  with tf.GradientTape() as tape:
    loss, metrics = learner.meta_loss(batch, with_metrics=True)
  grads = tape.gradient(loss, learner.meta_variables)
  assert all(g is not None for g in grads)
  assert metrics["query_loss_per_step"].shape == (3,)
  assert metrics["gamma"].shape == (6,)


def every_path_case(l2f: bool, vectorize_tasks: bool = True):
  """A tanh MLP learner and a meta-batch of two tasks (two: the sum over tasks on every path;
  each task more only lengthens the unrolled and XLA graphs)."""
  attenuation = TaskConditionedAttenuation(dtype="float64") if l2f else None
  learner = make_learner(attenuation, activation="tanh", vectorize_tasks=vectorize_tasks)
  tasks = [tiny_task(s) for s in (5, 6)]
  return learner, Episode(*(tf.constant(np.stack(field)) for field in zip(*tasks)))


@functools.lru_cache(maxsize=None)
def every_path_reference(l2f: bool):
  """The finite differences of the meta-loss (tasks unrolled, whatever the path), computed once
  for all the paths below."""
  learner, batch = every_path_case(l2f)
  value_fn = gradient_check.meta_loss_value_fn(learner, batch,
                                               gradient_check.fixed_embeddings(learner, batch))
  return gradient_check.directional_derivatives(value_fn, learner.meta_variables, seed=4)


@pytest.mark.parametrize("path", ["plain", "compiled", "xla", "sequential", "unrolled"])
@pytest.mark.parametrize("l2f", [False, True], ids=["maml", "l2f"])
def test_mlp_meta_gradient_on_every_path_matches_finite_differences(l2f, path):
  """The sinusoid trainer runs the tasks vectorized ("compiled"); "unrolled" is the Python
  loop over tasks (MetaLearner.vectorize_tasks = False, e.g. with XLA); the vision trainer
  runs the sequential path."""
  learner, batch = every_path_case(l2f, vectorize_tasks=path != "unrolled")
  path = "compiled" if path == "unrolled" else path
  analytic = gradient_check.analytic_meta_gradient(learner, batch, path)
  gradient_check.assert_matches_reference(analytic, every_path_reference(l2f))
