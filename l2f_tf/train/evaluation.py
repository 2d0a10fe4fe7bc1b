"""The supervised evaluation protocol: the figures of results.json from the predictions of
`l2f_tf.meta.predictions`. Per k inner steps: the mean metric with its 95% CI over tasks (and
for classification the reference code's sqrt(p (1 - p)) spread). :func:`evaluate_checkpoints`
is the few-shot protocol: the best validated checkpoint alone, and the top k ensembled.
"""

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from l2f_tf.meta import predictions
from l2f_tf.train import event_files
from l2f_tf.stats import mean_and_ci95


def figures(outputs: np.ndarray, labels: np.ndarray, domain, steps: Sequence[int]) -> Dict:
  """The results.json figures of predictions [n, S+1, Q, ...]: {f"{metric}_after_{k}_steps":
  {mean, ci95, n}} for k in ``steps`` and 0, and for accuracy the reference code's "+-",
  sqrt(p (1 - p)) with p the accuracy over all query predictions (the spread of one
  prediction's correctness, not an error bar of the mean)."""
  values = predictions.metric_values(outputs, labels, domain.task_metric)
  results = {}
  for k in sorted(set([0, *steps])):
    results[f"{domain.metric_name}_after_{k}_steps"] = figure = mean_and_ci95(values[:, k])
    if domain.metric_name == "accuracy":
      p = float(np.mean(np.argmax(outputs[:, k], axis=-1) == labels))
      figure["sqrt_p_1_minus_p"] = float(np.sqrt(p * (1.0 - p)))
  return results


def domain_predictions(learner, domain, distribution: str, num_tasks: int, max_steps: int,
                       label: str = "", unit: str = "task") -> Tuple[np.ndarray, np.ndarray]:
  """(predictions, labels) of the learner on ``num_tasks`` fixed tasks of ``distribution``."""
  return predictions.predictions(
      learner, domain.eval_batches(distribution, num_tasks), max_steps,
      vectorized=domain.eval_vectorized, num_tasks=num_tasks,
      label=label or f"{distribution} task", unit=unit)


def evaluate(learner, domain, distribution: str, num_tasks: int,
             steps: Sequence[int] = (1, 2, 5)) -> Dict:
  """Evaluates on ``num_tasks`` fixed tasks of ``distribution``; see :func:`figures`."""
  outputs, labels = domain_predictions(learner, domain, distribution, num_tasks, max(steps))
  return figures(outputs, labels, domain, steps)


def evaluate_checkpoints(learner, domain, distribution: str, num_tasks: int,
                         steps: Sequence[int], entries: List[Dict],
                         restore: Callable[[str], None]) -> Tuple[Dict, Dict]:
  """Few-shot protocol: (figures of the best checkpoint, figures of the ensemble).

  Restores each checkpoint of ``entries`` (best first; restored worst first, so that the best
  stays loaded), collects its test predictions after 0..max(steps) steps, and averages the
  logits over checkpoints for the ensemble.
  """
  total, single, labels = None, None, None
  for entry in reversed(entries):
    restore(entry["path"])
    outputs, labels = domain_predictions(
        learner, domain, distribution, num_tasks, max(steps),
        label=f"{distribution} episode (checkpoint {entry['step']})", unit="episode")
    total = outputs if total is None else total + outputs
    single = outputs
  return (figures(single, labels, domain, steps),
          figures(total / len(entries), labels, domain, steps))


def write_eval_summaries(summary_dir: str, step: int,
                         evaluations: Dict[str, Dict[str, Dict]]) -> None:
  """TensorBoard scalars ``<distribution>/<figure>`` (the means) of a run's final evaluation, in
  a file of their own that replaces the points of an earlier evaluation of the same step."""
  event_files.drop_evaluations_from(summary_dir, step)
  writer = tf.summary.create_file_writer(summary_dir,
                                         filename_suffix=event_files.EVALUATION_SUFFIX)
  with writer.as_default():
    for distribution, results in evaluations.items():
      for name, value in results.items():
        tf.summary.scalar(f"{distribution}/{name}", value["mean"], step=step)
  writer.flush()
