"""Tests of TRPO's pieces: flattening, conjugate gradient, Hessian-vector products, line search."""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow is imported)

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.rl import trpo

DTYPES = [tf.float32, tf.float64]


def spd_matrix(n, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, n))
  return a @ a.T + n * np.eye(n)


# --- flatten / unflatten --------------------------------------------------------------------

def test_flatten_unflatten_round_trip():
  tensors = [tf.reshape(tf.range(6.0), [2, 3]), tf.constant(6.0), tf.constant([7.0, 8.0, 9.0])]
  flat = trpo.flatten(tensors)
  np.testing.assert_array_equal(flat.numpy(), np.arange(10.0))
  back = trpo.unflatten(flat, tensors)
  for got, expected in zip(back, tensors):
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


# --- conjugate gradient ---------------------------------------------------------------------

@pytest.mark.parametrize("in_graph", [False, True])
def test_conjugate_gradient_solves_spd_system(in_graph):
  a = spd_matrix(6)
  b = np.random.default_rng(1).normal(size=6)
  matrix = tf.constant(a)

  def solve(rhs):
    return trpo.conjugate_gradient(lambda x: tf.linalg.matvec(matrix, x), rhs, iterations=10)

  solve = tf.function(solve) if in_graph else solve
  x = solve(tf.constant(b)).numpy()
  np.testing.assert_allclose(x, np.linalg.solve(a, b), atol=1e-6)


def test_conjugate_gradient_residual_is_b_minus_a_x_when_truncated():
  # 3 iterations on an ill-conditioned 8 x 8 system: far from converged, yet the recursively
  # updated residual equals b - A x, which TRPO's step size uses instead of another product.
  rng = np.random.default_rng(2)
  q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
  a = q @ np.diag(np.logspace(-3, 2, 8)) @ q.T
  b = rng.normal(size=8)
  matrix = tf.constant(a)
  x, r = trpo.conjugate_gradient_and_residual(lambda v: tf.linalg.matvec(matrix, v),
                                              tf.constant(b), iterations=3)
  assert np.linalg.norm(a @ x.numpy() - b) > 0.1 * np.linalg.norm(b)  # not converged
  np.testing.assert_allclose(r.numpy(), b - a @ x.numpy(), atol=1e-12)


def test_trpo_step_size_uses_the_explicit_curvature_of_the_cg_direction():
  # loss = g . theta, KL = 1/2 theta^T A theta: the step is -sqrt(2 max_kl / s^T (A + dI) s) s
  # with s conjugate gradient's truncated solution, checked against the explicit matrix.
  rng = np.random.default_rng(3)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  a = q @ np.diag(np.logspace(-2, 1, 6)) @ q.T
  g = rng.normal(size=6)
  theta = tf.Variable(tf.zeros(6, tf.float64))
  matrix = tf.constant(a)
  loss_fn = lambda: tf.reduce_sum(tf.constant(g) * theta)
  kl_fn = lambda: 0.5 * tf.reduce_sum(theta * tf.linalg.matvec(matrix, theta))
  out = trpo.trpo_step(loss_fn, kl_fn, [theta], max_kl=0.01, cg_iterations=3, damping=1e-3)
  damped = a + 1e-3 * np.eye(6)
  s = trpo.conjugate_gradient(lambda v: tf.linalg.matvec(tf.constant(damped), v),
                              tf.constant(g), iterations=3).numpy()
  expected = np.sqrt(2 * 0.01 / (s @ damped @ s + trpo.STEP_SIZE_EPSILON))
  np.testing.assert_allclose(float(out["step_size"]), expected, rtol=1e-8)


def test_conjugate_gradient_stops_early_and_handles_zero():
  calls = []

  def identity(x):
    calls.append(1)
    return x

  b = tf.constant([1.0, -2.0, 3.0], tf.float64)
  np.testing.assert_allclose(trpo.conjugate_gradient(identity, b).numpy(), b.numpy())
  assert len(calls) == 1  # exact after one iteration for A = I
  np.testing.assert_array_equal(trpo.conjugate_gradient(identity, tf.zeros(3)).numpy(),
                                np.zeros(3))


# --- Hessian-vector products ----------------------------------------------------------------

def curvature_products(fn, variables, damping):
  """v -> (H + damping I) v of fn() through ``trpo.recorded_curvature`` (KL = fn)."""
  return trpo.recorded_curvature(lambda: (fn(), fn()), variables, damping)[2]


def test_hvp_equals_explicit_hessian_of_quadratic_plus_sine():
  a = tf.constant(spd_matrix(3, seed=2))
  w = tf.Variable([[0.3, -0.7], [1.1, 0.2], [0.0, 0.5]], dtype=tf.float64)
  c = tf.Variable([0.4, -0.1], dtype=tf.float64)

  def of_flat(theta):
    head, weights, tail = theta[:3], tf.reshape(theta[:6], [3, 2]), theta[6:]
    return (0.5 * tf.reduce_sum(head * tf.linalg.matvec(a, head))
            + tf.reduce_sum(tf.sin(weights)) * tail[0] + tail[1] ** 3)

  def f():
    return of_flat(tf.concat([tf.reshape(w, [-1]), c], axis=0))

  @tf.function
  def explicit():  # tf.hessians only exists in graph mode.
    theta = tf.concat([tf.reshape(w, [-1]), c], axis=0)
    return tf.hessians(of_flat(theta), theta)[0]

  hessian = explicit().numpy()
  hvp = curvature_products(f, [w, c], damping=1e-3)
  rng = np.random.default_rng(3)
  for _ in range(3):
    v = rng.normal(size=8)
    np.testing.assert_allclose(hvp(tf.constant(v)).numpy(), hessian @ v + 1e-3 * v, rtol=1e-8,
                               atol=1e-10)


def finite_difference_hessian(fn, variable, eps=1e-5):
  """Central differences of the gradient of fn() w.r.t. a float64 vector variable."""
  base = variable.numpy().copy()
  columns = []
  for j in range(base.size):
    grads = []
    for sign in (1.0, -1.0):
      shifted = base.copy()
      shifted[j] += sign * eps
      variable.assign(shifted)
      with tf.GradientTape() as tape:
        value = fn()
      grads.append(tape.gradient(value, variable).numpy())
    columns.append((grads[0] - grads[1]) / (2 * eps))
  variable.assign(base)
  return np.stack(columns, axis=1)


@pytest.mark.parametrize("in_graph", [False, True])
def test_hvp_through_a_differentiated_inner_step(in_graph):
  theta = tf.Variable([0.3, -0.5, 0.8], dtype=tf.float64)
  x = tf.constant([[1.0, 0.5, -0.2], [0.1, -1.0, 0.7], [0.4, 0.3, 0.9]], tf.float64)

  def kl_like():
    # MAML-style: one differentiated gradient step, then a nonlinear function of theta'.
    with tf.GradientTape() as tape:
      tape.watch(theta)
      inner = tf.reduce_sum(tf.tanh(tf.linalg.matvec(x, theta)) ** 2)
    adapted = theta - 0.3 * tape.gradient(inner, theta)
    return tf.reduce_sum(tf.exp(0.5 * adapted)) + tf.reduce_sum(adapted ** 4) * 0.1

  hessian = finite_difference_hessian(kl_like, theta)
  v = tf.constant([0.2, -1.0, 0.5], tf.float64)
  product = lambda: curvature_products(kl_like, [theta], damping=0.0)(v)
  product = tf.function(product) if in_graph else product
  np.testing.assert_allclose(product().numpy(), hessian @ v.numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("in_graph", [False, True])
def test_recorded_curvature_gives_loss_gradient_and_products_through_an_inner_step(in_graph):
  # The recorded products (one forward pass, then vector-Jacobian products of the recorded KL
  # gradient, also inside a while loop) equal finite differences of the KL gradient.
  theta = tf.Variable([0.3, -0.5, 0.8], dtype=tf.float64)
  x = tf.constant([[1.0, 0.5, -0.2], [0.1, -1.0, 0.7], [0.4, 0.3, 0.9]], tf.float64)

  def adapted():
    with tf.GradientTape() as tape:
      tape.watch(theta)
      inner = tf.reduce_sum(tf.tanh(tf.linalg.matvec(x, theta)) ** 2)
    return theta - 0.3 * tape.gradient(inner, theta)

  kl_fn = lambda: tf.reduce_sum(tf.exp(0.5 * adapted())) + tf.reduce_sum(adapted() ** 4) * 0.1
  loss_fn = lambda: tf.reduce_sum(tf.sin(adapted()))
  vectors = tf.constant([[0.2, -1.0, 0.5], [1.0, 0.0, -0.3]], tf.float64)

  def recorded():
    loss, grads, hvp = trpo.recorded_curvature(lambda: (loss_fn(), kl_fn()), [theta], 1e-3)
    products = tf.map_fn(hvp, vectors)  # a while loop in graph mode
    return loss, grads[0], products

  loss, grad, products = (tf.function(recorded) if in_graph else recorded)()
  with tf.GradientTape() as tape:
    expected_loss = loss_fn()
  np.testing.assert_allclose(loss.numpy(), expected_loss.numpy(), rtol=1e-12)
  np.testing.assert_allclose(grad.numpy(), tape.gradient(expected_loss, theta).numpy(),
                             rtol=1e-12)
  hessian = finite_difference_hessian(kl_fn, theta)
  for v, product in zip(vectors.numpy(), products):
    np.testing.assert_allclose(product.numpy(), hessian @ v + 1e-3 * v, rtol=1e-6, atol=1e-8)


def test_fused_objective_step_equals_separate_callables():
  loss_fn, kl_fn, variables = categorical_problem(tf.float64, inner_lr=0.5)
  start = [v.numpy().copy() for v in variables]
  separate = trpo.trpo_step(loss_fn, kl_fn, variables)
  after_separate = [v.numpy().copy() for v in variables]
  for v, s in zip(variables, start):
    v.assign(s)
  fused = trpo.trpo_step(lambda: (loss_fn(), kl_fn()), None, variables)
  for key in separate:
    np.testing.assert_allclose(fused[key].numpy(), separate[key].numpy(), rtol=1e-10)
  for v, expected in zip(variables, after_separate):
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-10)


# --- TRPO on a categorical policy -----------------------------------------------------------

def categorical_problem(dtype, seed=0, inner_lr=None):
  """A linear softmax policy on fixed data: (loss_fn, kl_fn, variables).

  With inner_lr, the policy that loss and KL evaluate is adapted by one differentiated
  policy-gradient step first, as in MAML-TRPO.
  """
  rng = np.random.default_rng(seed)
  obs = tf.constant(rng.normal(size=(64, 4)), dtype)
  actions = tf.constant(rng.integers(0, 3, size=64), tf.int32)
  advantages = tf.constant(rng.normal(size=64), dtype)
  weights = tf.Variable(tf.constant(0.1 * rng.normal(size=(4, 3)), dtype))
  bias = tf.Variable(tf.zeros(3, dtype))
  variables = [weights, bias]

  def logits_of(params):
    w, b = params
    if inner_lr is not None:
      with tf.GradientTape() as tape:
        tape.watch([w, b])
        logp = tf.nn.log_softmax(tf.matmul(obs, w) + b)
        chosen = tf.gather(logp, actions, batch_dims=1)
        inner_loss = -tf.reduce_mean(chosen * advantages)
      gw, gb = tape.gradient(inner_loss, [w, b])
      w, b = w - inner_lr * gw, b - inner_lr * gb
    return tf.matmul(obs, w) + b

  old_logp = tf.nn.log_softmax(logits_of([tf.constant(weights), tf.constant(bias)]))
  old_chosen = tf.gather(old_logp, actions, batch_dims=1)

  def loss_fn():
    logp = tf.nn.log_softmax(logits_of(variables))
    ratio = tf.exp(tf.gather(logp, actions, batch_dims=1) - old_chosen)
    return -tf.reduce_mean(ratio * advantages)

  def kl_fn():
    logp = tf.nn.log_softmax(logits_of(variables))
    return tf.reduce_mean(tf.reduce_sum(tf.exp(old_logp) * (old_logp - logp), axis=-1))

  return loss_fn, kl_fn, variables


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_graph", [False, True])
@pytest.mark.parametrize("inner_lr", [None, 0.5])
def test_trpo_step_improves_within_kl_limit(dtype, in_graph, inner_lr):
  loss_fn, kl_fn, variables = categorical_problem(dtype, inner_lr=inner_lr)
  step = lambda: trpo.trpo_step(loss_fn, kl_fn, variables, max_kl=0.01)
  step = tf.function(step) if in_graph else step
  before = [v.numpy().copy() for v in variables]
  out = {k: v.numpy() for k, v in step().items()}
  assert out["accepted"]
  assert out["loss_after"] < out["loss_before"]
  assert 0 < out["kl"] <= 0.01
  assert 0 <= out["backtracks"] < 15
  assert out["expected_improvement"] > 0
  # The diagnostics describe the assigned variables.
  np.testing.assert_allclose(loss_fn().numpy(), out["loss_after"], rtol=1e-5)
  np.testing.assert_allclose(kl_fn().numpy(), out["kl"], rtol=1e-4)
  assert any(np.any(v.numpy() != b) for v, b in zip(variables, before))


def test_trpo_full_step_kl_matches_the_quadratic_model():
  # Small max_kl: the KL of the full step is max_kl up to third-order terms, so the accepted
  # step 0.8^k full step has KL close to 0.8^(2k) max_kl (k = 0, or 1 if the full step
  # overshoots max_kl by a hair).
  loss_fn, kl_fn, variables = categorical_problem(tf.float64)
  out = trpo.trpo_step(loss_fn, kl_fn, variables, max_kl=1e-4)
  assert out["accepted"] and out["backtracks"] <= 1
  full_step_kl = out["kl"].numpy() / 0.8 ** (2 * int(out["backtracks"]))
  np.testing.assert_allclose(full_step_kl, 1e-4, rtol=0.02)


# --- rejection ------------------------------------------------------------------------------

@tf.custom_gradient
def _misleading_square(v):
  """sum(v^2), with a gradient that points the wrong way (so no TRPO step can improve)."""
  def grad(upstream):
    return upstream * (-2.0 * v - 1.0)
  return tf.reduce_sum(v ** 2), grad


@pytest.mark.parametrize("in_graph", [False, True])
def test_step_that_cannot_improve_is_rejected_and_restored_exactly(in_graph):
  v = tf.Variable([0.3, -0.2], dtype=tf.float64)
  start = v.numpy().copy()
  old = tf.constant(start)
  loss_fn = lambda: _misleading_square(v)
  kl_fn = lambda: 0.5 * tf.reduce_sum((v - old) ** 2)
  step = lambda: trpo.trpo_step(loss_fn, kl_fn, [v], max_kl=0.01)
  step = tf.function(step) if in_graph else step
  out = step()
  assert not out["accepted"]
  assert int(out["backtracks"]) == 15
  assert out["loss_after"].numpy() == out["loss_before"].numpy()
  assert out["kl"].numpy() == 0
  np.testing.assert_array_equal(v.numpy(), start)


def test_step_at_the_minimum_is_rejected():
  loss_fn, kl_fn, variables = categorical_problem(tf.float64)
  target = [tf.constant(v) for v in variables]
  at_minimum = lambda: tf.add_n(
      [tf.reduce_sum((v - t) ** 2) for v, t in zip(variables, target)])
  start = [v.numpy().copy() for v in variables]
  out = trpo.trpo_step(at_minimum, kl_fn, variables)
  assert not out["accepted"] and out["grad_norm"] == 0
  for v, s in zip(variables, start):
    np.testing.assert_array_equal(v.numpy(), s)
  del loss_fn


@pytest.mark.parametrize("in_graph", [False, True])
def test_line_search_backtracks_until_the_kl_limit_holds(in_graph):
  # Loss decreases along the step everywhere; KL = 0.5 |v - v_old|^2 = 0.5 * 0.8^(2k) * |s|^2.
  v = tf.Variable([0.0, 0.0], dtype=tf.float64)
  full_step = tf.constant([1.0, 0.0], tf.float64)
  loss_fn = lambda: -v[0]
  kl_fn = lambda: 0.5 * tf.reduce_sum(v ** 2)
  search = lambda: trpo.line_search(loss_fn, kl_fn, [v], full_step, max_kl=0.01)
  search = tf.function(search) if in_graph else search
  accepted, backtracks, loss, kl = search()
  # First k with 0.5 * 0.64^k <= 0.01: k = 9.
  expected_k = next(k for k in range(15) if 0.5 * 0.8 ** (2 * k) <= 0.01)
  assert bool(accepted) and int(backtracks) == expected_k == 9
  np.testing.assert_allclose(v.numpy(), [0.8 ** expected_k, 0.0], rtol=1e-12)
  np.testing.assert_allclose(loss.numpy(), -0.8 ** expected_k, rtol=1e-12)
  np.testing.assert_allclose(kl.numpy(), 0.5 * 0.8 ** (2 * expected_k), rtol=1e-12)
  # With a KL limit no step size in 0.8^0..0.8^14 meets, everything is rejected and restored.
  v.assign([0.0, 0.0])
  accepted, backtracks, loss, kl = trpo.line_search(loss_fn, kl_fn, [v], full_step, max_kl=1e-9)
  assert not bool(accepted) and int(backtracks) == 15 and loss.numpy() == 0 and kl.numpy() == 0
  np.testing.assert_array_equal(v.numpy(), [0.0, 0.0])


# --- Keras 3 variables ----------------------------------------------------------------------

def keras_policy_problem():
  """A small Keras 3 MLP softmax policy: (loss_fn, kl_fn, model)."""
  init = lambda seed: keras.initializers.GlorotUniform(seed=seed)
  model = keras.Sequential([keras.Input((4,)),
                            keras.layers.Dense(8, activation="tanh", kernel_initializer=init(1)),
                            keras.layers.Dense(3, kernel_initializer=init(2))])
  rng = np.random.default_rng(0)
  obs = tf.constant(rng.normal(size=(64, 4)), tf.float32)
  actions = tf.constant(rng.integers(0, 3, size=64), tf.int32)
  advantages = tf.constant(rng.normal(size=64), tf.float32)
  old_logp = tf.nn.log_softmax(model(obs))
  old_chosen = tf.gather(old_logp, actions, batch_dims=1)

  def loss_fn():
    logp = tf.nn.log_softmax(model(obs))
    return -tf.reduce_mean(tf.exp(tf.gather(logp, actions, batch_dims=1) - old_chosen)
                           * advantages)

  def kl_fn():
    logp = tf.nn.log_softmax(model(obs))
    return tf.reduce_mean(tf.reduce_sum(tf.exp(old_logp) * (old_logp - logp), axis=-1))

  return loss_fn, kl_fn, model


def test_trpo_step_on_keras_variables_eager_equals_graph():
  def run(in_graph):
    loss_fn, kl_fn, model = keras_policy_problem()
    step = lambda: trpo.trpo_step(loss_fn, kl_fn, model.trainable_variables)
    out = (tf.function(step) if in_graph else step)()
    assert out["accepted"] and out["kl"] <= 0.01 and out["loss_after"] < out["loss_before"]
    np.testing.assert_allclose(loss_fn().numpy(), out["loss_after"].numpy(), rtol=1e-5)
    return [v.numpy() for v in model.trainable_variables]

  for eager, graph in zip(run(False), run(True)):
    # float32: conjugate gradient amplifies the rounding differences of eager vs graph.
    np.testing.assert_allclose(eager, graph, rtol=1e-4, atol=2e-5)


# --- Gauss-Newton (Fisher) products ---------------------------------------------------------

def gaussian_through_an_inner_step():
  """(theta, outputs_fn, kl_of(outputs), kl_fn): a Gaussian whose [mean, log_std] come from a
  MAML-style differentiated inner step; the KL is from the outputs at theta's current value."""
  theta = tf.Variable([0.3, -0.5, 0.8, 0.1], dtype=tf.float64)
  x = tf.constant([[1.0, 0.5, -0.2, 0.3], [0.1, -1.0, 0.7, -0.4], [0.4, 0.3, 0.9, 0.2]],
                  tf.float64)

  def outputs_fn():
    with tf.GradientTape() as tape:
      tape.watch(theta)
      inner = tf.reduce_sum(tf.tanh(tf.linalg.matvec(x, theta)) ** 2)
    adapted = theta - 0.3 * tape.gradient(inner, theta)
    mean = tf.tanh(tf.linalg.matvec(x, adapted))
    log_std = 0.5 * tf.sin(tf.linalg.matvec(x, adapted[::-1]))
    return tf.stack([mean, log_std], axis=-1)  # [3 steps, 2]

  old = tf.constant(outputs_fn().numpy())
  weights = tf.constant([0.5, 0.25, 0.25], tf.float64)

  def kl_of(outputs):
    from l2f_tf.rl import policy_gradient as pg
    return pg.mean_kl(old, outputs, weights)

  return theta, outputs_fn, kl_of, lambda: kl_of(outputs_fn())


@pytest.mark.parametrize("in_graph", [False, True])
def test_fisher_products_equal_finite_differences_of_the_kl_gradient(in_graph):
  # At the old policy the Gauss-Newton product J^T M J v is the KL's Hessian (second order
  # through the inner step): checked against central differences in float64.
  theta, outputs_fn, kl_of, kl_fn = gaussian_through_an_inner_step()
  loss_fn = lambda outputs: tf.reduce_sum(tf.sin(outputs))
  vectors = tf.constant([[0.2, -1.0, 0.5, 0.3], [1.0, 0.0, -0.3, -0.7]], tf.float64)

  def fisher():
    def objective():
      outputs = outputs_fn()
      return loss_fn(outputs), outputs
    loss, grads, hvp = trpo.fisher_curvature(objective, kl_of, [theta], 1e-3)
    return loss, grads[0], tf.map_fn(hvp, vectors)  # a while loop in graph mode

  loss, grad, products = (tf.function(fisher) if in_graph else fisher)()
  with tf.GradientTape() as tape:
    expected_loss = loss_fn(outputs_fn())
  np.testing.assert_allclose(loss.numpy(), expected_loss.numpy(), rtol=1e-12)
  np.testing.assert_allclose(grad.numpy(), tape.gradient(expected_loss, theta).numpy(),
                             rtol=1e-12)
  hessian = finite_difference_hessian(kl_fn, theta)
  assert np.abs(hessian).max() > 1e-2  # a real curvature, not a vanishing one
  for v, product in zip(vectors.numpy(), products):
    np.testing.assert_allclose(product.numpy(), hessian @ v + 1e-3 * v, rtol=1e-6, atol=1e-9)


def test_fisher_products_differ_from_the_hessian_away_from_the_old_policy():
  # The Gauss-Newton form drops d^2 z / dtheta^2 . dKL/dz, which is zero only at the old
  # policy: one step away the two matrices differ (so the test above is not vacuous).
  theta, outputs_fn, kl_of, kl_fn = gaussian_through_an_inner_step()
  theta.assign_add([0.3, -0.2, 0.1, 0.4])
  v = tf.constant([0.2, -1.0, 0.5, 0.3], tf.float64)
  _, _, fisher = trpo.fisher_curvature(lambda: (tf.zeros([], tf.float64), outputs_fn()), kl_of,
                                       [theta], 0.0)
  hessian = finite_difference_hessian(kl_fn, theta)
  assert np.abs(fisher(v).numpy() - hessian @ v.numpy()).max() > 1e-3


@pytest.mark.parametrize("in_graph", [False, True])
def test_trpo_step_with_fisher_products_equals_the_exact_step(in_graph):
  results = []
  for use_fisher in (False, True):
    theta, outputs_fn, kl_of, _ = gaussian_through_an_inner_step()
    surrogate = lambda outputs: -tf.reduce_sum(outputs[:, 0] * tf.constant([1.0, -0.5, 0.3],
                                                                          tf.float64))
    if use_fisher:
      step = lambda: trpo.trpo_step(lambda: (surrogate(outputs_fn()), outputs_fn()), None,
                                    [theta], output_kl=kl_of)
    else:
      step = lambda: trpo.trpo_step(
          lambda: (lambda o: (surrogate(o), kl_of(o)))(outputs_fn()), None, [theta])
    diagnostics = (tf.function(step) if in_graph else step)()
    assert bool(diagnostics["accepted"])
    results.append((theta.numpy().copy(), float(diagnostics["step_size"])))
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-9)
  assert results[1][1] == pytest.approx(results[0][1], rel=1e-9)


def test_trpo_step_with_output_kl_refuses_a_separate_kl_fn():
  theta, outputs_fn, kl_of, kl_fn = gaussian_through_an_inner_step()
  with pytest.raises(ValueError, match="kl_fn=None"):
    trpo.trpo_step(lambda: (tf.zeros([], tf.float64), outputs_fn()), kl_fn, [theta],
                   output_kl=kl_of)


@pytest.mark.parametrize("use_fisher", [False, True])
def test_curvature_on_a_subsample_steps_along_its_own_curvature_and_the_full_gradient(
    use_fisher):
  # TRPO's products on a subsample of the data (the first two of three rows): the direction
  # solves H_sub s = g with H_sub the KL's Hessian on those rows (central differences, float64)
  # and g the gradient of the loss on all rows; the step size comes from s^T H_sub s.
  from l2f_tf.rl import policy_gradient as pg
  theta, outputs_fn, kl_of, _ = gaussian_through_an_inner_step()
  old = tf.constant(outputs_fn().numpy())
  weights = tf.constant([0.5, 0.25], tf.float64)
  kl_sub_of = lambda outputs: pg.mean_kl(old[:2], outputs, weights)
  coefficients = tf.constant([1.0, -0.5, 0.3], tf.float64)
  surrogate = lambda outputs: -tf.reduce_sum(outputs[:, 0] * coefficients[:tf.shape(outputs)[0]])
  start = theta.numpy().copy()
  with tf.GradientTape() as tape:
    loss = surrogate(outputs_fn())
  g = tape.gradient(loss, theta).numpy()
  h_sub = finite_difference_hessian(lambda: kl_sub_of(outputs_fn()[:2]), theta) + 1e-5 * np.eye(4)
  theta.assign(start)
  s = np.linalg.solve(h_sub, g)
  expected_size = np.sqrt(2 * 0.01 / (s @ h_sub @ s + trpo.STEP_SIZE_EPSILON))
  if use_fisher:
    diagnostics = trpo.trpo_step(
        lambda: (surrogate(outputs_fn()), outputs_fn()), None, [theta], cg_iterations=4,
        output_kl=kl_of, curvature_objective=lambda: (surrogate(outputs_fn()[:2]),
                                                      outputs_fn()[:2]),
        curvature_output_kl=kl_sub_of)
  else:
    objective = lambda rows, kl: (lambda o: (surrogate(o), kl(o)))(outputs_fn()[:rows])
    diagnostics = trpo.trpo_step(lambda: objective(3, kl_of), None, [theta], cg_iterations=4,
                                 curvature_objective=lambda: objective(2, kl_sub_of))
  assert bool(diagnostics["accepted"])
  assert float(diagnostics["step_size"]) == pytest.approx(expected_size, rel=1e-5)
  fraction = 0.8 ** int(diagnostics["backtracks"])
  np.testing.assert_allclose(theta.numpy() - start, -fraction * expected_size * s, rtol=1e-5,
                             atol=1e-9)
  assert float(diagnostics["loss_before"]) == pytest.approx(float(loss), rel=1e-12)


def test_trpo_step_names_the_missing_half_of_a_fisher_subsample():
  theta, outputs_fn, kl_of, _ = gaussian_through_an_inner_step()
  objective = lambda: (tf.zeros([], tf.float64), outputs_fn())
  with pytest.raises(ValueError, match="together"):
    trpo.trpo_step(objective, None, [theta], output_kl=kl_of, curvature_objective=objective)
  with pytest.raises(ValueError, match="goes with output_kl"):
    trpo.trpo_step(lambda: (tf.zeros([], tf.float64), kl_of(outputs_fn())), None, [theta],
                   curvature_output_kl=kl_of)
