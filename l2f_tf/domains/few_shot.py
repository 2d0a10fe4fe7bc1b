"""The few-shot image classification domain (miniImageNet, tieredImageNet, Omniglot, glyphs).

N-way K-shot episodes with Q queries per class come from the episodic tf.data pipeline over a
dataset split read by `l2f_tf.data.readers` (the layout on disk is detected). The network is a
gin-chosen backbone (conv4 or resnet12) with an N-way head; the per-task loss is the mean
softmax cross-entropy over the query set and the evaluation metric is the query accuracy.

Evaluation episodes are a pure function of (``eval_seed``, split): every model evaluated with
the same config sees the same 600 validation and test episodes (paired comparisons).
"""

from typing import Callable, Dict, Optional, Sequence

import gin
import keras
import numpy as np
import tensorflow as tf

from l2f_tf.data import episodic, readers
from l2f_tf.domains.base import SupervisedDomain, check_task_share
from l2f_tf.meta import predictions
from l2f_tf.models.conv4 import conv4


def cross_entropy(labels, logits):
  """Mean softmax cross-entropy of one task's predictions."""
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=logits))


def accuracy(labels, logits):
  """Fraction of correctly classified examples of one task."""
  predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_mean(tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32))


@gin.configurable
class FewShotClassification(SupervisedDomain):
  """N-way K-shot classification of images from a dataset on disk.

  Args:
    root: the dataset folder (any layout of `l2f_tf.data.readers`), or in gin a call such as
      ``@ensure_glyphs()`` that returns one.
    name: name of the dataset in results (e.g. "mini_imagenet"); "mini_imagenet",
      "tiered_imagenet" and "omniglot" also make a root holding another of these an error.
    num_ways: N, classes per task.
    num_shots: K, support images per class.
    num_queries: Q, query images per class (15 in the reference).
    meta_batch_size: tasks per meta-iteration (2 for 5-shot, 4 for 1-shot in the reference).
    image_size: images are resized to image_size x image_size.
    channels: 1 or 3, or None for the format's default (1 for Omniglot, else 3).
    normalization: "imagenet" (/255, ImageNet mean/std) or "unit" (/255 only).
    backbone: ``backbone(num_classes=, image_shape=)`` -> Keras model (e.g. conv4, resnet12).
    eval_seed: seed of the fixed validation and test episodes.
    eval_batch_size: episodes per evaluation batch.
    reader_options: extra arguments of the dataset reader (e.g. Omniglot's rotations).
    plot_episodes: test episodes behind the accuracy-vs-steps figure.
  """

  metric_name = "accuracy"
  log_metric_per_step = True
  eval_vectorized = False  # Tasks are adapted one at a time during evaluation (memory).
  eval_distributions = ("test",)
  validation_split = "val"

  def __init__(self, root: str = gin.REQUIRED, name: str = "few_shot", num_ways: int = 5,
               num_shots: int = 5, num_queries: int = 15, meta_batch_size: int = 2,
               image_size: int = 84, channels: Optional[int] = None,
               normalization: str = "imagenet", backbone: Callable[..., keras.Model] = conv4,
               eval_seed: int = 20200614, eval_batch_size: int = 10,
               reader_options: Optional[Dict] = None, plot_episodes: int = 100):
    if normalization not in episodic.NORMALIZATIONS:
      raise ValueError(f"FewShotClassification.normalization must be one of "
                       f"{episodic.NORMALIZATIONS}, got {normalization!r}.")
    if meta_batch_size < 1:
      raise ValueError(f"FewShotClassification.meta_batch_size must be >= 1, got "
                       f"{meta_batch_size}.")
    self.root, self.name = root, name
    self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
    self.meta_batch_size = meta_batch_size
    self.image_size, self.normalization, self.backbone = image_size, normalization, backbone
    self.eval_seed, self.eval_batch_size = eval_seed, eval_batch_size
    self.reader_options = dict(reader_options or {})
    self._channels = channels
    self.plot_episodes = plot_episodes
    self._samplers: Dict[str, episodic.EpisodeSampler] = {}

  # --- data ------------------------------------------------------------------------------------
  def _new_sampler(self, split: str) -> episodic.EpisodeSampler:
    """Reads the split's index (checked against `name` if that is one of readers.DATASETS)."""
    index = readers.load_split(self.root, split, image_size=(self.image_size,) * 2,
                               channels=self._channels, dataset=self.name,
                               **self.reader_options)
    return episodic.EpisodeSampler(index, self.num_ways, self.num_shots, self.num_queries)

  def sampler(self, split: str) -> episodic.EpisodeSampler:
    """The (cached) episode sampler of a split; reads the split's index on first use."""
    if split not in self._samplers:
      self._samplers[split] = self._new_sampler(split)
    return self._samplers[split]

  def check_data(self) -> None:
    """Reads every split the run uses (train, validation, evaluation) and decodes the first
    image of each class: a missing or mislaid dataset, an unreadable file, a class with fewer
    than num_shots + num_queries images fail here, before training. The train and validation
    samplers are kept; evaluation splits are read again when evaluated (a pickled split can
    take GBs of memory)."""
    splits = dict.fromkeys(["train", self.validation_split, *self.eval_distributions])
    for split in filter(None, splits):
      if split in ("train", self.validation_split):
        sampler = self.sampler(split)
      else:
        sampler = self._samplers.get(split) or self._new_sampler(split)
      readers.check_first_images(sampler.class_index)

  @property
  def image_shape(self) -> Sequence[int]:
    return self.sampler("train").image_shape

  def train_dataset(self, seed: int, start_step: int = 0, tasks=None) -> tf.data.Dataset:
    """Meta-batch s holds episodes s*T .. s*T+T-1 of the stream ``seed``: resuming is exact.
    A share (``tasks = (first, count)``) loads episodes s*T+first .. s*T+first+count-1 only."""
    size = self.meta_batch_size
    first, count = check_task_share(tasks, size)
    numbers = tf.data.Dataset.counter(start_step).flat_map(
        lambda s: tf.data.Dataset.range(s * size + first, s * size + first + count))
    return episodic.episode_dataset(self.sampler("train"), seed, episodes=numbers,
                                    batch_size=count, normalization=self.normalization)

  def _split_seed(self, split: str) -> int:
    return self.eval_seed + 1000 * readers.SPLITS.index(split)

  def eval_batches(self, split: str, num_tasks: int, raw_pixels: bool = False) -> tf.data.Dataset:
    """The first ``num_tasks`` fixed evaluation episodes of ``split`` ("val" or "test")."""
    return episodic.episode_dataset(
        self.sampler(split), self._split_seed(split), num_episodes=num_tasks,
        batch_size=self.eval_batch_size, drop_remainder=False,
        normalization=self.normalization, raw_pixels=raw_pixels)

  def eval_episodes(self, split: str, num_tasks: int):
    """(Episode of numpy arrays [num_tasks, ...], None): small evaluations and plots."""
    return episodic.split_arrays(self.eval_batches(split, num_tasks)), None

  # --- model, loss, metric ---------------------------------------------------------------------
  def build_model(self) -> keras.Model:
    return self.backbone(num_classes=self.num_ways, image_shape=tuple(self.image_shape))

  @staticmethod
  def loss_fn(labels, logits):
    return cross_entropy(labels, logits)

  @staticmethod
  def task_metric(labels, logits):
    """Per-task evaluation figure: query accuracy (higher is better)."""
    return accuracy(labels, logits)

  # --- export ----------------------------------------------------------------------------------
  def export_signature(self):
    """(support images [N*K, H, W, C], support labels [N*K], query images [Q', H, W, C]).

    Images are pixel values in [0, 255] (uint8 cast to float32); the SavedModel normalises them
    as in training (see :meth:`export_preprocess`).
    """
    shape = list(self.image_shape)
    support = self.num_ways * self.num_shots
    return [tf.TensorSpec([support, *shape], tf.float32, name="support_x"),
            tf.TensorSpec([support], tf.int32, name="support_y"),
            tf.TensorSpec([None, *shape], tf.float32, name="query_x")]

  def export_description(self) -> str:
    h, w, c = self.image_shape
    return (f"{self.num_ways}-way {self.num_shots}-shot classification of {h}x{w}x{c} images "
            f"with pixel values in [0, 255]: support_x [{self.num_ways * self.num_shots}, {h}, "
            f"{w}, {c}], support_y labels in 0..{self.num_ways - 1}, query_x [any, {h}, {w}, {c}]")

  def export_preprocess(self, images):
    return episodic.normalize_images(images, self.normalization)

  def export_input_range(self):
    """Pixel values: :meth:`export_preprocess` divides by 255 (then, for "imagenet", applies the
    ImageNet mean and std), so images scaled to [0, 1] or normalised would be wrong."""
    return (0.0, 255.0)

  # --- figures ---------------------------------------------------------------------------------
  def plot(self, learners, path: str, num_steps: int = 5, evaluations=None) -> str:
    """PNG: test accuracy (95% CI) vs inner steps per learner, and the mean L2F gamma of each
    layer.

    A learner with ``evaluations`` (label -> its test figures from results.json) is drawn
    at exactly those steps and numbers; one without is evaluated after 0..num_steps steps on
    ``plot_episodes`` test episodes (the title then says how many)."""
    from l2f_tf import plots  # Imported here: matplotlib is only needed for figures.
    curves, gammas = {}, {}
    evaluations = evaluations or {}
    num_tasks = self.plot_episodes
    # Episodes are read only when a learner needs them (no results to draw, or gammas).
    needed = any(label not in evaluations or learner.attenuation is not None
                 for label, learner in learners.items())
    episodes = self.eval_episodes("test", num_tasks)[0] if needed else None
    recomputed = False
    for label, learner in learners.items():
      if label in evaluations:
        curves[label] = plots.curve_from_figures(evaluations[label], "accuracy")
      else:
        values = predictions.per_task_metrics(learner, episodes, self.task_metric, num_steps,
                                             chunk_size=self.eval_batch_size, vectorized=False)
        curves[label] = (np.arange(num_steps + 1), values.mean(0),
                         1.96 * values.std(0, ddof=1) / np.sqrt(len(values)))
        recomputed = True
      if learner.attenuation is not None:
        gamma = [learner.attenuate(episodes.support_x[i], episodes.support_y[i])[1].numpy()
                 for i in range(min(num_tasks, 20))]
        gammas[label] = (learner.inner_variable_names, np.mean(gamma, axis=0))
    for label, figures in evaluations.items():  # curves without a learner (an ensemble)
      curves.setdefault(label, plots.curve_from_figures(figures, "accuracy"))
    title = f"{self.name}, {self.num_ways}-way {self.num_shots}-shot"
    if recomputed:
      title += f" ({num_tasks} test episodes)"
    return plots.plot_accuracy_by_steps(path, curves, gammas, title=title)
