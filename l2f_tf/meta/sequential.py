"""Memory-lean meta-gradients: tasks one at a time, inner steps recomputed in the backward pass.

The plain way to get the meta-gradient is one tape around ``MetaLearner.meta_loss``: every task
of the meta-batch and every inner step keeps its activations (and, second order, the graph of
its support gradient) until the outer gradient is taken. :func:`meta_gradients` computes the
same loss and gradients (to float round-off) in a fraction of that memory:

1. Tasks run one after another in a ``tf.while_loop`` (``parallel_iterations=1``), each with
   its own tape; their gradients are accumulated. One task's activations are alive at a time.
2. Second order, each inner SGD step is recomputed in the backward pass
   (``MetaLearner.adapt(recompute=True)``, i.e. ``inner_loop.recomputed_sgd_step``): it keeps
   only its inputs, the small parameter tensors.

The L2F attenuation (gamma from the MLP of the support-gradient embedding) stays an ordinary op
on the task's tape, so the attenuator gets its gradient as before; learnable inner learning
rates and the outer-loop-only batch-norm scale/offset are inputs of the recomputed step and
get exact gradients too. First order has nothing to recompute and uses the plain inner loop.

Its memory and time against the plain path: docs/few_shot_classification.md.
"""

from typing import Dict, List, Optional

import tensorflow as tf

from l2f_tf.meta import diagnostics

_ZERO = tf.UnconnectedGradients.ZERO


def meta_gradients(learner, episodes, first_order: bool = False, with_metrics: bool = False,
                   loss_scale: Optional[tf.Tensor] = None):
  """(meta-loss, gradients w.r.t. ``learner.meta_variables``, metrics), tasks in sequence.

  The same figures as a tape around ``learner.meta_loss``; with ``with_metrics`` the metrics
  also hold the degree of conflict per inner-loop tensor (from the per-task gradients, which
  this loop has anyway). Call inside a ``tf.function``.

  ``loss_scale`` (mixed_float16's dynamic loss scale, see ``l2f_tf.precision``): the gradients
  are those of the meta-loss times this factor (left for the optimizer to unscale); the
  returned meta-loss is not scaled.
  """
  variables = learner.meta_variables
  num_tasks = episodes.support_x.shape[0]
  if num_tasks is None:
    raise ValueError("meta_gradients needs a static number of tasks per batch.")
  scale = 1.0 if learner.task_reduction == "sum" else 1.0 / num_tasks
  inner_ids = {id(v) for v in learner.inner_variables}
  inner_positions = [i for i, v in enumerate(variables) if id(v) in inner_ids]
  metric_shapes: Dict[str, List[int]] = {}
  if with_metrics:
    metric_shapes["query_loss_per_step"] = [learner.num_inner_steps + 1]
    if learner.metric_fn is not None:
      metric_shapes["query_metric_per_step"] = [learner.num_inner_steps + 1]
    if learner.attenuation is not None:
      metric_shapes["gamma"] = [len(learner.inner_variables)]

  def body(i, total, grads, metrics, task_grads_ta):
    task = [field[i] for field in episodes]
    with tf.GradientTape() as tape:
      loss, task_metrics = learner.task_query_loss(*task, first_order=first_order,
                                                   with_metrics=with_metrics, recompute=True)
      loss = loss * scale
      scaled = loss if loss_scale is None else loss * tf.cast(loss_scale, loss.dtype)
    task_grads = tape.gradient(scaled, variables, unconnected_gradients=_ZERO)
    metrics = {k: metrics[k] + tf.cast(tf.reshape(task_metrics[k], metric_shapes[k]),
                                       tf.float32) for k in metrics}
    if with_metrics:
      task_grads_ta = [ta.write(i, task_grads[j]) for ta, j in zip(task_grads_ta,
                                                                   inner_positions)]
    return (i + 1, total + loss, [a + b for a, b in zip(grads, task_grads)], metrics,
            task_grads_ta)

  task_grads_ta = [tf.TensorArray(variables[j].dtype, size=num_tasks if with_metrics else 0,
                                  element_shape=variables[j].shape)
                   for j in inner_positions] if with_metrics else []
  init = (tf.constant(0), tf.constant(0.0, learner.dtype),
          [tf.zeros_like(v) for v in variables],
          {k: tf.zeros(s, tf.float32) for k, s in metric_shapes.items()}, task_grads_ta)
  _, total, grads, metrics, task_grads_ta = tf.while_loop(
      lambda i, *_: i < num_tasks, body, init, parallel_iterations=1)
  metrics = {k: v / num_tasks for k, v in metrics.items()}
  if with_metrics:
    stacked = [ta.stack() for ta in task_grads_ta]  # per tensor: [T, ...]
    metrics["degree_of_conflict"] = diagnostics.degree_of_conflict(
        [[g[t] for g in stacked] for t in range(num_tasks)])
  return total, grads, metrics
