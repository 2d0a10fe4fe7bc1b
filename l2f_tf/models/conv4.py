"""The 4-conv backbone of the reference few-shot classification code (MAML / MAML++ / L2F).

4 x [conv 3x3, `filters` channels, no bias -> batch norm -> leaky ReLU -> max-pool 2], flatten,
dense to N classes; Glorot-uniform initialisation. Batch-norm scale/offset are outer-loop only,
so the inner loop adapts 6 tensors: 4 conv kernels, the dense kernel and bias (one L2F gamma
each).
"""

from typing import Sequence

import gin
import keras

from l2f_tf.models.batch_norm import BatchNorm
from l2f_tf.models.pooling import MaxPool


def pool_then_activate(x, name: str, negative_slope: float):
  """leaky ReLU then max-pool 2, computed as pool then ReLU: they commute exactly (leaky ReLU
  is increasing, so every window picks the same element), and the ReLU sees a quarter of the
  values."""
  x = MaxPool(2, name=f"{name}_pool")(x)
  return keras.layers.LeakyReLU(negative_slope=negative_slope, name=f"{name}_relu")(x)


def conv_bn_block(x, filters: int, name: str, pool: bool = True, activation: bool = True):
  """conv 3x3 (no bias) -> batch norm -> [leaky ReLU] -> [max-pool 2]."""
  x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_initializer="glorot_uniform", name=f"{name}_conv")(x)
  x = BatchNorm(name=f"{name}_bn")(x)
  if pool:
    return (pool_then_activate(x, name, negative_slope=0.01) if activation else
            MaxPool(2, name=f"{name}_pool")(x))
  return keras.layers.LeakyReLU(negative_slope=0.01, name=f"{name}_relu")(x) if activation else x


@gin.configurable
def conv4(num_classes: int = 5, image_shape: Sequence[int] = (84, 84, 3), filters: int = 48,
          name: str = "conv4") -> keras.Model:
  """A built Keras 3 conv4 for N-way classification of images of ``image_shape``."""
  if min(image_shape[:2]) < 16:
    raise ValueError(f"conv4 halves the image 4 times, so it needs images of at least 16x16; "
                     f"got image_shape {tuple(image_shape)}: raise the image size.")
  inputs = keras.Input(tuple(image_shape))
  x = inputs
  for i in range(4):
    x = conv_bn_block(x, filters, name=f"block{i + 1}")
  x = keras.layers.Flatten(name="flatten")(x)
  outputs = keras.layers.Dense(num_classes, kernel_initializer="glorot_uniform",
                               name="logits")(x)
  return keras.Model(inputs, outputs, name=name)
