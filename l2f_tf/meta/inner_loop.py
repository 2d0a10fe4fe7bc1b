"""The inner loop of MAML: SGD on explicit fast weights.

The inner loop never assigns to variables. It takes the current inner-loop parameters as plain
tensors, differentiates the support loss with respect to them and returns new tensors, so the
outer tape sees every step and can differentiate through it (second order). First order is the
same code with ``tf.stop_gradient`` on the inner gradients, which drops exactly the Hessian terms.

Learning rates are either fixed (one float, as in MAML) or learnable per tensor and per step (the
"LSLR" of MAML++), held by :class:`InnerLearningRates`.
"""

from typing import Callable, List, Sequence

import keras
import tensorflow as tf

Params = List[tf.Tensor]


class InnerLearningRates(keras.layers.Layer):
  """Inner-loop learning rates, one per (step, parameter tensor) when learnable.

  Args:
    num_tensors: number of inner-loop parameter tensors.
    num_steps: number of inner steps trained; evaluation with more steps reuses the last step's
      rates.
    inner_lr: the fixed learning rate, also the initial value of learnable rates.
    learnable: if True, rates are variables of shape [num_steps, num_tensors] trained by the
      outer loop (MAML++ LSLR); otherwise the constant ``inner_lr``.
  """

  def __init__(self, num_tensors: int, num_steps: int, inner_lr: float = 0.01,
               learnable: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.num_tensors = num_tensors
    self.num_steps = num_steps
    self.inner_lr = float(inner_lr)
    self.learnable = learnable
    if learnable:
      self.rates = self.add_weight(
          shape=(num_steps, num_tensors), initializer=keras.initializers.Constant(inner_lr),
          name="inner_lr", trainable=True)
    self.built = True

  def for_step(self, step: int) -> List:
    """The learning rate of every tensor at inner step ``step`` (0-based)."""
    if not self.learnable:
      return [self.inner_lr] * self.num_tensors
    row = min(step, self.num_steps - 1)
    values = self.rates.value
    return [values[row, j] for j in range(self.num_tensors)]


def gradients(loss_fn: Callable[[Params], tf.Tensor], params: Params):
  """Returns (loss, d loss / d params) for a loss of explicit parameter tensors."""
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(params)
    loss = loss_fn(params)
  return loss, tape.gradient(loss, params)


def sgd_step(params: Params, grads: Sequence[tf.Tensor], learning_rates: Sequence,
             first_order: bool = False) -> Params:
  """theta' = theta - lr * g for every tensor; stop_gradient on g when first order."""
  new_params = []
  for p, g, lr in zip(params, grads, learning_rates):
    if g is None:
      raise ValueError(
          "An inner-loop parameter has no gradient from the support loss; exclude it from the "
          "inner loop (model attribute `inner_loop_variables`).")
    if first_order:
      g = tf.stop_gradient(g)
    # A Python float must become a tensor of p's dtype directly: tf.cast would first make it a
    # float32 tensor and lose precision in float64 runs.
    lr = tf.cast(lr, p.dtype) if tf.is_tensor(lr) else tf.constant(lr, p.dtype)
    new_params.append(p - lr * g)
  return new_params


def inner_loop(loss_fn: Callable[[Params], tf.Tensor], initial_params: Params, num_steps: int,
               learning_rates: InnerLearningRates, first_order: bool = False) -> List[Params]:
  """Runs ``num_steps`` SGD steps on the support loss from ``initial_params``.

  Args:
    loss_fn: maps a list of parameter tensors to the scalar support loss.
    initial_params: the starting point (theta for MAML, theta_bar for L2F).
    num_steps: number of SGD steps.
    learning_rates: rates per step and tensor.
    first_order: drop second-order terms (stop_gradient on the inner gradients).

  Returns:
    The list of iterates ``[params_0, params_1, ..., params_num_steps]``.
  """
  iterates = [list(initial_params)]
  params = list(initial_params)
  for step in range(num_steps):
    _, grads = gradients(loss_fn, params)
    params = sgd_step(params, grads, learning_rates.for_step(step), first_order)
    iterates.append(params)
  return iterates
