"""Batch normalisation exact to second order and fast on CPU, in three modes.

MAML's second-order meta-gradient differentiates the support-loss gradient once more, so every
op between the inner-loop weights and the loss must be exact to second order. Keras'
``BatchNormalization`` (like ``tf.nn.moments``) computes the variance around
``stop_gradient(mean)``: value and first derivative are right, but the second derivative loses
the mean's share of the variance (docs/second_order.md).

:class:`BatchNorm` computes, per channel (last axis), over all other axes

    mean = E[x],   var = E[(x - mean)^2],   y = (x - mean) / sqrt(var + epsilon) * gamma + beta

with the statistics of the batch it is given (support set while adapting, query set when
predicting: the "transductive" mode, the default) or, in the inductive modes, of the task's
support set (`l2f_tf.models.support_statistics`), with no running averages, so ``training``
changes nothing. ``gamma`` and ``beta`` are trained by the outer loop only
(``outer_loop_only = True``, read by ``MetaLearner``).

:func:`batch_norm` runs the layer and its first derivative as TensorFlow's fused kernels
(``FusedBatchNormV3``, ``FusedBatchNormGradV3``) and the derivative of that backward pass in
closed form from the same kernels (:func:`_backward_of_backward`), each level a
``tf.custom_gradient``. First and second derivatives are exact; third ones are not (the
closed form treats the forward statistics as constants) and nothing takes them. The fused
kernels stop at float32, so float64 runs the same closed forms on ordinary ops
(:class:`_PlainKernels`), which the finite-difference tests check.

Under mixed precision (``l2f_tf.precision``) the statistics and the normalisation are computed
in float32 with float32 ``gamma`` and ``beta`` (a mean over many low-precision values loses
digits, and float16 squares overflow), and the output is cast back to the compute dtype.
"""

from typing import Optional, Tuple

import gin
import keras
import tensorflow as tf
from keras import ops

from l2f_tf import support_set
from l2f_tf.models import support_statistics


def _count_per_channel(x: tf.Tensor, dtype) -> tf.Tensor:
  """n, the number of values each channel's statistics are taken over (all axes but the last)."""
  return tf.cast(tf.size(x) // tf.shape(x)[-1], dtype)


class _FusedKernels:
  """Batch norm and its gradient as TensorFlow's fused ops (4-D NHWC, float32 and below)."""

  @staticmethod
  def forward(x, scale, offset, epsilon):
    """(y, mean, biased variance, state for :meth:`backward`)."""
    # Unused in training mode; made here, not at import (that would start TensorFlow's runtime).
    unused = tf.zeros([0], scale.dtype)
    y, mean, unbiased, r1, r2, r3 = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=unused, variance=unused, epsilon=epsilon,
        is_training=True)
    count = _count_per_channel(x, unbiased.dtype)
    variance = unbiased * tf.maximum(count - 1.0, 0.0) / count  # the op reports n/(n-1) var
    return y, mean, variance, (r1, r2, r3)

  @staticmethod
  def backward(dy, x, scale, state, epsilon):
    """(dx, dscale, doffset) of the training-mode layer at ``x`` for output gradient ``dy``."""
    r1, r2, r3 = state
    dx, dscale, doffset, _, _ = tf.raw_ops.FusedBatchNormGradV3(
        y_backprop=dy, x=x, scale=scale, reserve_space_1=r1, reserve_space_2=r2,
        reserve_space_3=r3, epsilon=epsilon, is_training=True)
    return dx, dscale, doffset


class _PlainKernels:
  """The same two kernels written with ordinary ops (float64, where no fused kernel exists)."""

  @staticmethod
  def forward(x, scale, offset, epsilon):
    axes = [0, 1, 2]
    mean = tf.reduce_mean(x, axis=axes)
    centred = x - mean
    variance = tf.reduce_mean(tf.square(centred), axis=axes)
    y = centred * (tf.math.rsqrt(variance + epsilon) * scale) + offset
    return y, mean, variance, (mean, variance)

  @staticmethod
  def backward(dy, x, scale, state, epsilon):
    mean, variance = state
    axes = [0, 1, 2]
    inverse_std = tf.math.rsqrt(variance + epsilon)
    x_hat = (x - mean) * inverse_std
    count = _count_per_channel(x, x.dtype)
    doffset = tf.reduce_sum(dy, axis=axes)
    dscale = tf.reduce_sum(dy * x_hat, axis=axes)
    dx = (scale * inverse_std) * (dy - doffset / count - x_hat * (dscale / count))
    return dx, dscale, doffset


def _kernels(dtype):
  return _PlainKernels if dtype == tf.float64 else _FusedKernels


def _known_zero(t: tf.Tensor) -> bool:
  """Whether ``t`` is statically zero (the zeros a tape fills in for an unused output)."""
  value = tf.get_static_value(t)
  return value is not None and not value.any()


def _backward_of_backward(kernels, epsilon: float, x, gamma, dy, state, variance, outputs,
                          cotangents) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Gradients of the backward pass ``(dy, x, gamma) -> (dx, dgamma, dbeta)`` with respect to
  ``dy``, ``x`` and ``gamma``, for cotangents ``(a, b_gamma, b_beta)`` of its three outputs.

  With x_hat = (x - mean) / s, s = sqrt(var + epsilon), n values per channel, means over them:

      ddy    = gamma / s * (a - E[a] - x_hat E[a x_hat]) + b_gamma x_hat + b_beta
      dgamma = (sum(a dy) - n E[a] E[dy] - n E[a x_hat] E[dy x_hat]) / s
      h      = (b_gamma - gamma / s * E[a x_hat]) dy - gamma / s * E[dy x_hat] a
      dx     = (h - E[h] - x_hat E[h x_hat]) / s - gamma * dgamma * x_hat / (n s)

  ddy is the backward kernel applied to ``a`` plus the forward kernel with scale b_gamma and
  offset b_beta; dx the backward kernel applied to ``h`` with scale 1 plus the forward kernel
  with scale -gamma dgamma / (n s). E[dy], E[dy x_hat] are the backward pass's dbeta/n, dgamma/n.

  When b_gamma and b_beta are known zeros (gamma and beta are outer-loop only, so the support
  gradient's dgamma and dbeta go unused), ddy is the first term alone, and with
  P(v) = (v - E[v] - x_hat E[v x_hat]) / s (linear per channel) ddy = gamma P(a) and the first
  dx = gamma P(dy), so dx's first term is -(E[a x_hat] dx_first + E[dy x_hat] ddy) / s: two
  kernel calls fewer, and no division by gamma.
  """
  a, b_gamma, b_beta = cotangents
  first_dx, first_dgamma, first_dbeta = outputs
  count = _count_per_channel(x, x.dtype)
  inverse_std = tf.math.rsqrt(variance + epsilon)
  a_part, sum_a_x_hat, sum_a = kernels.backward(a, x, gamma, state, epsilon)
  scale_offset_unused = _known_zero(b_gamma) and _known_zero(b_beta)
  if scale_offset_unused:
    ddy = a_part
  else:
    shifted, _, _, _ = kernels.forward(x, b_gamma, b_beta, epsilon)
    ddy = a_part + shifted
  mean_a, mean_a_x_hat = sum_a / count, sum_a_x_hat / count
  mean_dy, mean_dy_x_hat = first_dbeta / count, first_dgamma / count
  sum_a_dy = tf.reduce_sum(a * dy, axis=[0, 1, 2])
  dgamma = inverse_std * (sum_a_dy - count * (mean_a * mean_dy + mean_a_x_hat * mean_dy_x_hat))
  if scale_offset_unused:
    h_part = first_dx * (-inverse_std * mean_a_x_hat) + a_part * (-inverse_std * mean_dy_x_hat)
  else:
    k = gamma * inverse_std
    h = dy * (b_gamma - k * mean_a_x_hat) + a * (-k * mean_dy_x_hat)
    h_part, _, _ = kernels.backward(h, x, tf.ones_like(gamma), state, epsilon)
  x_term, _, _, _ = kernels.forward(x, -gamma * dgamma * inverse_std / count,
                                    tf.zeros_like(gamma), epsilon)
  return ddy, h_part + x_term, dgamma


def batch_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float) -> tf.Tensor:
  """Training-mode batch norm of ``x`` over all axes but the last, exact to second order."""
  shape, rank = tf.shape(x), len(x.shape)
  if rank != 4:  # the kernels take NHWC: fold the other axes into N
    x = tf.reshape(x, [-1, 1, 1, shape[-1]])
  kernels = _kernels(x.dtype)
  epsilon = float(epsilon)

  @tf.custom_gradient
  def normalise(x, gamma, beta):
    y, _, variance, state = kernels.forward(x, gamma, beta, epsilon)

    @tf.custom_gradient
    def backward(dy, x, gamma):
      outputs = kernels.backward(dy, x, gamma, state, epsilon)
      return outputs, lambda *cotangents: _backward_of_backward(
          kernels, epsilon, x, gamma, dy, state, variance, outputs, cotangents)

    return y, lambda dy: backward(dy, x, gamma)

  y = normalise(x, gamma, beta)
  return y if rank == 4 else tf.reshape(y, shape)


MODES = ("transductive", "support", "task_norm_i")


@gin.configurable("BatchNorm")
def default_mode(mode: str = "transductive") -> str:
  """The mode of every :class:`BatchNorm` built without one: the gin binding ``BatchNorm.mode``
  (a Keras layer cannot be gin-configurable itself)."""
  return mode


@keras.saving.register_keras_serializable(package="l2f_tf")
class BatchNorm(keras.layers.Layer):
  """Batch normalisation with learned scale ``gamma`` and offset ``beta``, in one of three modes.

  Args:
    mode: where the batch statistics come from (None: :func:`default_mode`, the gin binding
      ``BatchNorm.mode``):
      "transductive" (the papers' protocol, the default): the batch the layer is given, so a
        query's prediction depends on the other queries of the call;
      "support": the task's support set at the current weights, in every pass (the query
        passes of ``MetaLearner.forward(..., support_x=)`` included), so a query's prediction
        depends on the task and that query alone;
      "task_norm_i": TaskNorm-I, the support set's moments blended with each example's
        instance moments by a learned weight of the support-set size (two more outer-loop
        weights, ``alpha_scale`` and ``alpha_offset``, initialised to 0: alpha = 0.5).
      Both inductive modes are described in `l2f_tf.models.support_statistics`.
    epsilon: added to the variance; 1e-5 as in the PyTorch reference code (Keras' is 1e-3).
  """

  outer_loop_only = True

  def __init__(self, mode: Optional[str] = None, epsilon: float = 1e-5, **kwargs):
    super().__init__(**kwargs)
    mode = default_mode() if mode is None else mode
    if mode not in MODES:
      raise ValueError(f"BatchNorm.mode must be one of {MODES}, got {mode!r}.")
    self.mode = mode
    self.epsilon = float(epsilon)

  @property
  def batch_norm_mode(self) -> str:
    """The mode, as `l2f_tf.support_set.mode_of` reads it."""
    return self.mode

  @property
  def uses_support_statistics(self) -> bool:
    """Whether query passes must carry the support set (an inductive mode)."""
    return self.mode != "transductive"

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels is None:
      raise ValueError(f"{self.name}: the channel (last) axis must be known, got input shape "
                       f"{input_shape}.")
    if self.mode == "task_norm_i" and len(input_shape) != 4:
      raise ValueError(f"{self.name}: TaskNorm-I normalises images (NHWC inputs), got input "
                       f"shape {input_shape}: use mode 'support' after a dense layer.")
    # autocast=False: read at the variables' dtype (float32), not the compute dtype.
    self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma",
                                 autocast=False)
    self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta",
                                autocast=False)
    if self.mode == "task_norm_i":
      self.alpha_scale = self.add_weight(shape=(), initializer="zeros", name="alpha_scale",
                                         autocast=False)
      self.alpha_offset = self.add_weight(shape=(), initializer="zeros", name="alpha_offset",
                                          autocast=False)

  def call(self, inputs, training=None):  # pylint: disable=unused-argument
    input_dtype = inputs.dtype
    if input_dtype in ("float16", "bfloat16"):
      inputs = ops.cast(inputs, "float32")
    gamma, beta = (ops.cast(v, inputs.dtype) for v in (self.gamma, self.beta))
    count = support_set.current_support_rows()
    if self.mode == "task_norm_i":
      scale, offset = (ops.cast(v, inputs.dtype) for v in (self.alpha_scale, self.alpha_offset))
      y = support_statistics.task_norm_i(inputs, gamma, beta, scale, offset, self.epsilon, count)
    elif self.mode == "support" and count is not None:
      y = support_statistics.support_batch_norm(inputs, gamma, beta, self.epsilon, count)
    else:  # the batch's own statistics (in "support" mode: a pass on the support set alone)
      y = batch_norm(inputs, gamma, beta, self.epsilon)
    return ops.cast(y, input_dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "mode": self.mode, "epsilon": self.epsilon}


default_mode.__wrapped__.configures = BatchNorm  # (read by the API docs' test)
