"""Non-overlapping max pooling whose derivatives are exact to any order, compiled or not.

MAML's second order differentiates the gradient of max pooling once more. TensorFlow's
``MaxPool`` op gets that from ``MaxPoolGradGrad``, which is exact in ordinary graphs but, under
XLA (``jit_compile=True``), picks the window maximum after rounding the inputs to bfloat16
(7 mantissa bits), so whenever two values of a window agree to ~3 significant digits it routes
the second-order term through the wrong element: on conv4 that made the XLA-compiled
second-order meta-gradient wrong by 1-15%. XLA also has no float64 ``MaxPoolGradGrad``.

:class:`MaxPool` instead reshapes each ``size x size`` window onto its own axes and takes
``reduce_max``. Its gradient is the upstream gradient times a constant mask of the maxima
(split evenly between exact ties), built from ordinary element-wise ops, so every derivative is
exact in any dtype, with or without XLA. Like Keras' ``MaxPooling2D(size)`` with 'valid'
padding, trailing rows/columns that do not fill a window are dropped (84 -> 42 -> 21 -> 10 -> 5).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="l2f_tf")
class MaxPool(keras.layers.Layer):
  """Max pooling over non-overlapping ``size x size`` windows of NHWC feature maps."""

  def __init__(self, size: int = 2, **kwargs):
    super().__init__(**kwargs)
    if int(size) < 1:
      raise ValueError(f"MaxPool size must be >= 1, got {size}.")
    self.size = int(size)

  def call(self, inputs):
    s = self.size
    _, height, width, channels = inputs.shape
    if height is None or width is None or channels is None:
      raise ValueError(f"{self.name}: height, width and channels must be known, got "
                       f"{inputs.shape}.")
    h, w = height // s, width // s
    x = inputs[:, :h * s, :w * s, :]
    x = ops.reshape(x, (-1, h, s, w, s, channels))
    return ops.max(x, axis=(2, 4))

  def compute_output_shape(self, input_shape):
    batch, height, width, channels = input_shape
    return (batch, height // self.size, width // self.size, channels)

  def get_config(self):
    return {**super().get_config(), "size": self.size}
