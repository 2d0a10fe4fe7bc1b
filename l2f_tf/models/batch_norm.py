"""Batch normalisation on the current batch, exactly differentiable to any order.

MAML's second-order meta-gradient differentiates the support-loss gradient once more, so every
op between the inner-loop weights and the loss must be exact to second order. Keras'
``BatchNormalization`` (like ``tf.nn.moments``) computes the variance around
``stop_gradient(mean)``: the value and the first derivative are right (the dropped term is
``sum_i (x_i - mean) = 0`` times something), but the second derivative loses the mean's
contribution to the variance. Through conv4 that made the second-order meta-gradient wrong by
10-50% (see ``tests/meta/test_gradients_backbones.py``).

:class:`BatchNorm` computes, per channel (last axis), over all other axes

    mean = E[x],   var = E[(x - mean)^2],   y = (x - mean) / sqrt(var + epsilon) * gamma + beta

with ordinary differentiable ops, so its derivatives of every order are those of this formula.
It always uses the statistics of the batch it is given (the support set while adapting, the
query set when predicting), as the few-shot meta-learning codes do; there are no running
averages, so ``training`` does not change anything. ``gamma`` and ``beta`` are trained by the
outer loop only: the layer says so with ``outer_loop_only = True``, which
``MetaLearner`` reads when it picks the inner-loop tensors.

Under mixed precision (``l2f_tf.precision``) the layer receives bfloat16 or float16 inputs but
computes the statistics and the normalisation in float32 (as Keras' own batch norm does: a
mean over many low-precision values loses digits, and float16 squares overflow), with float32
``gamma`` and ``beta``, and returns its compute dtype.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="l2f_tf")
class BatchNorm(keras.layers.Layer):
  """Transductive batch normalisation with learned scale ``gamma`` and offset ``beta``.

  Args:
    epsilon: added to the variance; 1e-5 as in PyTorch's batch norm, which the reference
      few-shot code uses (Keras' own default is 1e-3).
  """

  outer_loop_only = True

  def __init__(self, epsilon: float = 1e-5, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels is None:
      raise ValueError(f"{self.name}: the channel (last) axis must be known, got input shape "
                       f"{input_shape}.")
    # autocast=False: read at the variables' dtype (float32), not the compute dtype.
    self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma",
                                 autocast=False)
    self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta",
                                autocast=False)

  def call(self, inputs, training=None):  # pylint: disable=unused-argument
    input_dtype = inputs.dtype
    if input_dtype in ("float16", "bfloat16"):
      inputs = ops.cast(inputs, "float32")
    axes = tuple(range(len(inputs.shape) - 1))
    mean = ops.mean(inputs, axis=axes, keepdims=True)
    centred = inputs - mean
    variance = ops.mean(ops.square(centred), axis=axes, keepdims=True)
    scale = (ops.rsqrt(variance + ops.cast(self.epsilon, inputs.dtype))
             * ops.cast(self.gamma, inputs.dtype))
    return ops.cast(centred * scale + ops.cast(self.beta, inputs.dtype), input_dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon}
