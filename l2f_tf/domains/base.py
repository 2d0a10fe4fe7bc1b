"""The Domain interface: what the trainers and the experiment runner know about a problem.

Every domain subclasses :class:`Domain` (meta-RL) or :class:`SupervisedDomain` (sinusoid
regression, few-shot classification). The runner and the trainers read only the attributes and
methods declared here, so a new problem is a new subclass and nothing else changes.
"""

import abc
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf


class Domain(abc.ABC):
  """A meta-learning problem: a network, a per-task loss and a task distribution.

  Attributes:
    name: the problem's name in results and figures.
    metric_name: the evaluation figure's name ("mse", "accuracy", "return").
    meta_batch_size: tasks per meta-iteration.
    eval_seed: seed of the held-out evaluation tasks (the same for every model: results are
      paired comparisons).
    log_metric_per_step: whether training logs ``task_metric`` after each inner step (False
      when the metric is the loss itself, or when there is none).
  """

  name: str = "domain"
  metric_name: str = "loss"
  meta_batch_size: int = 1
  eval_seed: int = 20200614
  log_metric_per_step: bool = False

  def build_model(self, seed: int = 0) -> keras.Model:
    """A new network for this problem (the learner's theta), its initial weights drawn from
    ``seed``: the same seed gives the same weights. It seeds Keras' global random state
    (``keras.utils.set_random_seed``: Python, NumPy, TensorFlow), so what is built right
    after it from that state, such as a `MetaLearner`'s attenuator, is the same every time
    too."""
    keras.utils.set_random_seed(seed)
    return self.make_network()

  @abc.abstractmethod
  def make_network(self) -> keras.Model:
    """A new, built network for this problem (:meth:`build_model` calls it under its seed)."""

  @abc.abstractmethod
  def loss_fn(self, y_true, y_pred) -> tf.Tensor:
    """The inner-loop loss of one task."""

  task_metric: Optional[Callable] = None
  """``task_metric(y_true, y_pred)``: the per-task evaluation figure, or None."""

  def check_data(self) -> None:
    """Raises a ValueError naming the fix if the domain's data cannot serve the whole run
    (called once before training, so that a bad dataset fails at once). Default: nothing."""


def check_task_share(tasks: Optional[Tuple[int, int]], meta_batch_size: int) -> Tuple[int, int]:
  """(first, count) of a share of a meta-batch, checked; (0, meta_batch_size) for None."""
  if tasks is None:
    return 0, meta_batch_size
  first, count = tasks
  if first < 0 or count < 1 or first + count > meta_batch_size:
    raise ValueError(f"Tasks {first}..{first + count - 1} are not a share of a meta-batch of "
                     f"{meta_batch_size} tasks.")
  return first, count


class SupervisedDomain(Domain):
  """A problem whose tasks are (support, query) sets of labelled examples.

  Attributes:
    eval_distributions: the task distributions (or dataset splits) of the final evaluation.
    validation_split: the split validated during training, or None (no validation).
    eval_vectorized: evaluation adapts a batch of tasks with ``tf.vectorized_map`` (fast) or
      one task after the other (bounded memory, for images).
  """

  eval_distributions: Sequence[str] = ("test",)
  validation_split: Optional[str] = None
  eval_vectorized: bool = True

  @abc.abstractmethod
  def train_dataset(self, seed: int, start_step: int = 0,
                    tasks: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
    """Meta-batches of training tasks; meta-batch s is a pure function of (seed, s).

    ``tasks = (first, count)``: element s holds only tasks ``first .. first + count - 1`` of
    meta-batch s (a worker's or a device's share when training is distributed; the shares
    of all workers together are exactly the meta-batch of one-device training). None: all
    ``meta_batch_size`` tasks."""

  @abc.abstractmethod
  def eval_batches(self, distribution: str, num_tasks: int, preprocessed: bool = True):
    """The first ``num_tasks`` fixed evaluation tasks of ``distribution``: one batch of tasks
    (support_x, support_y, query_x, query_y with a leading task axis) or an iterable of them.
    ``preprocessed=False``: inputs before :meth:`export_preprocess` (what a SavedModel
    receives, e.g. pixel values, or embeddings not L2-normalised)."""

  @abc.abstractmethod
  def export_signature(self) -> Sequence[tf.TensorSpec]:
    """TensorSpecs of (support_x, support_y, query_x) of one task in the SavedModel."""

  def export_description(self) -> str:
    """What the SavedModel's inputs are, in words (stored in it)."""
    return f"{self.name}: support_x, support_y and query_x of one task"

  def export_preprocess(self, x: tf.Tensor) -> tf.Tensor:
    """Applied to support_x and query_x inside the SavedModel (e.g. pixel normalisation)."""
    return x

  def export_input_range(self) -> Optional[Tuple[float, float]]:
    """(low, high) of the support_x / query_x values the SavedModel expects (what
    :meth:`export_preprocess` takes, e.g. (0, 255) for pixel values), or None (any). Inputs
    outside it, or all in [0, 1] when high > 1, get a warning printed once by the SavedModel."""
    return None

  def plot(self, learners: Dict[str, object], path: str, num_steps: int = 5,
           evaluations: Optional[Dict[str, Dict]] = None) -> Optional[str]:
    """Saves a figure of a few test tasks for every learner (label -> learner); returns its
    path, or None when the domain has no figure.

    ``evaluations`` (label -> the learner's test figures from results.json,
    ``{"<metric>_after_<k>_steps": {"mean", "ci95", "n"}}``): a figure that draws the metric
    draws these numbers, so that it agrees with results.json, instead of recomputing them."""
    del learners, path, num_steps, evaluations
    return None
