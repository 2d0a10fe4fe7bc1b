"""Trust-region policy optimisation (TRPO) of variables, for the outer loop of MAML-TRPO.

One TRPO step, as rllab's ConjugateGradientOptimizer takes it:
  1. g = d loss / d theta at theta_old (loss = minus the surrogate objective);
  2. s ~= H^{-1} g by conjugate gradient, where H is the Hessian of the mean KL between the old
     and the current policy (its Fisher matrix) plus damping, used only through
     Hessian-vector products;
  3. full step = -sqrt(2 max_kl / (s^T H s)) s, the step whose quadratic KL model equals max_kl;
  4. backtracking line search: theta_old + 0.8^k full step for k = 0..14, the first one that
     lowers the loss and keeps KL <= max_kl is accepted, otherwise theta_old is restored.

The loss and KL are zero-argument callables that read the current values of the variables, so
they may contain anything differentiable, in particular MAML's inner adaptation step: the
products differentiate through it (second order) with nested reverse-mode tapes. The loss,
its gradient and every product come from one recorded evaluation of the objective (or, with
the products on a subsample of the data, one of each); each line-search step is one more.
Everything runs eagerly and inside ``tf.function`` (conjugate gradient and the line search are
``tf.while_loop``s with early exit). The variables must share one floating dtype (they are
flattened into one vector).
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

Tensors = Sequence[Union[tf.Tensor, tf.Variable]]
FlatFn = Callable[[tf.Tensor], tf.Tensor]
Curvature = Tuple[tf.Tensor, List[tf.Tensor], FlatFn]
ZERO = tf.UnconnectedGradients.ZERO

# rllab adds this to s^T H s before dividing, so that a zero direction gives a finite step size.
STEP_SIZE_EPSILON = 1e-8


def flatten(tensors: Tensors) -> tf.Tensor:
  """Concatenates the tensors (or variables), reshaped to vectors, into one vector."""
  return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten(vector: tf.Tensor, like: Tensors) -> List[tf.Tensor]:
  """Splits ``vector`` into tensors of the (static) shapes of ``like``; inverts :func:`flatten`."""
  parts = tf.split(vector, [t.shape.num_elements() for t in like], axis=0)
  return [tf.reshape(p, t.shape) for p, t in zip(parts, like)]


def _dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  return tf.reduce_sum(a * b)


def tf_variables(variables: Tensors) -> List[Union[tf.Tensor, tf.Variable]]:
  """Replaces Keras 3 variables by the ``tf.Variable`` they wrap (the TensorFlow backend's).

  ``tf.GradientTape.watch`` rejects Keras 3 variables, but a Keras layer reads the wrapped
  ``tf.Variable``, so watching, differentiating and assigning that one is equivalent.
  """
  return [v.value if not isinstance(v, (tf.Variable, tf.Tensor)) and
          isinstance(getattr(v, "value", None), tf.Variable) else v for v in variables]


def conjugate_gradient(hvp_fn: FlatFn, b: tf.Tensor, iterations: int = 10,
                       residual_tol: float = 1e-10) -> tf.Tensor:
  """Approximately solves A x = b for a symmetric positive-definite A given only x -> A x.

  rllab's ``cg``: at most ``iterations`` iterations (10 in TRPO), each with one call of
  ``hvp_fn``, stopping early once r^T r < ``residual_tol``. A ``tf.while_loop``, so ``hvp_fn``
  is traced once in graph mode. With b = 0 no iteration runs and x = 0.
  """
  return conjugate_gradient_and_residual(hvp_fn, b, iterations, residual_tol)[0]


def conjugate_gradient_and_residual(hvp_fn: FlatFn, b: tf.Tensor, iterations: int = 10,
                                    residual_tol: float = 1e-10) -> Tuple[tf.Tensor, tf.Tensor]:
  """(x, r) of :func:`conjugate_gradient`, r = b - A x its final residual: A x = b - r then
  costs no further product (TRPO's step size needs x^T A x)."""
  b = tf.convert_to_tensor(b)
  tol = tf.constant(residual_tol, b.dtype)

  def cond(i, x, r, p, rdotr):
    del x, r, p
    return tf.logical_and(i < iterations, rdotr >= tol)

  def body(i, x, r, p, rdotr):
    z = hvp_fn(p)
    alpha = rdotr / _dot(p, z)
    x = x + alpha * p
    r = r - alpha * z
    new_rdotr = _dot(r, r)
    p = r + (new_rdotr / rdotr) * p
    return i + 1, x, r, p, new_rdotr

  _, x, r, _, _ = tf.while_loop(
      cond, body, (tf.constant(0), tf.zeros_like(b), b, b, _dot(b, b)),
      maximum_iterations=iterations)
  return x, r


def _objective(loss_fn, kl_fn):
  """One callable returning (loss, kl): ``loss_fn`` itself when ``kl_fn`` is None."""
  if kl_fn is None:
    return loss_fn
  return lambda: (loss_fn(), kl_fn())


def recorded_curvature(objective_fn: Callable[[], Tuple[tf.Tensor, tf.Tensor]],
                       variables: Tensors, damping: float = 1e-5) -> Curvature:
  """(loss, d loss / d variables, v -> (H + damping I) v) from ONE evaluation of the objective.

  ``objective_fn`` returns (loss, kl) from one forward pass (for MAML-TRPO: one inner
  adaptation of every task), recorded by a persistent tape together with dKL/dtheta; every
  Hessian-vector product is then one vector-Jacobian product of that recorded gradient (H is
  symmetric), so conjugate gradient re-runs neither the forward nor the first backward pass.
  Reverse mode handles the third level of differentiation that MAML's inner step adds. The
  loss gradients are zeros where unconnected.
  """
  variables = tf_variables(variables)
  with tf.GradientTape(watch_accessed_variables=False, persistent=True) as outer:
    outer.watch(variables)
    with tf.GradientTape(watch_accessed_variables=False) as inner:
      inner.watch(variables)
      loss, kl = objective_fn()
    kl_grads = inner.gradient(kl, variables, unconnected_gradients=ZERO)
  loss_grads = outer.gradient(loss, variables, unconnected_gradients=ZERO)

  def hvp(vector: tf.Tensor) -> tf.Tensor:
    hessian_v = outer.gradient(kl_grads, variables, output_gradients=unflatten(vector, variables),
                               unconnected_gradients=ZERO)
    return flatten(hessian_v) + tf.cast(damping, vector.dtype) * vector

  return loss, loss_grads, hvp


def fisher_curvature(objective_fn: Callable[[], Tuple[tf.Tensor, tf.Tensor]],
                     output_kl: Callable[[tf.Tensor], tf.Tensor], variables: Tensors,
                     damping: float = 1e-5) -> Curvature:
  """(loss, d loss / d variables, v -> (F + damping I) v) in the Gauss-Newton (Fisher) form.

  ``objective_fn`` returns (loss, z): the loss and the policy outputs z (the distribution
  parameters, e.g. [mean, log_std] per step), and ``output_kl(z)`` is the KL from the fixed
  old outputs to z, minimal (0) at the outputs of the current variables. With J = dz / dtheta
  (through MAML's inner step: second order) and M = d^2 KL / dz^2, the product is

      F v = J^T (M (J v)),

  which equals the KL's Hessian when the step starts at the old policy (dKL/dz = 0 there, so
  the term with d^2 z / dtheta^2 vanishes): the products of :func:`recorded_curvature`,
  without differentiating through the inner step a third time. Per product, J v is one
  vector-Jacobian product of the recorded J^T u (linear in a dummy u), M (J v) a second
  derivative of the small output KL, and J^T (.) one vector-Jacobian product of the recorded
  forward pass.
  """
  variables = tf_variables(variables)
  with tf.GradientTape(watch_accessed_variables=False, persistent=True) as forward:
    forward.watch(variables)
    loss, outputs = objective_fn()
  loss_grads = forward.gradient(loss, variables, unconnected_gradients=ZERO)
  dual = tf.zeros_like(outputs)
  with tf.GradientTape(watch_accessed_variables=False, persistent=True) as linear:
    linear.watch(dual)
    j_transpose_dual = forward.gradient(outputs, variables, output_gradients=dual,
                                        unconnected_gradients=ZERO)
  # M as a recorded second derivative: d/dz (dKL/dz . w) for any w.
  point = tf.identity(outputs)
  with tf.GradientTape(watch_accessed_variables=False, persistent=True) as second:
    second.watch(point)
    with tf.GradientTape(watch_accessed_variables=False) as first:
      first.watch(point)
      kl = output_kl(point)
    # Dense: with one task, the vectorized KL's gradient comes back as IndexedSlices, which
    # a tape cannot take as a target.
    kl_gradient = tf.convert_to_tensor(first.gradient(kl, point))

  def hvp(vector: tf.Tensor) -> tf.Tensor:
    jv = linear.gradient(j_transpose_dual, dual, output_gradients=unflatten(vector, variables),
                         unconnected_gradients=ZERO)
    mjv = second.gradient(kl_gradient, point, output_gradients=jv, unconnected_gradients=ZERO)
    fv = forward.gradient(outputs, variables, output_gradients=mjv, unconnected_gradients=ZERO)
    return flatten(fv) + tf.cast(damping, vector.dtype) * vector

  return loss, loss_grads, hvp


def _loss_and_gradient(objective_fn, variables: Tensors) -> Tuple[tf.Tensor, List[tf.Tensor]]:
  """(loss, d loss / d variables; zeros where unconnected) of ``objective_fn()[0]``."""
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(variables)
    loss = objective_fn()[0]
  return loss, tape.gradient(loss, variables, unconnected_gradients=ZERO)


def line_search(loss_fn: Callable[[], tf.Tensor], kl_fn: Optional[Callable[[], tf.Tensor]],
                variables: Sequence[tf.Variable], full_step: tf.Tensor,
                expected_improvement: Optional[tf.Tensor] = None, max_kl: float = 0.01,
                max_backtracks: int = 15, backtrack_ratio: float = 0.8, accept_ratio: float = 0.0,
                loss_before: Optional[tf.Tensor] = None
               ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
  """Backtracking line search along ``full_step`` under a KL constraint, assigning ``variables``.

  For k = 0, ..., max_backtracks - 1 the variables are set to theta_old + ratio^k full_step and
  the step is accepted as soon as loss_old - loss > max(0, accept_ratio * ratio^k *
  expected_improvement) (rllab's plain improvement test for the default accept_ratio = 0),
  kl <= max_kl and both are finite. If no step is accepted the variables are restored to
  theta_old exactly (bit for bit).

  Args:
    loss_fn: zero-argument callable, the loss (to minimise) at the current variables; or,
      when ``kl_fn`` is None, the callable returning (loss, kl) from one evaluation.
    kl_fn: zero-argument callable, KL(pi_old || pi_current) at the current variables, or None.
    variables: the variables (``tf.Variable`` or Keras 3) to update, in the order of
      ``full_step``.
    full_step: flat vector added to the variables at k = 0.
    expected_improvement: first-order predicted decrease of the loss for the full step
      (-g . full_step); only used when accept_ratio > 0.
    max_kl, max_backtracks, backtrack_ratio: the trust-region size (0.01), the number of step
      sizes tried (15) and their shrink factor (0.8).
    accept_ratio: minimum fraction of the expected improvement required (0: any improvement).
    loss_before: the loss at theta_old if already known, to save one evaluation.

  Returns:
    (accepted, backtracks, loss, kl): a bool scalar; the k of the accepted step (int32,
    max_backtracks if none was accepted); the loss and KL at the final variables (loss_old and
    0 when rejected, since theta_old is restored).
  """
  objective_fn = _objective(loss_fn, kl_fn)
  variables = tf_variables(variables)
  old_flat = flatten([tf.identity(v) for v in variables])
  dtype = old_flat.dtype
  full_step = tf.cast(full_step, dtype)
  loss_old = tf.cast(objective_fn()[0] if loss_before is None else loss_before, dtype)
  expected_improvement = tf.cast(0.0 if expected_improvement is None else expected_improvement,
                                 dtype)
  ratio = tf.constant(backtrack_ratio, dtype)

  def assign(flat):
    for variable, value in zip(variables, unflatten(flat, variables)):
      variable.assign(value)

  def cond(k, accepted, loss, kl):
    del loss, kl
    return tf.logical_and(k < max_backtracks, tf.logical_not(accepted))

  def body(k, accepted, loss, kl):
    del accepted, loss, kl
    fraction = tf.pow(ratio, tf.cast(k, dtype))
    assign(old_flat + fraction * full_step)
    loss, kl = (tf.cast(value, dtype) for value in objective_fn())
    improvement = loss_old - loss
    accepted = tf.reduce_all([
        improvement > tf.constant(accept_ratio, dtype) * fraction * expected_improvement,
        improvement > 0, kl <= tf.constant(max_kl, dtype), tf.math.is_finite(loss),
        tf.math.is_finite(kl)])
    return k + 1, accepted, loss, kl

  tries, accepted, loss, kl = tf.while_loop(
      cond, body, (tf.constant(0), tf.constant(False), loss_old, tf.zeros([], dtype)),
      maximum_iterations=max_backtracks)
  # Restore theta_old when rejected; when accepted this re-assigns the current values. A
  # where (not old + 0 * step) keeps the restoration exact even for non-finite steps.
  assign(tf.where(accepted, flatten([tf.identity(v) for v in variables]), old_flat))
  backtracks = tf.where(accepted, tries - 1, tf.constant(max_backtracks))
  return (accepted, backtracks, tf.where(accepted, loss, loss_old),
          tf.where(accepted, kl, tf.zeros_like(kl)))


def trpo_step(loss_fn: Callable[[], tf.Tensor], kl_fn: Optional[Callable[[], tf.Tensor]],
              variables: Sequence[tf.Variable], max_kl: float = 0.01, cg_iterations: int = 10,
              damping: float = 1e-5, max_backtracks: int = 15, backtrack_ratio: float = 0.8,
              cg_residual_tol: float = 1e-10, accept_ratio: float = 0.0,
              output_kl: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
              curvature_objective: Optional[Callable[[], Tuple[tf.Tensor, tf.Tensor]]] = None,
              curvature_output_kl: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
             ) -> Dict[str, tf.Tensor]:
  """One TRPO update of ``variables`` (assigned in place), as rllab's TRPO takes it.

  Args:
    loss_fn: zero-argument callable, the loss to minimise (minus the surrogate objective) at
      the current variables; or, when ``kl_fn`` is None, a callable returning (loss, kl) from
      one forward pass, which halves the cost of each line-search step when both share work
      (MAML's inner step).
    kl_fn: zero-argument callable, mean KL(pi_old || pi_current) on fixed data; 0 and minimal
      at the current variables when the step starts, so its Hessian there is the Fisher matrix.
      None when ``loss_fn`` returns both.
    variables: the ``tf.Variable``s or Keras 3 variables to update (one floating dtype).
    max_kl, cg_iterations, damping, max_backtracks, backtrack_ratio: trust-region size (0.01),
      conjugate-gradient iterations (10), damping added to the KL Hessian (1e-5), line-search
      steps (15) and shrink factor (0.8).
    cg_residual_tol: conjugate-gradient early-stopping tolerance.
    accept_ratio: see :func:`line_search` (0: any improvement is accepted).
    output_kl: None for the KL's exact Hessian-vector products (:func:`recorded_curvature`).
      Given, ``loss_fn`` returns (loss, policy outputs), ``kl_fn`` must be None, the KL is
      ``output_kl(outputs)`` and the products take the Gauss-Newton (Fisher) form
      (:func:`fisher_curvature`): the same matrix at the old policy, without the third
      derivative through the inner step.
    curvature_objective: None: the curvature products come from ``loss_fn``'s own evaluation
      (the loss, its gradient and the products share one forward pass). Given: a zero-argument
      callable on a subsample of the data returning (loss, kl), or (loss, outputs) with
      ``output_kl`` (TRPO's Fisher-vector products on a subsample, Schulman et al. 2015); the
      products come from its one evaluation (with ``curvature_output_kl`` as its
      ``output_kl``); the gradient and the line search still use all of ``loss_fn``'s data.
    curvature_output_kl: the KL of ``curvature_objective``'s outputs (with ``output_kl`` only).

  Returns:
    A dict of scalar diagnostics: loss_before, loss_after, kl (at the final variables),
    backtracks, accepted, grad_norm, step_size (the multiplier of the CG direction),
    expected_improvement (-g . full_step) and finite: whether the loss, its gradient and the
    full step were finite. When they were not, no line search runs and the variables are
    left as they were (accepted is False).
  """
  variables = tf_variables(variables)
  if output_kl is None:
    if curvature_output_kl is not None:
      raise ValueError("trpo_step: curvature_output_kl goes with output_kl (Fisher products).")
    objective_fn = _objective(loss_fn, kl_fn)
    full = (objective_fn, None)
    products = lambda objective, _: recorded_curvature(objective, variables, damping)
  else:
    if kl_fn is not None:
      raise ValueError("trpo_step: with output_kl, loss_fn returns (loss, outputs) and the KL "
                       "is output_kl(outputs); pass kl_fn=None.")
    if (curvature_objective is None) != (curvature_output_kl is None):
      raise ValueError("trpo_step: with output_kl, pass curvature_objective and "
                       "curvature_output_kl together (or neither).")

    def objective_fn():
      loss, outputs = loss_fn()
      return loss, output_kl(outputs)

    full = (loss_fn, output_kl)
    products = lambda objective, kl: fisher_curvature(objective, kl, variables, damping)
  if curvature_objective is None:  # one evaluation for the loss, gradient and products
    loss_before, grads, hvp = products(*full)
  else:
    loss_before, grads = _loss_and_gradient(full[0], variables)
    hvp = products(curvature_objective, curvature_output_kl)[2]
  grad = flatten(grads)
  dtype = grad.dtype
  loss_before = tf.cast(loss_before, dtype)
  direction, residual = conjugate_gradient_and_residual(hvp, grad, cg_iterations,
                                                        cg_residual_tol)
  # s^T H s with H s = g - r, conjugate gradient's own residual: no eleventh product.
  curvature = _dot(direction, grad - residual)
  step_size = tf.sqrt(tf.constant(2.0 * max_kl, dtype)
                      / (curvature + tf.constant(STEP_SIZE_EPSILON, dtype)))
  full_step = -step_size * direction
  expected_improvement = -_dot(grad, full_step)
  # The line search would reject a non-finite step anyway, but only after max_backtracks
  # evaluations.
  finite = tf.reduce_all(tf.math.is_finite(tf.concat([[loss_before], grad, full_step], axis=0)))
  accepted, backtracks, loss_after, kl = tf.cond(
      finite,
      lambda: line_search(objective_fn, None, variables, full_step, expected_improvement,
                          max_kl=max_kl, max_backtracks=max_backtracks,
                          backtrack_ratio=backtrack_ratio, accept_ratio=accept_ratio,
                          loss_before=loss_before),
      lambda: (tf.constant(False), tf.constant(max_backtracks), loss_before,
               tf.zeros([], dtype)))
  return {"loss_before": loss_before, "loss_after": loss_after, "kl": kl,
          "backtracks": backtracks, "accepted": accepted, "grad_norm": tf.norm(grad),
          "step_size": step_size, "expected_improvement": expected_improvement,
          "finite": finite}
