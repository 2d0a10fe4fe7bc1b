"""The sinusoid-regression domain: model, loss, task streams and metric for the trainer.

The :class:`~l2f_tf.domains.base.SupervisedDomain` interface: the network, the per-task loss
and evaluation metric, the stream of training meta-batches, the fixed evaluation episodes, the
input signature of the exported model and a figure of a few test tasks.
"""

from typing import Dict

import gin
import keras
import tensorflow as tf

from l2f_tf.data import sinusoid_tasks
from l2f_tf.data.episode import Episode
from l2f_tf.domains.base import SupervisedDomain, check_task_share
from l2f_tf.models.mlp import mlp


def mse(y_true, y_pred):
  """Mean squared error of one task."""
  return tf.reduce_mean(tf.square(y_true - y_pred))


@gin.configurable
class SinusoidRegression(SupervisedDomain):
  """K-shot sinusoid regression (MAML / L2F Table 7).

  Args:
    num_shots: K, support points per task.
    num_query_train: query points per task during meta-training (default K, as in MAML).
    num_query_eval: query points per evaluation task (100 in the paper).
    meta_batch_size: tasks per meta-iteration.
    train_tasks: the training task distribution.
    eval_distributions: name -> task distribution evaluated at the end ("test" is the paper's
      distribution; "out_of_range" is disjoint from it).
    eval_seed: seed of the evaluation tasks, fixed independently of the training seed so that
      every model is evaluated on the same tasks (paired comparisons).
    dtype: float dtype of data and model.
  """

  name = "sinusoid"
  metric_name = "mse"
  eval_vectorized = True  # Evaluation adapts whole chunks of tasks with tf.vectorized_map.
  log_metric_per_step = False  # The metric is the query MSE, already logged as the loss.

  def __init__(self, num_shots: int = 5, num_query_train=None, num_query_eval: int = 100,
               meta_batch_size: int = 25, train_tasks=None, eval_distributions=None,
               eval_seed: int = 20200614, dtype: str = "float32"):
    if num_shots < 1:
      raise ValueError(f"SinusoidRegression.num_shots must be >= 1, got {num_shots}.")
    self.num_shots = num_shots
    self.num_query_train = num_query_train or num_shots
    self.num_query_eval = num_query_eval
    self.meta_batch_size = meta_batch_size
    self.train_tasks = train_tasks or sinusoid_tasks.training_tasks()
    self.eval_distributions: Dict[str, sinusoid_tasks.SinusoidTasks] = eval_distributions or {
        "test": sinusoid_tasks.training_tasks(),
        "out_of_range": sinusoid_tasks.out_of_range_tasks()}
    self.eval_seed = eval_seed
    self.dtype = tf.as_dtype(dtype)

  def make_network(self) -> keras.Model:
    # float32 data: the model follows the global dtype policy (float32 or mixed precision).
    return mlp(dtype=None if self.dtype == tf.float32 else self.dtype.name)

  loss_fn = staticmethod(mse)
  task_metric = staticmethod(mse)  # Per-task evaluation figure: the query MSE (lower is better).

  def train_dataset(self, seed: int, start_step: int = 0, tasks=None) -> tf.data.Dataset:
    """Meta-batch s of the stream is a pure function of (seed, s): resuming is exact. A share
    (``tasks``) is sliced out of the whole meta-batch, which is cheap to draw."""
    first, count = check_task_share(tasks, self.meta_batch_size)
    dataset = sinusoid_tasks.episode_dataset(self.train_tasks, self.meta_batch_size,
                                             self.num_shots, self.num_query_train, seed,
                                             start_step, dtype=self.dtype)
    if tasks is None:
      return dataset
    return dataset.map(lambda episode: Episode(*[f[first:first + count] for f in episode]))

  def eval_episodes(self, distribution: str, num_tasks: int, offset: int = 0):
    """(Episode, task parameters) of ``num_tasks`` fixed evaluation tasks."""
    tasks = self.eval_distributions[distribution]
    index = offset + 1000 * (sorted(self.eval_distributions).index(distribution) + 1)
    return tasks.sample(num_tasks, self.num_shots, self.num_query_eval,
                        sinusoid_tasks.episode_seed(self.eval_seed, index), dtype=self.dtype)

  def eval_batches(self, distribution: str, num_tasks: int,
                   preprocessed: bool = True) -> Episode:
    """The evaluation tasks as one Episode [num_tasks, ...] (small enough to hold)."""
    del preprocessed  # Inputs are not preprocessed.
    return self.eval_episodes(distribution, num_tasks)[0]

  def export_signature(self):
    """TensorSpecs of (support_x, support_y, query_x) for one task."""
    spec = lambda name: tf.TensorSpec([None, 1], self.dtype, name=name)
    return [spec("support_x"), spec("support_y"), spec("query_x")]

  def export_description(self) -> str:
    return ("sinusoid regression: support_x and support_y [K, 1] (any K, trained with "
            f"K={self.num_shots}), query_x [Q, 1]")

  def plot(self, learners, path: str, num_steps: int = 5, evaluations=None,
           num_tasks: int = 4) -> str:
    """PNG of a few test tasks: truth, support points, predictions before/after adaptation
    (it draws predictions, not the metric, so ``evaluations`` is not used)."""
    del evaluations
    from l2f_tf import plots  # Imported here: matplotlib is only needed for figures.
    episodes, params = self.eval_episodes("test", num_tasks)
    return plots.plot_sinusoid_tasks(path, episodes, params, learners, num_steps=num_steps,
                                     num_tasks=num_tasks, x_range=self.train_tasks.x_range)
