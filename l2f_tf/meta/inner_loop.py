"""The inner loop of MAML: SGD on explicit fast weights.

The inner loop never assigns to variables: it differentiates the support loss with respect to
plain parameter tensors and returns new tensors, so the outer tape sees every step and can
differentiate through it (second order). First order adds ``tf.stop_gradient`` on the inner
gradients, which drops exactly the Hessian terms. Learning rates are fixed (MAML) or learnable
per tensor and step (MAML++'s LSLR): :class:`InnerLearningRates`.

A second-order step can also be *recomputed* (``recompute_inputs``): one ``tf.custom_gradient``
op that keeps only its inputs (the small parameter tensors) and recomputes the step in its
backward pass, with the same values and gradients in less memory (``l2f_tf.meta.sequential``).
"""

from typing import Callable, List, Optional, Sequence

import keras
import tensorflow as tf

Params = List[tf.Tensor]


class InnerLearningRates(keras.layers.Layer):
  """Inner-loop learning rates: the constant ``inner_lr``, or if ``learnable`` a variable
  [num_steps, num_tensors] initialised to it and trained by the outer loop (MAML++ LSLR).
  Evaluation with more than ``num_steps`` steps ("later steps") takes ``later_lr`` for every
  tensor when it is set, else reuses the last trained step's rates. ``later_lr`` is a plain
  attribute, not a weight: an evaluation setting that never changes training."""

  def __init__(self, num_tensors: int, num_steps: int, inner_lr: float = 0.01,
               learnable: bool = False, later_lr: Optional[float] = None, **kwargs):
    super().__init__(**kwargs)
    self.num_tensors, self.num_steps = num_tensors, num_steps
    self.inner_lr, self.learnable = float(inner_lr), learnable
    self.later_lr = None if later_lr is None else float(later_lr)
    if learnable:
      self.rates = self.add_weight(
          shape=(num_steps, num_tensors), initializer=keras.initializers.Constant(inner_lr),
          name="inner_lr", trainable=True)
    self.built = True

  def for_step(self, step: int) -> List:
    """The learning rate of every tensor at inner step ``step`` (0-based)."""
    if step >= self.num_steps and self.later_lr is not None:
      return [self.later_lr] * self.num_tensors
    if not self.learnable:
      return [self.inner_lr] * self.num_tensors
    row = min(step, self.num_steps - 1)
    values = self.rates.value
    return [values[row, j] for j in range(self.num_tensors)]


def gradients(loss_fn: Callable[[Params], tf.Tensor], params: Params, loss_scale: float = 1.0):
  """Returns (loss, d loss / d params) for a loss of explicit parameter tensors.

  ``loss_scale`` (mixed_float16, ``l2f_tf.precision``): the gradient is taken of the loss times
  this factor and divided by it, so that float16 backprop does not underflow.
  """
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(params)
    loss = loss_fn(params)
    scaled = loss * loss_scale if loss_scale != 1.0 else loss
  grads = tape.gradient(scaled, params)
  if loss_scale != 1.0:
    grads = [None if g is None else g / loss_scale for g in grads]
  return loss, grads


def as_rate(lr, dtype) -> tf.Tensor:
  """A learning rate (Python float or tensor) as a tensor of ``dtype`` (a float directly: tf.cast
  would go through float32 and lose digits in float64 runs)."""
  return tf.cast(lr, dtype) if tf.is_tensor(lr) else tf.constant(lr, dtype)


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
    new_params.append(p - as_rate(lr, p.dtype) * g)
  return new_params


def recomputed_sgd_step(loss_fn: Callable[[Params, Params], tf.Tensor], params: Params,
                        inputs: Params, learning_rates: Sequence,
                        loss_scale: float = 1.0) -> Params:
  """The second-order step ``theta - lr * d loss_fn(theta, inputs) / d theta`` as one op that
  keeps only its inputs and recomputes itself in the backward pass.

  ``inputs``: the other tensors the support loss needs gradients for (outer-loop-only weights
  such as batch-norm scale/offset), explicit because a custom gradient only differentiates
  with respect to its arguments. Learnable ``learning_rates`` get their gradients too.
  """
  n, m = len(params), len(inputs)
  lrs = [as_rate(lr, p.dtype) for lr, p in zip(learning_rates, params)]

  def update(args):
    p, others = list(args[:n]), list(args[n:n + m])
    _, grads = gradients(lambda q: loss_fn(q, others), p, loss_scale)
    return sgd_step(p, grads, args[n + m:])

  @tf.custom_gradient
  def step(*args):
    new = update(args)  # Nothing of this forward pass is kept.

    def grad_fn(*dys):
      # Recompute only once the incoming gradients exist: without this control dependency the
      # executor would recompute every step as early as possible and keep them all.
      with tf.control_dependencies(dys):
        recompute_from = [tf.identity(a) for a in args]
      with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(recompute_from)
        recomputed = update(recompute_from)
      return tape.gradient(recomputed, recompute_from, output_gradients=list(dys),
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return new, grad_fn

  return list(step(*params, *inputs, *lrs))


def inner_loop(loss_fn: Callable, initial_params: Params, num_steps: int,
               learning_rates: InnerLearningRates, first_order: bool = False,
               recompute_inputs: Optional[Params] = None,
               loss_scale: float = 1.0, first_step: int = 0) -> List[Params]:
  """``num_steps`` SGD steps on the support loss ``loss_fn(params)`` from ``initial_params``
  (theta for MAML, theta_bar for L2F): the iterates ``[params_0, ..., params_num_steps]``.

  ``first_order`` drops the second-order terms. With ``recompute_inputs`` (second order only)
  every step is a :func:`recomputed_sgd_step`, the loss ``loss_fn(params, recompute_inputs)``.
  ``loss_scale``: see :func:`gradients`. ``first_step``: the index of the first step, for its
  learning rates (steps that continue an adaptation, e.g. meta-RL evaluation's later steps).
  """
  if recompute_inputs is not None and first_order:
    raise ValueError("inner_loop: recompute_inputs is for second order only.")
  params = list(initial_params)
  iterates = [params]
  for step in range(num_steps):
    rates = learning_rates.for_step(first_step + step)
    if recompute_inputs is not None:
      params = recomputed_sgd_step(loss_fn, params, list(recompute_inputs), rates, loss_scale)
    else:
      _, grads = gradients(loss_fn, params, loss_scale)
      params = sgd_step(params, grads, rates, first_order)
    iterates.append(params)
  return iterates
