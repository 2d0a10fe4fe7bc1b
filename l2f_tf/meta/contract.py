"""What a learner is: the one contract that trainers, exporters, checkpoints and figures rely on.

A learner (MAML/L2F's :class:`~l2f_tf.meta.learner.MetaLearner`, LEO's
:class:`~l2f_tf.meta.leo.LEO`) holds its weights in Keras objects (the network, the
attenuator, the inner learning rates) and adapts to one task at a time. Code above ``meta/``
calls only what :class:`Learner` lists; what a learner cannot do is said by its capability
flags, never found out by probing its attributes. :class:`LearnerBase` is the code both
learners share.
"""

from typing import (Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence,
                    runtime_checkable)

import keras
import tensorflow as tf

from l2f_tf import support_set


class EpisodeBatch(Protocol):
  """What the meta-objective reads from a batch of tasks (``l2f_tf.data.episode.Episode`` is
  one): the four tensors of every task, stacked on a leading task axis of static size."""
  support_x: tf.Tensor
  support_y: tf.Tensor
  query_x: tf.Tensor
  query_y: tf.Tensor


class Adaptation(NamedTuple):
  """The result of adapting to one task.

  Attributes:
    iterates: the parameters the task's predictions use after 0, 1, ..., N inner steps, each a
      list of tensors (MAML: theta_bar, theta_1, ...; LEO: the class weight vectors).
    gamma: the attenuation values (one per name in ``Learner.gamma_names``) or None.
  """
  iterates: List[List[tf.Tensor]]
  gamma: Optional[tf.Tensor]

  @property
  def fast_weights(self) -> List[tf.Tensor]:
    return self.iterates[-1]


@runtime_checkable
class Learner(Protocol):
  """The contract of a meta-learner.

  Attributes:
    method_name: the method as the paper's tables name it ("MAML+L2F", "LEO", ...).
    model, inner_lrs, attenuation: the Keras objects holding the weights (attenuation None
      without L2F); :meth:`checkpoint_parts` names everything a checkpoint must hold.
    dtype: the dtype of the parameters, outputs, losses and metrics.
    num_inner_steps: inner steps of meta-training (the default of :meth:`adapt`).
    task_reduction: "mean" or "sum" of the tasks' losses in the meta-loss.
    loss_fn, metric_fn: ``fn(y_true, y_pred)`` of one task (metric_fn may be None).
    num_outputs: the size of an output's last axis (classes, for classification).
    inner_variables, inner_variable_names: what the per-tensor summaries (degree of
      conflict) are about.
    gamma_names: what each logged gamma value attenuates (empty without attenuation).
    meta_variables: everything the outer loop trains; network_variables: those its gradient
      clipping applies to; attenuator_variables, inner_lr_variables: the L2F attenuator's and
      the learnable inner learning rates'.
    vectorize_tasks: the meta-loss maps its tasks with ``tf.vectorized_map`` (which XLA would
      recompile at every step).
    supports_sequential_tasks: the memory-lean task-by-task meta-gradient applies.
    supports_landscape: the inner loop's landscape measures apply.
    batch_norm: the network's batch-norm mode ("none" without batch norm);
      uses_support_statistics: query predictions need the support set (``forward``).
  """
  method_name: str
  model: keras.Model
  inner_lrs: keras.layers.Layer
  attenuation: Optional[keras.layers.Layer]
  dtype: tf.DType
  num_inner_steps: int
  task_reduction: str
  loss_fn: Callable
  metric_fn: Optional[Callable]
  num_outputs: int
  inner_variables: List[keras.Variable]
  inner_variable_names: List[str]
  gamma_names: List[str]
  meta_variables: List[keras.Variable]
  network_variables: List[keras.Variable]
  attenuator_variables: List[keras.Variable]
  inner_lr_variables: List[keras.Variable]
  vectorize_tasks: bool
  supports_sequential_tasks: bool
  supports_landscape: bool
  batch_norm: str
  uses_support_statistics: bool

  def checkpoint_parts(self) -> Dict[str, object]:
    """Name -> trackable object: what a checkpoint of the learner's state holds."""

  def forward(self, params: Sequence[tf.Tensor], x: tf.Tensor, training: bool = ...,
              support_x: Optional[tf.Tensor] = None):
    """The outputs on ``x`` at the parameters ``params`` (an iterate of :meth:`adapt`);
    ``support_x``: the task's support set when ``x`` are its queries (networks that normalise
    with the support set's statistics need it, see :attr:`batch_norm`)."""

  def loss_at(self, params, x, y, support_x=None) -> tf.Tensor: ...

  def adapt(self, support_x, support_y, num_steps: Optional[int] = None,
            first_order: bool = False) -> Adaptation:
    """Adapts to one task (no task axis), deterministically outside meta-training."""

  def attenuate(self, support_x, support_y):
    """(the starting point before any inner step, gamma or None) for one task."""

  def meta_loss(self, episodes: EpisodeBatch, first_order: bool = False,
                with_metrics: bool = False):
    """(the meta-loss of a batch of tasks, metrics: query loss and metric after each inner
    step, gamma, ... when ``with_metrics``)."""

  def per_task_meta_gradients(self, episodes: EpisodeBatch, first_order: bool = False):
    """Per task, the meta-gradient with respect to :attr:`inner_variables`."""


class LearnerBase:
  """Code shared by the learners: variables, checkpoint parts, losses, predictions.

  A subclass sets ``family`` ("MAML", "LEO") and, in ``__init__``, ``model``, ``loss_fn``,
  ``metric_fn``, ``attenuation``, ``inner_lrs`` and ``dtype``."""

  family = ""
  task_reduction = "mean"
  vectorize_tasks = False
  supports_sequential_tasks = True
  supports_landscape = True

  @property
  def method_name(self) -> str:
    if self.attenuation is None:
      return self.family
    return f"{self.family}+{self.attenuation.method_name}"

  @property
  def inner_variable_names(self) -> List[str]:
    return [v.path for v in self.inner_variables]

  @property
  def gamma_names(self) -> List[str]:
    return self.inner_variable_names if self.attenuation is not None else []

  @property
  def network_variables(self) -> List[keras.Variable]:
    return list(self.model.trainable_variables)

  @property
  def attenuator_variables(self) -> List[keras.Variable]:
    return list(self.attenuation.trainable_variables) if self.attenuation is not None else []

  @property
  def inner_lr_variables(self) -> List[keras.Variable]:
    return list(self.inner_lrs.trainable_variables)

  @property
  def meta_variables(self) -> List[keras.Variable]:
    return (list(self.model.trainable_variables) + self.attenuator_variables
            + self.inner_lr_variables)

  @property
  def num_outputs(self) -> int:
    return int(self.model.output_shape[-1])

  def checkpoint_parts(self) -> Dict[str, object]:
    parts = {"model": self.model, "inner_lrs": self.inner_lrs}
    if self.attenuation is not None:
      parts["attenuation"] = self.attenuation
    return parts

  def loss_at(self, params, x, y, support_x=None) -> tf.Tensor:
    return self.loss_fn(y, self.forward(params, x, support_x=support_x))

  @property
  def batch_norm(self) -> str:
    """The network's batch-norm mode ("transductive", "support", "task_norm_i"; "none"
    without one), recorded in results.json and the SavedModel."""
    return support_set.mode_of(self.model)

  @property
  def uses_support_statistics(self) -> bool:
    """Whether query predictions normalise with the support set (``forward``'s ``support_x``)."""
    return support_set.uses_support_statistics(self.model)

  def predict(self, support_x, support_y, query_x, num_steps: Optional[int] = None) -> tf.Tensor:
    """The outputs on ``query_x`` after ``num_steps`` first-order inner steps (default: the
    training setting) on the support set: the library's ``adapt_and_predict``. Arrays or
    tensors, preprocessed as the domain's pipeline does."""
    support_x, support_y, query_x = (self._as_input(v) for v in (support_x, support_y, query_x))
    adaptation = self.adapt(support_x, support_y, num_steps, first_order=True)
    return self.forward(adaptation.fast_weights, query_x, support_x=support_x)

  def _as_input(self, value) -> tf.Tensor:
    """A tensor of ``value``; floating values in the learner's dtype (numpy gives float64)."""
    value = tf.convert_to_tensor(value)
    return tf.cast(value, self.dtype) if value.dtype.is_floating else value
