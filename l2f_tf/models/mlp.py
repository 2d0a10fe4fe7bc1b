"""Multi-layer perceptrons: the regression network of MAML's sinusoid experiments (1 -> 40 -> 40
-> 1 with ReLU, :func:`mlp`) and its counterpart for N-way classification of vectors
(:func:`mlp_classifier`, the default network of `l2f_tf.domains.arrays.ArrayClassification`)."""

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


@gin.configurable
def mlp_classifier(num_classes: int = 5, input_shape: Sequence[int] = (1,),
                   hidden_units: Sequence[int] = (40, 40), activation: str = "relu",
                   name: str = "mlp_classifier") -> keras.Model:
  """A built Keras 3 MLP from examples of ``input_shape`` (flattened first when they have more
  than one axis) to ``num_classes`` logits. Every weight and bias is an inner-loop
  parameter."""
  inputs = keras.Input(tuple(int(d) for d in input_shape))
  x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
  for i, units in enumerate(hidden_units):
    x = keras.layers.Dense(units, activation=activation, name=f"dense{i + 1}")(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)
