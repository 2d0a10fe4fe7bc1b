"""The precision of a run: float32, or mixed precision (low-precision compute, float32 weights).

Chosen in gin with ``precision.name`` (or ``build_learner.precision``):
  * "float32": everything in float32 (the default);
  * "mixed_bfloat16": layers compute in bfloat16 (float32's exponent range, so nothing over- or
    underflows that would not in float32; 8 significant bits), variables are float32;
  * "mixed_float16": layers compute in float16, variables are float32, gradients are
    loss-scaled (float16 underflows below ~6e-8). Meant for GPUs;
  * "bfloat16_conv": only convolutions and dense layers compute in bfloat16 (matrix units: AMX
    on recent Xeons, GPU tensor cores); all else stays float32. On a CPU, element-wise ops in
    bfloat16 and the casts around them cost more than they save (docs/scaling.md).

The name is a Keras dtype policy the network and the L2F attenuator are built under
(:func:`policy_scope`); "bfloat16_conv" builds in float32 and then switches the network's
convolutions and dense layers (:func:`convert`). Under a mixed policy these stay float32:
  * every variable (theta, batch-norm scale/offset, the attenuator, the inner learning rates)
    and the fast weights: a layer casts its weights inside its call, so the gradient w.r.t. a
    float32 weight is float32;
  * losses and metrics: ``MetaLearner.forward`` casts the network's outputs to the variables'
    dtype;
  * the attenuator (``l2f_tf.meta.attenuation``): tiny, and gamma scales every weight;
  * batch-norm statistics and normalisation (``l2f_tf.models.batch_norm``).

Loss scaling ("mixed_float16" only): the inner loop scales the support loss by a static factor
(``MetaLearner.inner_loss_scale``, :data:`FLOAT16_INNER_LOSS_SCALE` by default) and unscales its
gradient; the trainer scales the meta-loss by the dynamic scale of a
:class:`LossScaleOptimizer`, which skips the update and halves the scale on a non-finite
meta-gradient (:func:`with_loss_scaling`).
"""

import contextlib
from typing import Iterator, Optional

import gin
import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16_conv")

# Under "bfloat16_conv", layers of these kinds compute in bfloat16 (:func:`convert`).
_MATRIX_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                  keras.layers.Dense)

# The inner loop's static loss scale under float16: a power of two (exact to scale and unscale)
# lifting gradients of order 1e-6..1e-4 out of float16's subnormals, while a cross-entropy's
# (at most 1 per logit) stays far below float16's 65504.
FLOAT16_INNER_LOSS_SCALE = 2.0 ** 10


def check(name: str) -> str:
  """``name`` if it is one of :data:`PRECISIONS`; a ValueError naming them otherwise."""
  if name not in PRECISIONS:
    raise ValueError(f"Unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}.")
  return name


@gin.configurable("precision")
def configured(name: str = "float32") -> str:
  """The precision of the run as configured in gin (``precision.name``), checked."""
  return check(name)


@contextlib.contextmanager
def policy_scope(name: str) -> Iterator[None]:
  """Layers created inside use the Keras dtype policy ``name``; the global one is restored."""
  check(name)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("float32" if name == "bfloat16_conv" else name)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def convert(model: keras.Model, name: str) -> keras.Model:
  """``model`` (built in :func:`policy_scope`) with, under "bfloat16_conv", its convolutions and
  dense layers switched to the mixed_bfloat16 policy; otherwise unchanged."""
  if check(name) == "bfloat16_conv":
    # pylint: disable-next=protected-access
    for layer in model._flatten_layers(include_self=False, recursive=True):
      if isinstance(layer, _MATRIX_LAYERS):
        layer.dtype_policy = "mixed_bfloat16"
  return model


def computes_in_float16(model: keras.Model) -> bool:
  """Whether a layer of ``model`` computes in float16 (its gradients then need loss scaling)."""
  # pylint: disable-next=protected-access
  layers = model._flatten_layers(include_self=True, recursive=True)
  return any(layer.compute_dtype == "float16" for layer in layers)


def default_inner_loss_scale(model: keras.Model) -> float:
  """The inner loop's static loss scale for ``model``: 1 unless it computes in float16."""
  return FLOAT16_INNER_LOSS_SCALE if computes_in_float16(model) else 1.0


class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """Keras' dynamic loss scaling, except that a skipped update still counts as an iteration.

  The trainer's step is this counter and the data stream is keyed on it, so counting the skipped
  meta-iteration (whose meta-batch was read) makes a resumed run read the same meta-batches as
  an uninterrupted one. Adam's bias correction then sees one more step than updates.
  """

  def _stateful_handle_non_finite_grads(self):
    super()._stateful_handle_non_finite_grads()
    self.iterations.assign_add(1)


def with_loss_scaling(optimizer: keras.optimizers.Optimizer, model: keras.Model,
                      initial_scale: float = 2.0 ** 15,
                      dynamic_growth_steps: int = 2000) -> keras.optimizers.Optimizer:
  """``optimizer`` in a :class:`LossScaleOptimizer` if ``model`` computes in float16, else as it
  is. The wrapper takes gradients of the loss times :func:`dynamic_loss_scale`, skips the
  update and halves the scale on a non-finite one, and doubles it after
  ``dynamic_growth_steps`` finite ones."""
  if not computes_in_float16(model):
    return optimizer
  return LossScaleOptimizer(optimizer, initial_scale=initial_scale,
                            dynamic_growth_steps=dynamic_growth_steps)


def dynamic_loss_scale(optimizer) -> Optional[tf.Tensor]:
  """The current loss scale (float32) of a built loss-scaling optimizer, else None."""
  if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return None
  return optimizer.dynamic_scale.value


def clip_gradient(gradient: tf.Tensor, limit: float,
                  loss_scale: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Element-wise clip to [-limit, limit] of a gradient that may still be loss-scaled.

  With a ``loss_scale`` the limit is scaled alike and non-finite entries are kept, so that the
  loss-scaling optimizer still sees them and skips the step (a clip would make inf finite).
  """
  if loss_scale is None:
    return tf.clip_by_value(gradient, -limit, limit)
  scaled_limit = tf.cast(limit * loss_scale, gradient.dtype)
  clipped = tf.clip_by_value(gradient, -scaled_limit, scaled_limit)
  return tf.where(tf.math.is_finite(gradient), clipped, gradient)
