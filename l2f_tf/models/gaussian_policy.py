"""The Gaussian MLP policy of meta-RL: obs -> (mean, state-independent log-std).

64-64 tanh hidden layers (the L2F / ProMP setting; MAML used 100-100 ReLU), a linear mean head
and a learned log-std vector initialised at 0. The one output ``[mean, log_std]``
([B, 2 * action_dim], `l2f_tf.rl.policy_gradient.distribution` reads it) lets the generic
``MetaLearner`` adapt every tensor, log-std included as in the reference code, and L2F gets one
gamma per tensor (7 for two hidden layers).
"""

from typing import Sequence

import gin
import keras
from keras import ops


class LogStd(keras.layers.Layer):
  """A learned, state-independent log standard deviation, broadcast to the batch."""

  def __init__(self, action_dim: int, initial_value: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.action_dim, self.initial_value = action_dim, initial_value

  def build(self, input_shape):
    self.log_std = self.add_weight(
        shape=(self.action_dim,), name="log_std",
        initializer=keras.initializers.Constant(self.initial_value))

  def call(self, mean):
    return ops.zeros_like(mean) + ops.cast(self.log_std, mean.dtype)

  def get_config(self):
    return {**super().get_config(), "action_dim": self.action_dim,
            "initial_value": self.initial_value}


@gin.configurable
def gaussian_policy(observation_dim: int, action_dim: int,
                    hidden_units: Sequence[int] = (64, 64), activation: str = "tanh",
                    initial_log_std: float = 0.0, name: str = "gaussian_policy",
                    dtype=None) -> keras.Model:
  """A built Keras 3 Gaussian MLP policy; output [B, 2 * action_dim] = [mean, log_std]."""
  inputs = keras.Input((observation_dim,), dtype=dtype)
  x = inputs
  for i, units in enumerate(hidden_units):
    x = keras.layers.Dense(units, activation=activation, name=f"hidden{i + 1}", dtype=dtype)(x)
  mean = keras.layers.Dense(action_dim, name="mean", dtype=dtype)(x)
  log_std = LogStd(action_dim, initial_log_std, name="log_std", dtype=dtype)(mean)
  outputs = keras.layers.Concatenate(name="mean_and_log_std", dtype=dtype)([mean, log_std])
  return keras.Model(inputs, outputs, name=name)
