"""Non-overlapping max pooling with exact first and second derivatives, compiled or not.

MAML's second order differentiates the gradient of max pooling once more. TensorFlow's
``MaxPoolGradGrad`` is exact in ordinary graphs, but under XLA (``jit_compile=True``) it picks
each window's maximum after rounding to bfloat16, so when two values of a window agree to ~3
digits it routes the second-order term through the wrong element (docs/second_order.md); XLA
also has no float64 ``MaxPoolGradGrad``.

:class:`MaxPool` keeps TensorFlow's ``MaxPool`` forward and ``MaxPoolGrad`` backward passes
(exact under XLA too) and replaces only the derivative of the backward pass. That derivative
is linear: it reads the incoming second-order gradient at each window's maximum (and is zero
with respect to the pooled values, where the routing is piecewise constant). Outside XLA it is
``MaxPoolGrad`` of ones (a one-hot mask of the element the first derivative routes to) times
the incoming gradient, summed per window by average pooling times ``size**2`` (faster than
``MaxPoolGradGrad``: docs/few_shot_classification.md). Under XLA each window is reshaped onto
its own axes and masked where ``x == max``, element-wise ops exact in any dtype (an exact tie
splits the value evenly where ``MaxPoolGrad`` picks one element: both are valid derivatives
of the kink). Like Keras' ``MaxPooling2D(size)``, 'valid' padding drops trailing rows/columns
that do not fill a window (84 -> 42 -> 21 -> 10 -> 5).
"""

import keras
import tensorflow as tf

try:  # TensorFlow's own test for "tracing for XLA"; not public API.
  from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import
except ImportError:  # pragma: no cover
  control_flow_util = None


def _in_xla_context() -> bool:
  """True while tracing for XLA; without TensorFlow's test, True (the path exact everywhere)."""
  if control_flow_util is None:  # pragma: no cover
    return True
  return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _windows(x, size: int, h: int, w: int):
  """[B, h*size(+), w*size(+), C] -> [B, h, size, w, size, C] (trailing rows/columns cut)."""
  return tf.reshape(x[:, :h * size, :w * size, :], (-1, h, size, w, size, x.shape[-1]))


def _select_at_maxima(x, y, ddx, size: int):
  """For each window: ddx at the maximum of x (y = the window maxima), as a [B, h, w, C]."""
  h, w = y.shape[1], y.shape[2]
  mask = tf.cast(tf.equal(_windows(x, size, h, w), y[:, :, None, :, None, :]), ddx.dtype)
  count = tf.reduce_sum(mask, axis=(2, 4))
  return tf.reduce_sum(mask * _windows(ddx, size, h, w), axis=(2, 4)) / count


def max_pool(x: tf.Tensor, size: int) -> tf.Tensor:
  """``size x size`` max pooling with stride ``size``, 'valid' padding, NHWC."""
  window = [1, size, size, 1]
  xla = _in_xla_context()

  @tf.custom_gradient
  def backward(x, y, dy):
    dx = tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=dy, ksize=window,
                                strides=window, padding="VALID")

    def second_order(ddx):
      # dx is linear in dy; its routing is piecewise constant in x (and y).
      if xla:
        return tf.zeros_like(x), tf.zeros_like(y), _select_at_maxima(x, y, ddx, size)
      mask = tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=tf.ones_like(y),
                                    ksize=window, strides=window, padding="VALID")
      picked = tf.nn.avg_pool2d(ddx * mask, window, window, "VALID") * float(size * size)
      return None, None, picked

    return dx, second_order

  @tf.custom_gradient
  def pool(x):
    y = tf.nn.max_pool2d(x, window, window, "VALID")
    return y, lambda dy: backward(x, y, dy)

  return pool(x)


@keras.saving.register_keras_serializable(package="l2f_tf")
class MaxPool(keras.layers.Layer):
  """Max pooling over non-overlapping ``size x size`` windows of NHWC feature maps."""

  def __init__(self, size: int = 2, **kwargs):
    super().__init__(**kwargs)
    if int(size) < 1:
      raise ValueError(f"MaxPool size must be >= 1, got {size}.")
    self.size = int(size)

  def call(self, inputs):
    if any(d is None for d in inputs.shape[1:]):
      raise ValueError(f"{self.name}: height, width and channels must be known, got "
                       f"{inputs.shape}.")
    return max_pool(inputs, self.size)

  def compute_output_shape(self, input_shape):
    batch, height, width, channels = input_shape
    return (batch, height // self.size, width // self.size, channels)

  def get_config(self):
    return {**super().get_config(), "size": self.size}
