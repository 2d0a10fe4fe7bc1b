"""The regression network of MAML's sinusoid experiments: 1 -> 40 -> 40 -> 1 with ReLU."""

from typing import Optional, Sequence

import gin
import keras


@gin.configurable
def mlp(input_dim: int = 1, hidden_units: Sequence[int] = (40, 40), output_dim: int = 1,
        activation: str = "relu", dtype: Optional[str] = None, name: str = "mlp") -> keras.Model:
  """A built Keras 3 MLP. Every weight and bias is an inner-loop parameter.

  ``dtype``: of the weights and inputs (e.g. "float64"); None follows the global Keras dtype
  policy (float32, or a mixed precision set by ``l2f_tf.precision``) with float32 inputs.
  """
  inputs = keras.Input((input_dim,), dtype=dtype)
  x = inputs
  for i, units in enumerate(hidden_units):
    x = keras.layers.Dense(units, activation=activation, dtype=dtype, name=f"dense{i + 1}")(x)
  outputs = keras.layers.Dense(output_dim, dtype=dtype, name="output")(x)
  return keras.Model(inputs, outputs, name=name)
