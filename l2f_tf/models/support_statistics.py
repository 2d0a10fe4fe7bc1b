"""Normalisation with the statistics of the task's support set: predictions that do not depend on
the other queries.

Transductive batch norm (the papers' protocol) normalises the query set with the query set's
own statistics, so one query's prediction changes with the queries beside it. The inductive
modes of :class:`~l2f_tf.models.batch_norm.BatchNorm` take their batch statistics from the
support set instead:

- ``support``: batch norm whose mean and variance are the support set's, at the current
  weights (while adapting, the support set is the whole batch, so this is ordinary batch norm);
- ``task_norm_i`` (TaskNorm-I, Bronskill et al., ICML 2020): per example and channel, the
  support set's batch moments blended with the example's own instance moments (over height and
  width) by ``alpha = sigmoid(scale * |support| + offset)``, ``scale`` and ``offset`` learned
  per layer, so that tasks with few support examples can lean on instance statistics.

A query pass feeds the network the support set followed by the queries, inside
``l2f_tf.support_set.support_rows`` (``MetaLearner.forward(..., support_x=)`` does both): a
layer in an inductive mode then takes its statistics from the first rows of its input. The functions here
are ordinary TensorFlow ops, exact to every order.
"""

from typing import Optional, Tuple

import tensorflow as tf

from l2f_tf.support_set import Count


def _context(x: tf.Tensor, count: Optional[Count]) -> tf.Tensor:
  return x if count is None else x[:count]


def moments(x: tf.Tensor, axes) -> Tuple[tf.Tensor, tf.Tensor]:
  """(mean, biased variance) of ``x`` over ``axes`` (kept as size-1 axes), with a gradient in
  closed form, ``dx = dmean / n + 2 dvar (x - mean) / n``, written with ordinary ops of ``x``
  (the mean recomputed from it) so that its own derivative, which second-order MAML takes, is
  exact too. It saves most of the element-wise passes the derivatives of the plain formulas
  make (TaskNorm-I's step is measured in docs/few_shot_classification.md)."""

  @tf.custom_gradient
  def forward(x):
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(x - mean), axis=axes, keepdims=True)

    def gradient(dmean, dvariance):
      count = tf.cast(tf.size(x) // tf.size(dmean), x.dtype)
      k = 2.0 * dvariance / count
      return x * k + (dmean / count - tf.reduce_mean(x, axis=axes, keepdims=True) * k)

    return (mean, variance), gradient

  return forward(x)


def support_batch_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float,
                       count: Optional[Count]) -> tf.Tensor:
  """Batch norm of ``x`` (over all axes but the last) with the mean and biased variance of its
  first ``count`` examples (all of them when None)."""
  mean, variance = moments(_context(x, count), list(range(len(x.shape) - 1)))
  scale = tf.math.rsqrt(variance + epsilon) * gamma
  return x * scale + (beta - mean * scale)


def task_norm_alpha(scale: tf.Tensor, offset: tf.Tensor, x: tf.Tensor,
                    count: Optional[Count]) -> tf.Tensor:
  """TaskNorm's blending weight of the batch moments, for a support set of ``count`` examples
  (the whole batch when None)."""
  size = tf.shape(x)[0] if count is None else count
  return tf.sigmoid(scale * tf.cast(size, scale.dtype) + offset)


def task_norm_i(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, scale: tf.Tensor,
                offset: tf.Tensor, epsilon: float, count: Optional[Count]) -> tf.Tensor:
  """TaskNorm-I of NHWC ``x``: per example n and channel c,

      mean_n = alpha * mean_B + (1 - alpha) * mean_I[n]
      var_n  = alpha * (var_B + (mean_B - mean_n)^2)
               + (1 - alpha) * (var_I[n] + (mean_I[n] - mean_n)^2)
             = alpha * var_B + (1 - alpha) * var_I[n] + alpha (1 - alpha) (mean_I[n] - mean_B)^2

  with (mean_I, var_I) each example's moments over height and width and (mean_B, var_B) the
  batch moments of the first ``count`` examples; then ``(x - mean_n) / sqrt(var_n + epsilon)
  * gamma + beta``. The batch moments come from the instance moments (every example has H*W
  values, so mean_B is the mean of mean_I and var_B the mean of var_I plus the variance of
  mean_I): one pass over the activations for both."""
  if len(x.shape) != 4:
    raise ValueError(f"TaskNorm-I normalises images (NHWC inputs), got an input of shape "
                     f"{x.shape}: use BatchNorm(mode='support') after a dense layer.")
  instance_mean, instance_var = moments(x, [1, 2])
  support_mean = _context(instance_mean, count)
  batch_mean = tf.reduce_mean(support_mean, axis=0)
  batch_var = tf.reduce_mean(_context(instance_var, count) + tf.square(support_mean - batch_mean),
                             axis=0)
  alpha = task_norm_alpha(scale, offset, x, count)
  spread = instance_mean - batch_mean
  variance = (alpha * batch_var + (1.0 - alpha) * instance_var
              + alpha * (1.0 - alpha) * tf.square(spread))
  multiplier = tf.math.rsqrt(variance + epsilon) * gamma
  return x * multiplier + (beta - (instance_mean - alpha * spread) * multiplier)
