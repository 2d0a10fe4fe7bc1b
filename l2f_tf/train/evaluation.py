"""Evaluation of a meta-learner on fixed tasks: metric after each number of inner steps.

Every task is adapted independently (the same code as training) and its query predictions after
0..max(steps) inner steps are kept; the per-task metric is computed from those predictions, and
reduced to a mean with a 95% confidence interval over tasks. Keeping predictions (not only the
metric) lets the few-shot protocol ensemble several checkpoints by averaging their logits.

Tasks arrive in batches (an :class:`Episode` with a leading task axis, or an iterable of them,
e.g. a tf.data stream of image episodes that does not fit in memory). Within a batch, tasks run
through ``tf.vectorized_map`` when the domain allows it (sinusoid: fast) or one after the other
with ``tf.map_fn`` (images: bounded memory).
"""

from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.train.progress import Progress
from l2f_tf.stats import mean_and_ci95


def make_prediction_fn(learner, max_steps: int, vectorized: bool = True):
  """A compiled fn: Episode [T, ...] -> query predictions after 0..max_steps steps [T, S+1, Q, ...].

  Adaptation runs first order: nothing is differentiated through it here, so the second-order
  graph would only cost memory. The function is cached on the learner (tracing is slow).
  """
  cache = learner.__dict__.setdefault("_prediction_fns", {})
  if (max_steps, vectorized) not in cache:
    cache[(max_steps, vectorized)] = _make_prediction_fn(learner, max_steps, vectorized)
  return cache[(max_steps, vectorized)]


def _make_prediction_fn(learner, max_steps: int, vectorized: bool):

  def one_task(task):
    support_x, support_y, query_x, _ = task
    adaptation = learner.adapt(support_x, support_y, num_steps=max_steps, first_order=True)
    return tf.stack([learner.forward(params, query_x) for params in adaptation.iterates])

  def predict(episodes):
    if vectorized:
      return tf.vectorized_map(one_task, tuple(episodes))
    return tf.map_fn(one_task, tuple(episodes), parallel_iterations=1,
                     fn_output_signature=tf.as_dtype(learner.model.dtype))

  return tf.function(predict)


def _batches(episodes: Union[Episode, Iterable[Episode]], chunk_size: int):
  if isinstance(episodes, Episode):
    num_tasks = episodes.support_x.shape[0]
    for start in range(0, num_tasks, chunk_size):
      yield Episode(*(field[start:start + chunk_size] for field in episodes))
  else:
    yield from episodes


def predictions(learner, episodes: Union[Episode, Iterable[Episode]], max_steps: int,
                vectorized: bool = True, chunk_size: int = 100, prediction_fn=None,
                num_tasks: Optional[int] = None,
                label: str = "evaluation task") -> Tuple[np.ndarray, np.ndarray]:
  """(predictions [n, S+1, Q, ...], query labels [n, Q, ...]) over all tasks.

  With ``num_tasks`` (the expected total), long evaluations log progress lines (tasks/s, ETA).
  """
  prediction_fn = prediction_fn or make_prediction_fn(learner, max_steps, vectorized)
  progress = Progress(num_tasks, label=label) if num_tasks else None
  outputs: List[np.ndarray] = []
  labels: List[np.ndarray] = []
  for batch in _batches(episodes, chunk_size):
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
                     vectorized: bool = True) -> np.ndarray:
  """[num_tasks, max_steps + 1] metric values (column k: after k inner steps)."""
  outputs, labels = predictions(learner, episodes, max_steps, vectorized, chunk_size)
  return metric_values(outputs, labels, task_metric)


def summarize(values: np.ndarray, steps: Sequence[int], metric_name: str) -> Dict:
  """{f"{metric}_after_{k}_steps": {mean, ci95, n}} for every k in ``steps`` (and 0)."""
  steps = sorted(set([0, *steps]))
  return {f"{metric_name}_after_{k}_steps": mean_and_ci95(values[:, k]) for k in steps}


def prediction_std(outputs: np.ndarray, labels: np.ndarray) -> float:
  """The reference code's "+-": sqrt(p (1 - p)) with p the accuracy over all query predictions.

  This is the spread of a single prediction's correctness, not an error bar of the mean.
  """
  p = float(np.mean(np.argmax(outputs, axis=-1) == labels))
  return float(np.sqrt(p * (1.0 - p)))


def evaluate(learner, domain, distribution: str, num_tasks: int,
             steps: Sequence[int] = (1, 2, 5)) -> Dict:
  """Evaluates on ``num_tasks`` fixed tasks of ``distribution``; see :func:`summarize`.

  For classification domains the dict also has, per k, the reference's sqrt(p(1-p)) figure.
  """
  outputs, labels = predictions(learner, domain.eval_batches(distribution, num_tasks),
                                max(steps), vectorized=getattr(domain, "eval_vectorized", True),
                                num_tasks=num_tasks, label=f"{distribution} task")
  results = summarize(metric_values(outputs, labels, domain.task_metric), steps,
                      domain.metric_name)
  if domain.metric_name == "accuracy":
    for k in sorted(set([0, *steps])):
      results[f"accuracy_after_{k}_steps"]["sqrt_p_1_minus_p"] = prediction_std(
          outputs[:, k], labels)
  return results


def write_eval_summaries(summary_dir: str, step: int,
                         evaluations: Dict[str, Dict[str, Dict]]) -> None:
  """TensorBoard scalars ``<distribution>/<figure>`` (the means) of a run's final evaluation."""
  writer = tf.summary.create_file_writer(summary_dir)
  with writer.as_default():
    for distribution, figures in evaluations.items():
      for name, value in figures.items():
        tf.summary.scalar(f"{distribution}/{name}", value["mean"], step=step)
  writer.flush()
