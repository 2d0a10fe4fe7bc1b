"""Diagnostics of meta-learning: the degree of conflict between tasks (L2F Sec. 3.3).

For each layer (parameter tensor) j and a meta-batch of tasks i:
  u_i = -d L_query(f_theta'_i) / d theta^j       (the direction task i wants theta^j to move)
  v   = sum_i u_i / || sum_i u_i ||
  conflict^j = mean_i | arccos(u_i / ||u_i|| . v) |
A large angle means tasks pull the shared initialisation in different directions.
"""

import math
from typing import List, Sequence

import tensorflow as tf


def degree_of_conflict(per_task_gradients: Sequence[Sequence[tf.Tensor]],
                       degrees: bool = True) -> tf.Tensor:
  """Mean angle between each task's update direction and their normalised sum, per tensor.

  Args:
    per_task_gradients: per_task_gradients[i][j] = gradient of task i's query loss w.r.t.
      tensor j (the sign does not matter: negating every u_i leaves the angles unchanged).
    degrees: return degrees (default) rather than radians.

  Returns:
    A [num_tensors] tensor of angles.
  """
  num_tensors = len(per_task_gradients[0])
  conflicts: List[tf.Tensor] = []
  for j in range(num_tensors):
    # float64: acos is ill-conditioned near 0 degrees (float32 would report ~0.02 degrees).
    u = tf.stack([-tf.reshape(tf.cast(task[j], tf.float64), [-1])
                  for task in per_task_gradients])  # [T, P]
    u_hat = tf.math.l2_normalize(u, axis=1)
    v = tf.math.l2_normalize(tf.reduce_sum(u, axis=0))
    cosine = tf.clip_by_value(tf.linalg.matvec(u_hat, v), -1.0, 1.0)
    conflicts.append(tf.reduce_mean(tf.abs(tf.acos(cosine))))
  angles = tf.stack(conflicts)
  return tf.cast(angles * (180.0 / math.pi) if degrees else angles, tf.float32)
