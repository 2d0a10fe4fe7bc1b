"""Finite-difference checks of meta-gradients, shared by the gradient tests.

The reference only evaluates meta-loss values (forward passes), never a gradient, so it is
independent of the gradient code it checks. L2F task embeddings are constants in the
meta-gradient (as in the reference code), so the value functions hold them at the base point.
"""

import numpy as np
import tensorflow as tf

from l2f_tf.meta import sequential

STEP = 1e-6  # central-difference step: small enough not to cross a ReLU or max-pool kink


def num_tasks(batch) -> int:
  return int(batch.support_x.shape[0])


def fixed_embeddings(learner, batch):
  """Each task's L2F embedding at the current weights (None per task for MAML)."""
  return [learner.task_embedding(batch.support_x[t], batch.support_y[t])
          for t in range(num_tasks(batch))]


def reduce_tasks(learner, total, batch):
  return total / num_tasks(batch) if learner.task_reduction == "mean" else total


def meta_loss_value_fn(learner, batch, embeddings):
  """The meta-loss (query loss after adaptation, reduced over tasks as the learner does) with
  the embeddings held constant; the weights are read from the variables at each call."""

  @tf.function
  def value():
    total = tf.constant(0.0, tf.float64)
    for t in range(num_tasks(batch)):
      adaptation = learner.adapt(batch.support_x[t], batch.support_y[t],
                                 embedding=embeddings[t])
      total += learner.loss_at(adaptation.fast_weights, batch.query_x[t], batch.query_y[t],
                               batch.support_x[t])
    return reduce_tasks(learner, total, batch)

  return value


def first_order_value_fn(learner, batch, embeddings):
  """First-order MAML/L2F as a function: theta' = gamma * theta - c with the inner-loop
  displacement c = theta_bar - theta_N of the base point held constant (that is what dropping
  the Hessian terms means); batch-norm scale/offset enter only the query forward pass."""
  displacements = []
  for t in range(num_tasks(batch)):
    iterates = learner.adapt(batch.support_x[t], batch.support_y[t], embedding=embeddings[t],
                             first_order=True).iterates
    displacements.append([tf.constant(a.numpy() - b.numpy())
                          for a, b in zip(iterates[0], iterates[-1])])

  @tf.function
  def value():
    total = tf.constant(0.0, tf.float64)
    for t in range(num_tasks(batch)):
      theta_bar, _ = learner.attenuate(batch.support_x[t], batch.support_y[t],
                                       embedding=embeddings[t])
      fast = [p - c for p, c in zip(theta_bar, displacements[t])]
      total += learner.loss_at(fast, batch.query_x[t], batch.query_y[t], batch.support_x[t])
    return reduce_tasks(learner, total, batch)

  return value


def analytic_meta_gradient(learner, batch, path: str, first_order: bool = False):
  """The meta-gradient w.r.t. ``learner.meta_variables`` from one code path: "plain" (a tape
  around ``meta_loss``, eager), "compiled" (the same in ``tf.function``), "vectorized" (that
  with the tasks in ``tf.vectorized_map``), "xla" (with ``jit_compile``) or "sequential" (the
  memory-lean ``sequential.meta_gradients``)."""
  variables = learner.meta_variables
  if path == "sequential":
    fn = tf.function(lambda e: sequential.meta_gradients(learner, e, first_order)[1])
    return [g.numpy() for g in fn(batch)]

  def grads(e):
    with tf.GradientTape() as tape:
      loss, _ = learner.meta_loss(e, first_order=first_order)
    return tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

  if path == "compiled":
    grads = tf.function(grads)
  elif path == "vectorized":
    vectorized = learner.vectorize_tasks
    learner.vectorize_tasks = True
    try:
      return [g.numpy() for g in tf.function(grads)(batch)]
    finally:
      learner.vectorize_tasks = vectorized
  elif path == "xla":
    # The trainer compiles with XLA only the unrolled task loop (it turns XLA off for
    # vectorized tasks), so that is the path checked here.
    vectorized = learner.vectorize_tasks
    if vectorized:
      learner.vectorize_tasks = False
    try:
      return [g.numpy() for g in tf.function(grads, jit_compile=True)(batch)]
    finally:
      if vectorized:
        learner.vectorize_tasks = True
  return [g.numpy() for g in grads(batch)]


def directional_derivatives(value_fn, variables, seed):
  """Per tensor: (path, random unit direction, central difference of value_fn along it)."""
  rng = np.random.default_rng(seed)
  rows = []
  for v in variables:
    base = v.numpy()
    direction = rng.normal(size=base.shape)
    direction /= np.linalg.norm(direction)
    v.assign(base + STEP * direction)
    plus = float(value_fn())
    v.assign(base - STEP * direction)
    minus = float(value_fn())
    v.assign(base)
    rows.append((v.path, direction, (plus - minus) / (2 * STEP)))
  return rows


def assert_matches_reference(analytic, rows, rtol=1e-6):
  """Each tensor's analytic gradient projected on its direction equals the finite difference
  (relative to the difference, or to 1e-3 of the largest one for near-zero entries)."""
  compared = [(name, float(np.sum(g * d)), fd) for g, (name, d, fd) in zip(analytic, rows)]
  assert len(compared) == len(rows)
  # (A NaN compares False with everything: without this, NaNs would pass.)
  assert np.isfinite([value for _, a, fd in compared for value in (a, fd)]).all(), (
      "non-finite analytic or finite-difference values: " + ", ".join(
          f"{name} {a} vs {fd}" for name, a, fd in compared if not np.isfinite([a, fd]).all()))
  scale = max(abs(fd) for _, _, fd in compared)
  bad = [(name, a, fd) for name, a, fd in compared
         if abs(a - fd) > rtol * max(abs(fd), 1e-3 * scale)]
  assert not bad, "analytic vs finite difference:\n" + "\n".join(
      f"  {name}: {a:.10g} vs {fd:.10g} (rel. error {abs(a - fd) / abs(fd):.2e})"
      for name, a, fd in bad)


