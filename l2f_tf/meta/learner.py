"""MetaLearner: a Keras model, the MAML inner loop and (for L2F) an attenuation of theta.

The Keras model holds the meta-initialisation theta. Adaptation calls it with other values for
its weights through Keras 3's ``model.stateless_call``, so fast weights are plain tensors and the
outer ``tf.GradientTape`` differentiates through the whole inner loop.

Only some trainable variables are adapted in the inner loop: by default every trainable variable
except batch-norm scale/offset, which (as in the reference code) are trained by the outer loop
only. A model can name its inner-loop variables itself with an ``inner_loop_variables``
attribute.

Per task, with theta the inner-loop tensors:
  MAML:      theta'  = inner_loop(theta)
  MAML+L2F:  g = grad L_support(theta) (constant); theta_bar = attenuate(theta, g);
             theta'  = inner_loop(theta_bar)
and the meta-loss is the query loss at theta', reduced over the tasks of the meta-batch.

Under mixed precision (``l2f_tf.precision``) the network computes in bfloat16 or float16 but
its variables, the fast weights, its outputs as seen here (:meth:`MetaLearner.forward` casts
them), the losses and the metrics are in :attr:`MetaLearner.dtype`, the variables' float32.
"""

from typing import Callable, List, Optional, Sequence

import gin
import keras
import tensorflow as tf
from absl import logging

from l2f_tf import precision, support_set
from l2f_tf.meta import inner_loop as inner_loop_lib
from l2f_tf.meta.attenuation import (Attenuation, gradient_mean_embedding,
                                     prototype_mean_embedding)
from l2f_tf.meta.contract import Adaptation, EpisodeBatch, LearnerBase

TASK_REDUCTIONS = ("mean", "sum")


def default_inner_loop_variables(model: keras.Model) -> List[keras.Variable]:
  """Trainable variables of ``model`` except those of normalisation layers.

  Excluded are the variables of Keras' ``BatchNormalization`` and of every layer with a true
  ``outer_loop_only`` attribute (the library's exactly differentiable ``BatchNorm``).
  """
  if hasattr(model, "inner_loop_variables"):
    return list(model.inner_loop_variables)
  excluded = set()
  for layer in model._flatten_layers(include_self=False, recursive=True):  # pylint: disable=protected-access
    if (isinstance(layer, keras.layers.BatchNormalization)
        or getattr(layer, "outer_loop_only", False)):
      excluded.update(id(v) for v in layer.trainable_variables)
  return [v for v in model.trainable_variables if id(v) not in excluded]


# Keras layers whose derivatives are right to first order only (see l2f_tf.models): the
# library's BatchNorm and MaxPool replace them in backbones meant for second-order MAML.
_INEXACT_SECOND_ORDER = {
    "BatchNormalization": "its variance is taken around stop_gradient(mean), so second-order "
                          "meta-gradients miss a term; use l2f_tf.BatchNorm",
    "MaxPooling2D": "under XLA (jit_compile=True) its second derivative picks window maxima "
                    "at bfloat16 precision; use l2f_tf.MaxPool",
}


def warn_about_inexact_layers(model: keras.Model) -> List[str]:
  """Logs (and returns) a warning per Keras layer type that breaks exact second order."""
  layers = model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
  found = {type(layer).__name__ for layer in layers}
  messages = [f"Model {model.name!r} has a keras.layers.{name}: {why}."
              for name, why in _INEXACT_SECOND_ORDER.items() if name in found]
  for message in messages:
    logging.warning(message)
  return messages


def has_convolutions(model: keras.Model) -> bool:
  """Whether any layer of ``model`` (nested ones too) is a convolution of some kind."""
  layers = model._flatten_layers()  # pylint: disable=protected-access
  return any("Conv" in cls.__name__ for layer in layers for cls in type(layer).__mro__)


@gin.configurable
class MetaLearner(LearnerBase):
  """MAML, or MAML+L2F when ``attenuation`` is given.

  Args:
    model: a built Keras 3 model; its weights are the meta-initialisation theta.
    loss_fn: ``loss_fn(y_true, y_pred) -> scalar`` for one task.
    num_inner_steps: SGD steps in the inner loop during meta-training.
    inner_lr: inner-loop learning rate (initial value if learnable).
    learn_inner_lr: learn one rate per step and tensor (MAML++ LSLR).
    later_steps_lr: the learning rate of inner steps beyond ``num_inner_steps`` (evaluating or
      exporting with more steps than training, e.g. meta-RL's later adaptation steps); None
      (the default) repeats the last trained step's rate. It never changes training, so a
      resumed run, an evaluation or an export may set it (``--gin_bindings``).
    attenuation: an :class:`Attenuation` (L2F and its ablations) or None (MAML).
    task_reduction: "mean" (MAML sinusoid) or "sum" (the L2F reference for classification) of
      the query losses over the tasks of a meta-batch.
    metric_fn: optional ``metric_fn(y_true, y_pred)`` of one task (e.g. accuracy), logged after
      each inner step at summary steps.
    inner_loss_scale: static factor of the support loss in the inner loop's gradients (undone
      on the gradients); None: ``precision.FLOAT16_INNER_LOSS_SCALE`` when the model computes
      in float16 (mixed_float16, where small gradients underflow), else 1.
    vectorize_tasks: adapt the tasks of a meta-batch with ``tf.vectorized_map`` (one task's
      graph, batched over tasks) in :meth:`meta_loss` and :meth:`per_task_meta_gradients`;
      False unrolls them in a Python loop (a graph per task); the values and gradients are the
      same. None (the default): vectorized unless the model has a convolution, whose
      second-order gradient TensorFlow cannot vectorize (``Conv2DBackpropFilter`` falls back to
      a while_loop per task). docs/scaling.md has the measured costs of both.
    seed: seeds Keras' global random state before the attenuator's weights are drawn. None
      (the default) draws them from that state as it is: the same every time when the model
      comes from ``Domain.build_model(seed)`` just before (which seeds it), as in
      ``build_learner``; pass a seed when the model was built some other way.
  """

  family = "MAML"

  def __init__(self, model: keras.Model, loss_fn: Callable, num_inner_steps: int = 1,
               inner_lr: float = 0.01, learn_inner_lr: bool = False,
               later_steps_lr: Optional[float] = None,
               attenuation: Optional[Attenuation] = None, task_reduction: str = "mean",
               metric_fn: Optional[Callable] = None, inner_loss_scale: Optional[float] = None,
               vectorize_tasks: Optional[bool] = None, seed: Optional[int] = None):
    if task_reduction not in TASK_REDUCTIONS:
      raise ValueError(f"MetaLearner.task_reduction must be one of {TASK_REDUCTIONS}, "
                       f"got {task_reduction!r}.")
    if num_inner_steps < 0:
      raise ValueError(f"MetaLearner.num_inner_steps must be >= 0, got {num_inner_steps}.")
    if later_steps_lr is not None and not later_steps_lr > 0:
      raise ValueError(f"MetaLearner.later_steps_lr must be > 0 or None, got {later_steps_lr}.")
    self.model = model
    self.loss_fn = loss_fn
    self.metric_fn = metric_fn
    self.num_inner_steps = num_inner_steps
    self.task_reduction = task_reduction
    self.vectorize_tasks = (not has_convolutions(model) if vectorize_tasks is None
                            else vectorize_tasks)
    self.inner_variables = default_inner_loop_variables(model)
    warn_about_inexact_layers(model)
    if not self.inner_variables:
      raise ValueError(f"Model {model.name!r} has no inner-loop variables: build it first "
                       "(start it with keras.Input or call it once on a batch).")
    self.dtype = tf.as_dtype(self.inner_variables[0].dtype)
    self.inner_loss_scale = float(precision.default_inner_loss_scale(model)
                                  if inner_loss_scale is None else inner_loss_scale)
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    self._inner_positions = [position[id(v)] for v in self.inner_variables]
    shapes = [tuple(v.shape) for v in self.inner_variables]
    self.attenuation = attenuation
    self._feature_model = None
    if attenuation is not None:
      if seed is not None:
        keras.utils.set_random_seed(seed)
      embedding_dim = None
      if attenuation.needs_support_features:
        # The features feeding the head (last layer): conv4's flattened maps, ResNet12's pool.
        self._feature_model = keras.Model(model.inputs, model.layers[-1].input)
        embedding_dim = int(self._feature_model.output_shape[-1])
      attenuation.build_for(shapes, embedding_dim=embedding_dim)
    self.inner_lrs = inner_loop_lib.InnerLearningRates(len(shapes), max(num_inner_steps, 1),
                                                       inner_lr, learn_inner_lr, later_steps_lr)

  def theta(self) -> List[tf.Tensor]:
    """Current values of the inner-loop variables (the meta-initialisation)."""
    return [v.value for v in self.inner_variables]

  # --- functional forward pass -----------------------------------------------------------------
  # ``self.dtype`` (set in __init__) is the dtype of theta, the fast weights, the outputs of the
  # methods below and so of every loss and metric: the variables' dtype, float32 also under a
  # mixed precision whose layers compute in bfloat16 or float16 (``model.dtype`` would not do:
  # a functional model's own policy need not be its layers').
  def _trainable_values(self, params, others=None) -> List[tf.Tensor]:
    """The model's trainable values: ``params`` at the inner-loop positions, the rest from
    ``others`` (in order) or the variables as they are."""
    inner = dict(zip(self._inner_positions, params))
    rest = iter(others) if others is not None else None
    return [inner[j] if j in inner else (next(rest) if rest is not None else v.value)
            for j, v in enumerate(self.model.trainable_variables)]

  def forward(self, params: Sequence[tf.Tensor], x: tf.Tensor, training: bool = True,
              others: Optional[Sequence[tf.Tensor]] = None,
              support_x: Optional[tf.Tensor] = None):
    """The model's output at inner-loop parameters ``params`` (the outer-only weights
    ``others`` given as tensors, or as they are), in ``self.dtype``.

    ``support_x``: the task's support set, when ``x`` are its queries. A network whose batch
    norm takes its statistics from the support set (:attr:`uses_support_statistics`) runs on
    the support set followed by ``x`` and returns the rows of ``x``; others ignore it."""
    if support_x is None or not self.uses_support_statistics:
      return self._call_model(params, x, training, others)
    count = support_x.shape[0]
    count = tf.shape(support_x)[0] if count is None else count
    with support_set.support_rows(count):
      outputs = self._call_model(params, tf.concat([support_x, x], axis=0), training, others)
    return outputs[count:]

  def _call_model(self, params, x, training, others):
    non_trainable = [v.value for v in self.model.non_trainable_variables]
    outputs, _ = self.model.stateless_call(self._trainable_values(params, others),
                                           non_trainable, x, training=training)
    return tf.cast(outputs, self.dtype)

  def features(self, params: Sequence[tf.Tensor], x: tf.Tensor, training: bool = True):
    """The input of the model's last layer at inner-loop parameters ``params``."""
    if self._feature_model is None:
      raise ValueError("This learner has no feature model (only the prototype embedding uses "
                       "one).")
    values = dict(zip(map(id, self.model.trainable_variables), self._trainable_values(params)))
    trainable = [values[id(v)] for v in self._feature_model.trainable_variables]
    non_trainable = [v.value for v in self._feature_model.non_trainable_variables]
    outputs, _ = self._feature_model.stateless_call(trainable, non_trainable, x,
                                                    training=training)
    return tf.cast(outputs, self.dtype)

  def outer_only_values(self) -> List[tf.Tensor]:
    """Values of the trainable variables that the inner loop does not adapt (e.g. BN)."""
    inner = set(self._inner_positions)
    return [v.value for j, v in enumerate(self.model.trainable_variables) if j not in inner]

  # --- adaptation ------------------------------------------------------------------------------
  def task_embedding(self, support_x, support_y, theta=None) -> Optional[tf.Tensor]:
    """The attenuation's task embedding (a constant), or None if it uses none.

    L2F: the mean of each tensor's support-loss gradient at theta; Table 5: the mean class
    prototype. Meta-RL computes it on trajectories of theta and then samples the inner loop's
    data with theta_bar (see `l2f_tf.rl.maml_trpo`).
    """
    theta = self.theta() if theta is None else list(theta)
    if self.attenuation is None:
      return None
    if self.attenuation.needs_support_features:
      return prototype_mean_embedding(self.features(theta, support_x), support_y,
                                      int(self.model.output_shape[-1]))
    if self.attenuation.needs_support_gradients:
      # L2F's task embedding: gradients at theta with no second-order graph.
      _, support_gradients = inner_loop_lib.gradients(
          lambda p: self.loss_at(p, support_x, support_y), [tf.stop_gradient(t) for t in theta],
          self.inner_loss_scale)
      return gradient_mean_embedding(support_gradients)
    return None

  def attenuate(self, support_x, support_y, theta=None, embedding=None):
    """theta_bar and gamma for one task (theta and None without attenuation)."""
    theta = self.theta() if theta is None else list(theta)
    if self.attenuation is None:
      return theta, None
    if embedding is None:
      embedding = self.task_embedding(support_x, support_y, theta)
    return self.attenuation.attenuate(theta, embedding=embedding)

  def adapt(self, support_x, support_y, num_steps: Optional[int] = None,
            first_order: bool = False, theta=None, embedding=None,
            recompute: bool = False) -> Adaptation:
    """Adapts to one task (support_x: [K, ...]) and returns every iterate.

    Args:
      support_x, support_y: the task's support set.
      num_steps: inner steps; defaults to the training setting.
      first_order: drop second-order terms.
      theta: the initialisation to adapt from; defaults to the current variables.
      embedding: a fixed L2F task embedding (tests hold it constant for finite differences).
      recompute: second order, make each step one op that recomputes itself in the backward
        pass (same values and gradients, far less memory; ``l2f_tf.meta.sequential``); first
        order has nothing to recompute and ignores it.
    """
    num_steps = self.num_inner_steps if num_steps is None else num_steps
    theta_bar, gamma = self.attenuate(support_x, support_y, theta, embedding)
    if recompute and not first_order:
      iterates = inner_loop_lib.inner_loop(
          lambda p, others: self.loss_fn(support_y, self.forward(p, support_x, others=others)),
          theta_bar, num_steps, self.inner_lrs, recompute_inputs=self.outer_only_values(),
          loss_scale=self.inner_loss_scale)
    else:
      iterates = inner_loop_lib.inner_loop(
          lambda p: self.loss_at(p, support_x, support_y), theta_bar, num_steps,
          self.inner_lrs, first_order=first_order, loss_scale=self.inner_loss_scale)
    return Adaptation(iterates, gamma)

  # --- meta-objective --------------------------------------------------------------------------
  def task_query_loss(self, support_x, support_y, query_x, query_y, first_order=False,
                      with_metrics=False, recompute=False):
    """Query loss after adaptation for one task, plus optional per-step losses and gamma."""
    adaptation = self.adapt(support_x, support_y, first_order=first_order, recompute=recompute)
    loss = self.loss_at(adaptation.fast_weights, query_x, query_y, support_x)
    metrics = {}
    if with_metrics:
      metrics = self.step_metrics(adaptation.iterates, adaptation.gamma, query_x, query_y,
                                  support_x)
    return loss, metrics

  def step_metrics(self, iterates, gamma, query_x, query_y, support_x=None):
    """Diagnostics of one task: query loss (and ``metric_fn``) after each inner step, gamma."""
    outputs = [tf.stop_gradient(self.forward(p, query_x, support_x=support_x))
               for p in iterates]
    metrics = {"query_loss_per_step": tf.stack([self.loss_fn(query_y, o) for o in outputs])}
    if self.metric_fn is not None:
      metrics["query_metric_per_step"] = tf.stack(
          [tf.cast(self.metric_fn(query_y, o), outputs[0].dtype) for o in outputs])
    if gamma is not None:
      metrics["gamma"] = tf.stop_gradient(gamma)
    return metrics

  def meta_loss(self, episodes: EpisodeBatch, first_order: bool = False,
                with_metrics: bool = False):
    """The meta-objective over a batch of tasks (leading task axis of a static size).

    Returns:
      (meta_loss, metrics) where metrics holds, when ``with_metrics``, the query loss after each
      inner step and gamma, both averaged over tasks.
    """
    num_tasks = episodes.support_x.shape[0]
    if num_tasks is None:
      raise ValueError("MetaLearner.meta_loss needs a static number of tasks per batch.")

    def one_task(task):
      return self.task_query_loss(*task, first_order=first_order, with_metrics=with_metrics)

    losses, metrics = self.map_tasks(one_task, episodes)
    meta_loss = tf.reduce_sum(losses) if self.task_reduction == "sum" else tf.reduce_mean(losses)
    metrics = {key: tf.reduce_mean(value, axis=0) for key, value in metrics.items()}
    return meta_loss, metrics

  def map_tasks(self, fn, episodes):
    """``fn(support_x, support_y, query_x, query_y)`` of every task, its outputs stacked on a
    leading task axis: vectorized over the tasks (``vectorize_tasks``) or unrolled."""
    fields = (episodes.support_x, episodes.support_y, episodes.query_x, episodes.query_y)
    if self.vectorize_tasks:
      return tf.vectorized_map(fn, fields)
    outputs = [fn(tuple(f[i] for f in fields)) for i in range(fields[0].shape[0])]
    return tf.nest.map_structure(lambda *values: tf.stack(values), *outputs)

  def per_task_meta_gradients(self, episodes: EpisodeBatch, first_order: bool = False):
    """d L_query(f_theta'_i) / d theta for each task i (for the degree of conflict)."""

    def one_task(task):
      with tf.GradientTape() as tape:
        loss, _ = self.task_query_loss(*task, first_order=first_order)
      return tape.gradient(loss, self.inner_variables)

    stacked = self.map_tasks(one_task, episodes)
    return [[g[i] for g in stacked] for i in range(episodes.support_x.shape[0])]
