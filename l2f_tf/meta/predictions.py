"""A meta-learner's predictions on fixed tasks after 0, 1, ..., S inner steps.

Every task is adapted on its own (first order: nothing is differentiated through it here) and
its query predictions after each number of steps are kept, so that the few-shot protocol can
ensemble checkpoints by averaging their logits; per-task metrics come from the predictions.

Tasks arrive as one batch with a leading task axis (a NamedTuple with the fields
``support_x, support_y, query_x, query_y``) or an iterable of them (e.g. a tf.data stream of
image episodes). Within a batch, tasks run through ``tf.vectorized_map`` (small tasks: fast)
or one after the other with ``tf.map_fn`` (images: bounded memory).
"""

from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from l2f_tf.progress import Progress


def make_prediction_fn(learner, max_steps: int, vectorized: bool = True,
                       queries_alone: bool = False):
  """A compiled fn: tasks [T, ...] -> query predictions after 0..max_steps steps [T, S+1, Q, ...],
  cached on the learner (tracing is slow). ``queries_alone``: each query is predicted in a call
  of its own (what a transductive batch norm gives a query that arrives alone)."""
  cache = learner.__dict__.setdefault("_prediction_fns", {})
  key = (max_steps, vectorized, queries_alone)
  if key in cache:
    return cache[key]

  def predict_queries(params, support_x, query_x):
    if not queries_alone:
      return learner.forward(params, query_x, support_x=support_x)
    return tf.map_fn(lambda q: learner.forward(params, q[None], support_x=support_x)[0],
                     query_x, fn_output_signature=learner.dtype)

  def one_task(task):
    support_x, support_y, query_x, _ = task
    adaptation = learner.adapt(support_x, support_y, num_steps=max_steps, first_order=True)
    return tf.stack([predict_queries(params, support_x, query_x)
                     for params in adaptation.iterates])

  def predict(episodes):
    if vectorized:
      return tf.vectorized_map(one_task, tuple(episodes))
    return tf.map_fn(one_task, tuple(episodes), parallel_iterations=1,
                     fn_output_signature=learner.dtype)

  cache[key] = tf.function(predict)
  return cache[key]


def is_task_batch(episodes) -> bool:
  """Whether ``episodes`` is one batch of tasks (rather than an iterable of batches)."""
  return hasattr(episodes, "support_x") and hasattr(episodes, "query_y")


def batches(episodes, chunk_size: int):
  """Batches of at most ``chunk_size`` tasks from one batch or an iterable of batches."""
  for batch in ([episodes] if is_task_batch(episodes) else episodes):
    num_tasks = int(batch.support_x.shape[0])
    if num_tasks <= chunk_size:
      yield batch
      continue
    for start in range(0, num_tasks, chunk_size):
      yield type(batch)(*(field[start:start + chunk_size] for field in batch))


def predictions(learner, episodes, max_steps: int, vectorized: bool = True,
                chunk_size: int = 100, prediction_fn=None, num_tasks: Optional[int] = None,
                label: str = "evaluation task", unit: Optional[str] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
  """(predictions [n, S+1, Q, ...], query labels [n, Q, ...]) over all tasks; with
  ``num_tasks`` (the expected total), progress lines (tasks/s, ETA)."""
  prediction_fn = prediction_fn or make_prediction_fn(learner, max_steps, vectorized)
  progress = Progress(num_tasks, label=label, unit=unit) if num_tasks else None
  outputs: List[np.ndarray] = []
  labels: List[np.ndarray] = []
  for batch in batches(episodes, chunk_size):
    outputs.append(prediction_fn(batch).numpy())
    labels.append(np.asarray(batch.query_y))
    if progress is not None:
      progress.update(sum(len(o) for o in outputs))
  if not outputs:
    raise ValueError("No evaluation tasks were given.")
  return np.concatenate(outputs), np.concatenate(labels)


_METRIC_FNS: Dict = {}


def metric_values(outputs: np.ndarray, labels: np.ndarray, task_metric) -> np.ndarray:
  """[n, S+1] metric of each task after each number of steps, from its predictions."""
  if task_metric not in _METRIC_FNS:
    _METRIC_FNS[task_metric] = tf.function(
        lambda y, p: tf.vectorized_map(lambda t: task_metric(*t), (y, p)),
        reduce_retracing=True)
  metric = _METRIC_FNS[task_metric]
  columns = [metric(labels, outputs[:, k]).numpy() for k in range(outputs.shape[1])]
  return np.stack(columns, axis=1).astype(np.float64)


def per_task_metrics(learner, episodes, task_metric, max_steps: int, chunk_size: int = 100,
                     vectorized: bool = True, queries_alone: bool = False) -> np.ndarray:
  """[num_tasks, max_steps + 1] metric values (column k: after k inner steps); see
  :func:`make_prediction_fn` for ``queries_alone``."""
  prediction_fn = make_prediction_fn(learner, max_steps, vectorized, queries_alone)
  outputs, labels = predictions(learner, episodes, max_steps, vectorized, chunk_size,
                                prediction_fn=prediction_fn)
  return metric_values(outputs, labels, task_metric)
