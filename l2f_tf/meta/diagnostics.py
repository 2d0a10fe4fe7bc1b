"""Diagnostics of meta-learning: conflict between tasks and the inner loop's landscape.

Degree of conflict (L2F Sec. 3.3). For each layer (parameter tensor) j and a meta-batch of
tasks i:
  u_i = -d L_query(f_theta'_i) / d theta^j       (the direction task i wants theta^j to move)
  v   = sum_i u_i / || sum_i u_i ||
  conflict_i^j = | arccos(u_i / ||u_i|| . v) |,   conflict^j = mean_i conflict_i^j
A large angle means tasks pull the shared initialisation in different directions.

Landscape of the inner loop (L2F Fig. 2, after Santurkar et al., NeurIPS 2018). At each inner
step k, with parameters p_k, support gradient g_k and learning rates lr (per tensor), move along
the step the inner loop takes, by several multiples m of it, p(m) = p_k - m * lr * g_k, and
record
  loss along the step:   min_m and max_m of L(p(m)) (m = 0 included): its range is the
                         "loss variation";
  gradient change:       min_m and max_m of || grad L(p(m)) - g_k || (all tensors, l2);
  beta-smoothness:       max_m || grad L(p(m)) - g_k || / || p(m) - p_k ||, the effective
                         smoothness (a quadratic 0.5 x'Ax moved along an eigenvector of A gives
                         that eigenvalue exactly).
A smooth landscape has a small loss variation, a small gradient change and a small beta.
"""

import math
from typing import Callable, List, Sequence

import tensorflow as tf

from l2f_tf.meta import inner_loop as inner_loop_lib

# The multiples of the inner step at which the landscape is probed (Santurkar et al. probe a
# range of step sizes around the training one).
DEFAULT_STEP_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)
# The order of the measures in the vectors the functions below return.
LANDSCAPE_MEASURES = ("loss_min", "loss_max", "loss_variation", "gradient_change_min",
                      "gradient_change_max", "beta_smoothness")


def degree_of_conflict(per_task_gradients: Sequence[Sequence[tf.Tensor]],
                       degrees: bool = True) -> tf.Tensor:
  """[num_tensors] mean angle between each task's update direction and their normalised sum.

  Args:
    per_task_gradients: per_task_gradients[i][j] = gradient of task i's query loss w.r.t.
      tensor j (the sign does not matter: negating every u_i leaves the angles unchanged).
    degrees: return degrees (default) rather than radians.
  """
  return tf.reduce_mean(per_task_conflict(per_task_gradients, degrees), axis=0)


def per_task_conflict(per_task_gradients: Sequence[Sequence[tf.Tensor]],
                      degrees: bool = True) -> tf.Tensor:
  """[num_tasks, num_tensors] conflict_i^j of the module docstring (arguments as
  :func:`degree_of_conflict`)."""
  num_tensors = len(per_task_gradients[0])
  columns: List[tf.Tensor] = []
  for j in range(num_tensors):
    # float64: acos is ill-conditioned near 0 degrees (float32 would report ~0.02 degrees).
    u = tf.stack([-tf.reshape(tf.cast(task[j], tf.float64), [-1])
                  for task in per_task_gradients])  # [T, P]
    u_hat = tf.math.l2_normalize(u, axis=1)
    v = tf.math.l2_normalize(tf.reduce_sum(u, axis=0))
    cosine = tf.clip_by_value(tf.linalg.matvec(u_hat, v), -1.0, 1.0)
    columns.append(tf.abs(tf.acos(cosine)))
  angles = tf.stack(columns, axis=1)
  return tf.cast(angles * (180.0 / math.pi) if degrees else angles, tf.float32)


def landscape_along_step(loss_fn: Callable, params: Sequence[tf.Tensor], learning_rates: Sequence,
                         multipliers: Sequence[float] = DEFAULT_STEP_MULTIPLIERS) -> tf.Tensor:
  """The vector of :data:`LANDSCAPE_MEASURES` at the point ``params`` along the SGD step of
  ``loss_fn`` (a list of tensors -> a scalar) with ``learning_rates`` per tensor, probed at the
  ``multipliers`` m > 0 of the step (no graph kept)."""
  return _landscape_and_step(loss_fn, params, learning_rates, multipliers)[0]


def _landscape_and_step(loss_fn, params, learning_rates, multipliers):
  """(:func:`landscape_along_step`'s measures, the SGD step lr * g per tensor), so that the
  inner loop can take its step without differentiating the loss at p_k again."""
  if not multipliers or min(multipliers) <= 0:
    raise ValueError(f"Landscape step multipliers must be positive, got {tuple(multipliers)}.")
  params = [tf.stop_gradient(p) for p in params]
  loss, grads = inner_loop_lib.gradients(loss_fn, params)
  grads = [tf.stop_gradient(g) for g in grads]
  steps = [inner_loop_lib.as_rate(lr, p.dtype) * g
           for p, g, lr in zip(params, grads, learning_rates)]
  losses, changes, betas = [loss], [], []
  for m in multipliers:
    moved = [p - m * s for p, s in zip(params, steps)]
    moved_loss, moved_grads = inner_loop_lib.gradients(loss_fn, moved)
    change = tf.linalg.global_norm([a - b for a, b in zip(moved_grads, grads)])
    distance = tf.linalg.global_norm([m * s for s in steps])
    losses.append(moved_loss)
    changes.append(change)
    betas.append(tf.math.divide_no_nan(change, distance))
  losses, changes = tf.stack(losses), tf.stack(changes)
  measures = tf.stack([tf.reduce_min(losses), tf.reduce_max(losses),
                       tf.reduce_max(losses) - tf.reduce_min(losses), tf.reduce_min(changes),
                       tf.reduce_max(changes), tf.reduce_max(tf.stack(betas))])
  return measures, steps


def inner_loop_landscape(loss_fn: Callable, initial_params: Sequence[tf.Tensor], num_steps: int,
                         learning_rates: inner_loop_lib.InnerLearningRates,
                         multipliers: Sequence[float] = DEFAULT_STEP_MULTIPLIERS) -> tf.Tensor:
  """[num_steps, len(LANDSCAPE_MEASURES)] landscape measures of the inner loop from
  ``initial_params``: row k is measured at p_k along the step to p_{k+1}."""
  params, rows = [tf.stop_gradient(p) for p in initial_params], []
  for k in range(num_steps):
    measures, steps = _landscape_and_step(loss_fn, params, learning_rates.for_step(k),
                                          multipliers)
    rows.append(measures)
    params = [p - s for p, s in zip(params, steps)]  # The SGD step p_k - lr * g_k.
  return tf.stack(rows)


def task_landscape(learner, support_x, support_y,
                   multipliers: Sequence[float] = DEFAULT_STEP_MULTIPLIERS,
                   attenuate: bool = True) -> tf.Tensor:
  """:func:`inner_loop_landscape` of a MetaLearner's inner loop on one task (from theta_bar,
  the attenuated initialisation, for L2F), averaged over its inner steps: a vector of the
  :data:`LANDSCAPE_MEASURES`. ``attenuate=False`` starts an L2F learner's loop from theta
  instead: the same weights without the attenuation, a controlled comparison."""
  theta_bar = learner.attenuate(support_x, support_y)[0] if attenuate else learner.theta()
  rows = inner_loop_landscape(lambda p: learner.loss_at(p, support_x, support_y), theta_bar,
                              max(learner.num_inner_steps, 1), learner.inner_lrs, multipliers)
  return tf.reduce_mean(rows, axis=0)


def batch_landscape(learner, episodes, multipliers: Sequence[float] = DEFAULT_STEP_MULTIPLIERS,
                    attenuate: bool = True) -> tf.Tensor:
  """:func:`task_landscape` of every task of a batch (leading task axis):
  [num_tasks, len(LANDSCAPE_MEASURES)]. Tasks run one after another in a ``tf.map_fn`` (one
  task's graph, whatever the number of tasks; memory of one task at a time)."""
  return tf.map_fn(lambda task: task_landscape(learner, task[0], task[1], multipliers,
                                               attenuate),
                   (episodes.support_x, episodes.support_y), parallel_iterations=1,
                   fn_output_signature=tf.TensorSpec([len(LANDSCAPE_MEASURES)], learner.dtype))
