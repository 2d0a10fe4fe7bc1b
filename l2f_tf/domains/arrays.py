"""Tasks of one's own from numpy arrays held in memory: N-way K-shot classification of labelled
examples (:class:`ArrayClassification`) and few-shot regression on tasks given as sets of
points (:class:`ArrayRegression`).

Both take ``splits = {"train": (x, y), "val": (x, y), "test": (x, y)}`` ("val" is optional:
validation during training) and draw their episodes with the samplers of `l2f_tf.data.arrays`,
so episode ``e`` of a stream is a pure function of ``(seed, e)`` and every model evaluated with
the same ``eval_seed`` sees the same episodes. The arrays are checked when the domain is made:
too few classes, examples or points raise a `DatasetError` naming the split and the fix. The
data's SHA-256 is a setting of the run (``data_sha256``): a trained run folder refuses other
arrays as another experiment, and `l2f_tf.compare` names it when two runs' data differ.

In a gin file, arrays come from a function of one's own module (``import my_task`` at the top
of the file, ``ArrayRegression.splits = @my_task.splits()``; docs/your_own_task.md).
"""

from typing import Callable, Dict, Optional

import gin
import keras
import numpy as np
import tensorflow as tf

from l2f_tf.data import arrays, episodic
from l2f_tf.data.readers import SPLITS, DatasetError
from l2f_tf.domains.base import SupervisedDomain, check_task_share
from l2f_tf.domains.few_shot import EpisodicFewShot
from l2f_tf.domains.sinusoid import mse
from l2f_tf.meta import predictions
from l2f_tf.models.mlp import mlp, mlp_classifier


def _where(owner: str, split: str) -> str:
  return f"split {split!r} of {owner}.splits"


@gin.configurable
class ArrayClassification(EpisodicFewShot):
  """N-way K-shot classification of examples held in memory.

  Args (and those of `l2f_tf.domains.few_shot.EpisodicFewShot`):
    splits: ``{"train": (x, y), "test": (x, y)}``, optionally with ``"val"``: examples ``x
      [n, ...]`` (numbers, any shape per example) and their class labels ``y [n]`` (integers
      or strings). The classes of a split are its distinct labels; splits should hold
      different classes (few-shot learning tests on classes never trained on). Every class
      needs at least num_shots + num_queries examples, every split num_ways classes.
    name: the problem's name in results.
    num_queries: Q, query examples per class.
    network: ``network(num_classes=N, input_shape=<shape of one example>)`` -> a built Keras
      model (default: `l2f_tf.models.mlp.mlp_classifier`, an MLP over flattened examples).

  Episode labels are 0..N-1 in the episode's own class order (the arrays' labels only group
  the examples), as for images.
  """

  def __init__(self, splits=gin.REQUIRED, name: str = "array_classification",
               num_ways: int = 5, num_shots: int = 1, num_queries: int = 5,
               meta_batch_size: int = 4, network: Callable[..., keras.Model] = mlp_classifier,
               eval_seed: int = 20200614, eval_batch_size: int = 50, plot_episodes: int = 100):
    super().__init__(name, num_ways, num_shots, num_queries, meta_batch_size, eval_seed,
                     eval_batch_size, plot_episodes)
    self._splits = arrays.check_splits(splits, "ArrayClassification")
    self.validation_split = "val" if "val" in self._splits else None
    self.network = network
    shapes = {split: self.sampler(split).item_shape for split in self._splits}  # checks them
    if len(set(shapes.values())) > 1:
      raise DatasetError(f"The splits of ArrayClassification.splits hold examples of different "
                         f"shapes ({shapes}): give every split examples of one shape.")
    self.data_sha256 = arrays.fingerprint(
        {split: (self.sampler(split).x, np.asarray(y)) for split, (_, y) in self._splits.items()})

  def _new_sampler(self, split: str) -> arrays.ArrayEpisodeSampler:
    if split not in self._splits:
      raise ValueError(f"ArrayClassification has no split {split!r}; it has "
                       f"{sorted(self._splits)}.")
    x, y = self._splits[split]
    return arrays.ArrayEpisodeSampler(x, y, _where("ArrayClassification", split), self.num_ways,
                                      self.num_shots, self.num_queries)

  def make_network(self) -> keras.Model:
    return self.network(num_classes=self.num_ways, input_shape=tuple(self.input_shape))

  def export_description(self) -> str:
    shape, support = list(self.input_shape), self.num_ways * self.num_shots
    dims = ", ".join(str(d) for d in shape)
    return (f"{self.num_ways}-way {self.num_shots}-shot classification of examples of shape "
            f"{tuple(shape)}: support_x [{support}, {dims}], support_y labels in "
            f"0..{self.num_ways - 1}, query_x [any, {dims}]")


@gin.configurable
class ArrayRegression(SupervisedDomain):
  """Few-shot regression on tasks given as sets of (x, y) points held in memory.

  Args:
    splits: ``{"train": (x, y), "test": (x, y)}``, optionally with ``"val"``: per split,
      inputs ``x [tasks, points, in_dim]`` and targets ``y [tasks, points, out_dim]`` (``[tasks,
      points]`` for one number). A split's tasks all have the same number of points, at least
      num_shots + num_queries (+ 1 for evaluation).
    name: the problem's name in results.
    num_shots: K, support points per episode.
    num_queries: Q, query points per training episode.
    num_queries_eval: query points per validation and test episode; None: all the task's
      points that are not in the support set.
    meta_batch_size: tasks per meta-iteration.
    network: ``network(input_dim=, output_dim=)`` -> a built Keras model (default
      `l2f_tf.models.mlp.mlp`, the sinusoid's 40-40 ReLU MLP).
    eval_seed: seed of the fixed validation and test episodes.
    plot_tasks: test episodes behind the figure's MSE-vs-steps curve when a learner has no
      results to draw.

  Episode ``e`` is one task (each task of the split once, in a seeded order, before any twice)
  with K support and Q query points drawn from its points (`l2f_tf.data.arrays`); the loss and
  the metric are the mean squared error over the query points.
  """

  metric_name = "mse"
  eval_vectorized = True
  log_metric_per_step = False  # The metric is the query MSE, already logged as the loss.
  eval_distributions = ("test",)
  loss_fn = staticmethod(mse)
  task_metric = staticmethod(mse)

  def __init__(self, splits=gin.REQUIRED, name: str = "array_regression", num_shots: int = 5,
               num_queries: int = 10, num_queries_eval: Optional[int] = None,
               meta_batch_size: int = 10, network: Callable[..., keras.Model] = mlp,
               eval_seed: int = 20200614, plot_tasks: int = 100):
    for setting, value in (("num_shots", num_shots), ("num_queries", num_queries),
                           ("meta_batch_size", meta_batch_size),
                           ("num_queries_eval", 1 if num_queries_eval is None else
                            num_queries_eval)):
      if value < 1:
        raise ValueError(f"ArrayRegression.{setting} must be >= 1, got {value}.")
    self.name, self.num_shots, self.num_queries = name, num_shots, num_queries
    self.num_queries_eval, self.meta_batch_size = num_queries_eval, meta_batch_size
    self.network, self.eval_seed, self.plot_tasks = network, eval_seed, plot_tasks
    self._splits = arrays.check_splits(splits, "ArrayRegression")
    self.validation_split = "val" if "val" in self._splits else None
    self._samplers: Dict[str, arrays.TaskPointSampler] = {}
    for split, (x, y) in self._splits.items():
      self._samplers[split] = arrays.TaskPointSampler(
          x, y, _where("ArrayRegression", split), num_shots,
          num_queries if split == "train" else num_queries_eval)
    dims = {split: (s.in_dim, s.out_dim) for split, s in self._samplers.items()}
    if len(set(dims.values())) > 1:
      raise DatasetError(f"The splits of ArrayRegression.splits have different (in_dim, "
                         f"out_dim) ({dims}): give every split the same dimensions.")
    self.input_dim, self.output_dim = dims["train"]
    self.data_sha256 = arrays.fingerprint(
        {split: (s.x, s.y) for split, s in self._samplers.items()})

  def sampler(self, split: str) -> arrays.TaskPointSampler:
    """The episode sampler of ``split``."""
    if split not in self._samplers:
      raise ValueError(f"ArrayRegression has no split {split!r}; it has "
                       f"{sorted(self._samplers)}.")
    return self._samplers[split]

  def make_network(self) -> keras.Model:
    return self.network(input_dim=self.input_dim, output_dim=self.output_dim)

  def train_dataset(self, seed: int, start_step: int = 0, tasks=None) -> tf.data.Dataset:
    """Meta-batch s holds episodes s*T .. s*T+T-1 of the train stream ``seed`` (a share
    ``tasks = (first, count)``: only its count episodes): resuming is exact."""
    first, count = check_task_share(tasks, self.meta_batch_size)
    numbers = episodic.meta_batch_episodes(start_step, self.meta_batch_size, first, count)
    return self.sampler("train").dataset(seed, numbers, count)

  def split_seed(self, split: str) -> int:
    """The seed of the fixed episodes of ``split`` (the few-shot domains' formula)."""
    return self.eval_seed + 1000 * SPLITS.index(split)

  def eval_episodes(self, split: str, num_tasks: int):
    """(Episode of numpy arrays [num_tasks, ...], None): the first ``num_tasks`` fixed
    episodes of ``split``."""
    return self.sampler(split).episodes(self.split_seed(split), num_tasks), None

  def eval_batches(self, split: str, num_tasks: int, preprocessed: bool = True):
    """The evaluation episodes as one Episode [num_tasks, ...] (inputs are not
    preprocessed)."""
    del preprocessed
    return self.eval_episodes(split, num_tasks)[0]

  def export_signature(self):
    """support_x [K, in_dim], support_y [K, out_dim], query_x [Q, in_dim], float32, any K and
    Q."""
    return [tf.TensorSpec([None, self.input_dim], tf.float32, name="support_x"),
            tf.TensorSpec([None, self.output_dim], tf.float32, name="support_y"),
            tf.TensorSpec([None, self.input_dim], tf.float32, name="query_x")]

  def export_description(self) -> str:
    return (f"{self.name} regression: support_x [K, {self.input_dim}] and support_y [K, "
            f"{self.output_dim}] (any K, trained with K={self.num_shots}), query_x [Q, "
            f"{self.input_dim}]")

  def plot(self, learners, path: str, num_steps: int = 5, evaluations=None) -> str:
    """PNG: test MSE (95% CI) vs inner steps per learner (results.json's numbers for learners
    in ``evaluations``, else measured on ``plot_tasks`` test episodes) and, for one input and
    one output, three test episodes: their support and query points and each learner's query
    predictions after ``num_steps`` steps."""
    from l2f_tf import plots  # Imported here: matplotlib is only needed for figures.
    evaluations = evaluations or {}
    curves, recomputed = {}, False
    episodes = None
    for label, learner in learners.items():
      if label in evaluations:
        curves[label] = plots.curve_from_figures(evaluations[label], self.metric_name)
        continue
      if episodes is None:
        episodes = self.eval_episodes("test", self.plot_tasks)[0]
      values = predictions.per_task_metrics(learner, episodes, self.task_metric, num_steps)
      curves[label] = (np.arange(num_steps + 1), values.mean(0),
                       1.96 * values.std(0, ddof=1) / np.sqrt(len(values)))
      recomputed = True
    for label, figures in evaluations.items():  # curves without a learner (an ensemble)
      curves.setdefault(label, plots.curve_from_figures(figures, self.metric_name))
    tasks = []
    if self.input_dim == 1 and self.output_dim == 1:
      shown = self.eval_episodes("test", 3)[0]
      for i in range(len(shown.support_x)):
        predicted = {label: np.asarray(learner.predict(shown.support_x[i], shown.support_y[i],
                                                       shown.query_x[i], num_steps=num_steps))
                     for label, learner in learners.items()}
        tasks.append((shown.support_x[i], shown.support_y[i], shown.query_x[i],
                      shown.query_y[i], predicted))
    title = self.name + (f" ({self.plot_tasks} test episodes)" if recomputed else "")
    return plots.plot_metric_by_steps(path, curves, "query MSE, 95% CI", title, tasks,
                                      num_steps)

