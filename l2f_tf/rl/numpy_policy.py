"""The sampler's policy calls in numpy, for the plain dense Gaussian policy.

The sampler asks for the action distribution of T tasks x N environments once per time step,
hundreds of times per meta-iteration, on a tiny batch. A compiled TensorFlow call spends most
of that in dispatch; the same dense network in numpy, with the per-task weights converted once
per batch of trajectories, returns the same distribution (to float rounding) several times
sooner. :func:`dense_policy_of` recognises `l2f_tf.models.gaussian_policy`'s structure (a chain
of Dense layers, a LogStd on the mean and the [mean, log_std] concatenation, every weight
adapted by the inner loop, no mixed precision), checks once that it computes what the model
computes, and returns None for any other model: the sampler then calls the compiled policy.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np
from absl import logging

from l2f_tf.models.gaussian_policy import LogStd

ACTIVATIONS = {
    keras.activations.linear: lambda x: x,
    keras.activations.tanh: np.tanh,
    keras.activations.relu: lambda x: np.maximum(x, 0),
    keras.activations.sigmoid: lambda x: 1 / (1 + np.exp(-x)),
}
PolicyFn = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]


class DensePolicy:
  """(stacked per-task parameters) -> numpy policy fn: observations [T, N, obs] -> (mean
  [T, N, act], log_std [T, act]), the sampler's ``policy_fn`` contract.

  Attributes:
    layers: per Dense layer (kernel position, bias position or None, numpy activation), the
      positions indexing the learner's inner-loop parameters.
    log_std: the position of the log-std vector.
  """

  def __init__(self, layers: List[Tuple[int, Optional[int], Callable]], log_std: int):
    self.layers, self.log_std = layers, log_std

  def bind(self, stacked_params: Sequence) -> PolicyFn:
    """The policy fn of these per-task parameters (leading task axis), converted once."""
    params = [np.asarray(p) for p in stacked_params]
    dtype = params[self.log_std].dtype
    log_std = params[self.log_std]

    def policy(observations: np.ndarray):
      x = np.asarray(observations, dtype)
      for kernel, bias, activation in self.layers:
        x = np.matmul(x, params[kernel])
        if bias is not None:
          x = x + params[bias][:, None, :]
        x = activation(x)
      return x, log_std

    return policy


def _is_chain(model, dense, log_std_layer, concatenate) -> bool:
  """Whether the layers are connected as input -> dense... -> mean, log_std(mean), and the
  output is concatenate([mean, log_std]); False for a layer called more than once."""
  try:
    chain = [model.inputs[0]] + [layer.output for layer in dense]
    joined = concatenate.input
    return (all(layer.input is previous for layer, previous in zip(dense, chain)) and
            log_std_layer.input is dense[-1].output and
            isinstance(joined, (list, tuple)) and len(joined) == 2 and
            joined[0] is dense[-1].output and joined[1] is log_std_layer.output and
            len(model.outputs) == 1 and model.outputs[0] is concatenate.output and
            all(layer.activation in ACTIVATIONS for layer in dense))
  except (AttributeError, ValueError):  # e.g. a shared layer has no single input
    return False


def _structure(learner) -> Optional[DensePolicy]:
  """The :class:`DensePolicy` of the learner's model, or None if it is not a plain dense chain
  whose every weight the inner loop adapts."""
  model = learner.model
  position = {id(v): i for i, v in enumerate(learner.inner_variables)}
  if len(position) != len(model.trainable_variables) or model.non_trainable_variables:
    return None
  layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
  if len(layers) < 3 or any(layer.dtype_policy.compute_dtype != layer.dtype_policy.variable_dtype
                            for layer in layers):
    return None
  *dense, log_std_layer, concatenate = layers
  if not (all(type(layer) is keras.layers.Dense for layer in dense) and  # pylint: disable=unidiomatic-typecheck
          isinstance(log_std_layer, LogStd) and
          isinstance(concatenate, keras.layers.Concatenate)):
    return None
  if not _is_chain(model, dense, log_std_layer, concatenate):
    return None
  return DensePolicy(
      [(position[id(layer.kernel)], position[id(layer.bias)] if layer.use_bias else None,
        ACTIVATIONS[layer.activation]) for layer in dense],
      position[id(log_std_layer.log_std)])


def dense_policy_of(learner, compiled_policy) -> Optional[DensePolicy]:
  """The numpy :class:`DensePolicy` of ``learner``'s policy network, or None (use
  ``compiled_policy``, the compiled ``(stacked params, observations) -> (mean, log_std)``).

  A recognised structure is also checked numerically once, on random observations of two
  tasks at theta, against ``compiled_policy``; a mismatch logs a warning and returns None.
  """
  policy = _structure(learner)
  if policy is None:
    return None
  theta = [np.repeat(np.asarray(t)[None], 2, axis=0) for t in learner.theta()]
  observations = np.random.default_rng(0).standard_normal(
      (2, 3, learner.model.inputs[0].shape[-1])).astype(np.float32)
  mean, log_std = policy.bind(theta)(observations)
  expected_mean, expected_log_std = (np.asarray(v) for v in compiled_policy(theta, observations))
  rtol = 1e-4 if mean.dtype == np.float32 else 1e-10
  if not (np.allclose(mean, expected_mean, rtol=rtol, atol=rtol) and
          np.allclose(log_std, expected_log_std, rtol=rtol, atol=rtol)):
    logging.warning("The numpy sampling policy of %s disagrees with the network; sampling "
                    "calls the compiled network instead.", learner.model.name)
    return None
  return policy
