"""ResNet12 for few-shot classification (as in the L2F paper's ResNet12 rows).

Four residual blocks of 64 / 128 / 256 / 512 channels, each three conv 3x3 (no bias) -> batch
norm (leaky ReLU after the first two) plus a 1x1 conv -> batch norm shortcut, added, leaky
ReLU, and max-pool 2 after blocks 1-3; global average pool and a dense head. The inner loop
adapts 18 tensors: 16 conv kernels, the dense kernel and bias.
"""

from typing import Sequence

import gin
import keras

from l2f_tf.models.batch_norm import BatchNorm
from l2f_tf.models.conv4 import conv_bn_block, pool_then_activate


def residual_block(x, filters: int, name: str, pool: bool):
  shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut_conv")(x)
  shortcut = BatchNorm(name=f"{name}_shortcut_bn")(shortcut)
  y = conv_bn_block(x, filters, name=f"{name}_a", pool=False)
  y = conv_bn_block(y, filters, name=f"{name}_b", pool=False)
  y = conv_bn_block(y, filters, name=f"{name}_c", pool=False, activation=False)
  y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
  if pool:
    return pool_then_activate(y, name, negative_slope=0.1)
  return keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_relu")(y)


@gin.configurable
def resnet12(num_classes: int = 5, image_shape: Sequence[int] = (84, 84, 3),
             channels: Sequence[int] = (64, 128, 256, 512), name: str = "resnet12"
             ) -> keras.Model:
  """A built Keras 3 ResNet12 for N-way classification of images of ``image_shape``."""
  if len(channels) != 4:
    raise ValueError(f"resnet12.channels must list 4 block widths, got {channels}.")
  inputs = keras.Input(tuple(image_shape))
  x = inputs
  for i, filters in enumerate(channels):
    x = residual_block(x, filters, name=f"res{i + 1}", pool=i < 3)
  x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)
