"""Measures of a trained learner on fixed tasks (the paper's Fig. 2 and 3): gamma per task
(3(d)), per-task conflict (3(c)), the landscape (2) and the manual attenuation sweep (3(b)).

Every function takes a MetaLearner and fixed tasks (one batch with a leading task axis, or an
iterable of them, as a domain's ``eval_batches`` gives them) and returns one row per task.
"""

import contextlib
from typing import Dict, Iterable, List, Sequence

import numpy as np
import tensorflow as tf

from l2f_tf.meta import diagnostics, predictions
from l2f_tf.stats import mean_and_ci95

DEFAULT_SWEEP_GAMMAS = tuple(round(0.1 * i, 1) for i in range(11))


def layer_groups(tensor_paths: Sequence[str]) -> Dict[str, List[int]]:
  """{layer: indices of its inner-loop tensors}, layers in network order (a tensor's layer is
  its variable path without the last part: "block1_conv/kernel" -> "block1_conv")."""
  groups: Dict[str, List[int]] = {}
  for j, path in enumerate(tensor_paths):
    groups.setdefault(path.rsplit("/", 1)[0], []).append(j)
  return groups


def meta_batches(episodes, size: int) -> Iterable:
  """Batches of exactly ``size`` tasks (a short remainder is dropped) from a batch of tasks or an
  iterable of them."""
  pending = None
  for batch in predictions.batches(episodes, size):
    pending = batch if pending is None else type(batch)(
        *(tf.concat([a, b], axis=0) for a, b in zip(pending, batch)))
    while int(pending.support_x.shape[0]) >= size:
      yield type(pending)(*(f[:size] for f in pending))
      pending = type(pending)(*(f[size:] for f in pending))


@contextlib.contextmanager
def scaled_inner_variables(learner, scales: Dict[int, float]):
  """Within the block, inner-loop tensor j of ``learner`` holds its value times ``scales[j]``;
  every inner-loop variable gets its value back on exit, also on an error."""
  originals = [tf.constant(v.numpy()) for v in learner.inner_variables]
  try:
    for j, scale in scales.items():
      learner.inner_variables[j].assign(originals[j] * tf.cast(scale, originals[j].dtype))
    yield
  finally:
    for variable, value in zip(learner.inner_variables, originals):
      variable.assign(value)


def _rows(fn, batches, missing: str = "No tasks were given.") -> np.ndarray:
  rows = [fn(batch).numpy() for batch in batches]
  if not rows:
    raise ValueError(missing)
  return np.concatenate(rows).astype(np.float64)


def gammas(learner, episodes, chunk_size: int = 50) -> np.ndarray:
  """[num_tasks, num_tensors] gamma of each task (L2F's attenuation of each inner-loop
  tensor); ValueError for a learner without attenuation (MAML)."""
  if learner.attenuation is None:
    raise ValueError("This learner has no attenuation (MAML): it has no gamma.")
  num_tensors = len(learner.inner_variables)

  @tf.function
  def fn(batch):
    return tf.map_fn(lambda task: tf.reshape(learner.attenuate(task[0], task[1])[1],
                                             [num_tensors]),
                     (batch.support_x, batch.support_y), parallel_iterations=1,
                     fn_output_signature=tf.TensorSpec([num_tensors], tf.float32))

  return _rows(fn, predictions.batches(episodes, chunk_size))


def per_task_conflicts(learner, episodes, meta_batch_size: int,
                       first_order: bool = False) -> np.ndarray:
  """[num_tasks, num_tensors] angle (degrees) between each task's meta-gradient and the sum of
  its meta-batch's (consecutive groups of ``meta_batch_size`` tasks), per inner-loop tensor.
  Their mean over a meta-batch is the degree of conflict logged in training."""
  if meta_batch_size < 2:
    raise ValueError(f"Conflict needs meta-batches of at least 2 tasks, got {meta_batch_size}.")

  @tf.function
  def fn(batch):
    return diagnostics.per_task_conflict(learner.per_task_meta_gradients(batch, first_order))

  return _rows(fn, meta_batches(episodes, meta_batch_size),
               f"Fewer tasks than one meta-batch of {meta_batch_size} were given.")


def landscapes(learner, episodes, multipliers: Sequence[float] =
               diagnostics.DEFAULT_STEP_MULTIPLIERS, chunk_size: int = 50,
               attenuate: bool = True) -> np.ndarray:
  """[num_tasks, len(LANDSCAPE_MEASURES)] landscape of the inner loop on each task, averaged
  over its inner steps (``l2f_tf.meta.diagnostics.task_landscape``); ``attenuate=False``: an L2F
  learner's loop from theta, without its attenuation."""
  fn = tf.function(lambda batch: diagnostics.batch_landscape(learner, batch, multipliers,
                                                             attenuate))
  return _rows(fn, predictions.batches(episodes, chunk_size))


def attenuation_sweep(learner, episodes, task_metric, num_steps: int,
                      gammas_to_try: Sequence[float] = DEFAULT_SWEEP_GAMMAS,
                      vectorized: bool = True, chunk_size: int = 100) -> Dict:
  """The metric after ``num_steps`` inner steps on the same tasks when one layer's
  initialisation is scaled by a manual gamma, for every layer and gamma. The variables are
  scaled in place (`scaled_inner_variables`), so the run's own evaluation code runs: gamma = 1
  reproduces its figures bit for bit.

  Returns {"layers", "gammas", "values": [layers, gammas, num_tasks] metric per task,
  "reference": [num_tasks] unscaled, "mean": [layers, gammas], "paired_difference":
  [layers][gammas] {mean, ci95, n} of scaled - reference}."""
  if isinstance(episodes, tf.data.Dataset) or not predictions.is_task_batch(episodes):
    # An iterable of batches: keep them, every setting evaluates the same tasks.
    episodes = list(episodes)
  groups = layer_groups(learner.inner_variable_names)
  prediction_fn = predictions.make_prediction_fn(learner, num_steps, vectorized)

  def metric_now() -> np.ndarray:
    outputs, labels = predictions.predictions(learner, episodes, num_steps, vectorized,
                                              chunk_size, prediction_fn=prediction_fn)
    return predictions.metric_values(outputs, labels, task_metric)[:, num_steps]

  reference = metric_now()
  values = np.zeros([len(groups), len(gammas_to_try), len(reference)])
  for row, indices in enumerate(groups.values()):
    for column, gamma in enumerate(gammas_to_try):
      with scaled_inner_variables(learner, {j: gamma for j in indices}):
        values[row, column] = metric_now()
  return {"layers": list(groups), "gammas": [float(g) for g in gammas_to_try],
          "values": values, "reference": reference, "mean": values.mean(axis=2),
          "paired_difference": [[mean_and_ci95(values[r, c] - reference)
                                 for c in range(len(gammas_to_try))]
                                for r in range(len(groups))]}
