"""Evaluation of a meta-learner on fixed tasks: metric after each number of inner steps.

Tasks are processed in chunks with ``tf.vectorized_map`` (each task adapted independently, the
same code as training), and the per-task metric after 0..max(steps) inner steps is reduced to a
mean with a 95% confidence interval over tasks.
"""

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.train.stats import mean_and_ci95


def make_metric_fn(learner, task_metric, max_steps: int):
  """A compiled fn: Episode [T, ...] -> per-task metric after 0..max_steps steps, [T, S+1]."""

  def one_task(task):
    support_x, support_y, query_x, query_y = task
    adaptation = learner.adapt(support_x, support_y, num_steps=max_steps)
    return tf.stack([task_metric(query_y, learner.forward(params, query_x))
                     for params in adaptation.iterates])

  return tf.function(lambda episodes: tf.vectorized_map(one_task, tuple(episodes)))


def per_task_metrics(learner, episodes: Episode, task_metric, max_steps: int,
                     chunk_size: int = 100) -> np.ndarray:
  """[num_tasks, max_steps + 1] metric values (column k: after k inner steps)."""
  metric_fn = make_metric_fn(learner, task_metric, max_steps)
  num_tasks = episodes.support_x.shape[0]
  values = []
  for start in range(0, num_tasks, chunk_size):
    chunk = Episode(*(field[start:start + chunk_size] for field in episodes))
    values.append(metric_fn(chunk).numpy())
  return np.concatenate(values, axis=0)


def summarize(values: np.ndarray, steps: Sequence[int], metric_name: str) -> Dict:
  """{f"{metric}_after_{k}_steps": {mean, ci95, n}} for every k in ``steps`` (and 0)."""
  steps = sorted(set([0, *steps]))
  return {f"{metric_name}_after_{k}_steps": mean_and_ci95(values[:, k]) for k in steps}


def evaluate(learner, domain, distribution: str, num_tasks: int,
             steps: Sequence[int] = (1, 2, 5)) -> Dict:
  """Evaluates on ``num_tasks`` fixed tasks of ``distribution``; see :func:`summarize`."""
  episodes, _ = domain.eval_episodes(distribution, num_tasks)
  values = per_task_metrics(learner, episodes, domain.task_metric, max(steps))
  return summarize(values, steps, domain.metric_name)
