"""Few-shot classification domains: images (miniImageNet, tieredImageNet, Omniglot, glyphs) here,
pre-computed embeddings in `l2f_tf.domains.embeddings`.

:class:`EpisodicFewShot` holds what both share: N-way K-shot episodes with Q queries per class
from the episodic tf.data pipeline (`l2f_tf.data.episodic`), the per-task loss (mean softmax
cross-entropy over the query set) and metric (query accuracy), the export signature and the
accuracy-vs-steps figure. Evaluation episodes are a pure function of (``eval_seed``, split):
every model evaluated with the same config sees the same 600 validation and test episodes
(paired comparisons), and embeddings written by `l2f_tf.embed` from an image dataset give
exactly the episodes (classes and images) of the image domain on that dataset.
"""

import abc
import contextlib
from typing import Callable, Dict, Iterator, Optional, Sequence

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

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


@contextlib.contextmanager
def naming_root_binding(binding: str) -> Iterator[None]:
  """Adds to a DatasetError about the dataset root the gin binding that sets it (``binding``,
  e.g. ``FewShotClassification.root``): the readers know paths, not gin."""
  try:
    yield
  except readers.DatasetError as error:
    message = str(error)
    if "root" not in message or binding in message:
      raise
    raise type(error)(f"{message} {root_binding_hint(binding)}") from None


def root_binding_hint(binding: str) -> str:
  """The sentence :func:`naming_root_binding` adds."""
  return (f"(The dataset root is the gin binding {binding}: --gin_bindings=\"{binding} = "
          "'/path/to/data'\", or root= in Python.)")


class EpisodicFewShot(SupervisedDomain):
  """N-way K-shot classification on episodes of a dataset's train, val and test splits.

  Subclasses read a split into an `episodic.EpisodeSampler` (``_new_sampler``), build the
  network and say how inputs are preprocessed (``export_preprocess``).

  Args:
    name: name of the problem in results.
    num_ways: N, classes per task.
    num_shots: K, support examples per class.
    num_queries: Q, query examples per class (15 in the references).
    meta_batch_size: tasks per meta-iteration.
    eval_seed: seed of the fixed validation and test episodes.
    eval_batch_size: episodes per evaluation batch.
    plot_episodes: test episodes behind the accuracy-vs-steps figure.
  """

  metric_name = "accuracy"
  log_metric_per_step = True
  eval_vectorized = False  # Tasks are adapted one at a time during evaluation (memory).
  eval_distributions = ("test",)
  validation_split = "val"
  loss_fn = staticmethod(cross_entropy)
  task_metric = staticmethod(accuracy)  # Per-task evaluation figure (higher is better).

  def __init__(self, name: str, num_ways: int, num_shots: int, num_queries: int,
               meta_batch_size: int, eval_seed: int, eval_batch_size: int, plot_episodes: int):
    episodic.check_episode_shape(num_ways, num_shots, num_queries, meta_batch_size,
                                 owner=f"{type(self).__name__}.")
    self.name = name
    self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
    self.meta_batch_size = meta_batch_size
    self.eval_seed, self.eval_batch_size = eval_seed, eval_batch_size
    self.plot_episodes = plot_episodes
    self._samplers: Dict[str, episodic.EpisodeSampler] = {}

  # --- data ------------------------------------------------------------------------------------
  @abc.abstractmethod
  def _new_sampler(self, split: str) -> episodic.EpisodeSampler:
    """The episode sampler of a split (its data read and checked)."""

  def _preprocess(self, x: tf.Tensor) -> tf.Tensor:
    """Inputs as stored -> network inputs, in training and evaluation (the SavedModel's)."""
    return self.export_preprocess(x)

  def sampler(self, split: str) -> episodic.EpisodeSampler:
    """The (cached) episode sampler of a split; reads the split on first use."""
    if split not in self._samplers:
      self._samplers[split] = self._new_sampler(split)
    return self._samplers[split]

  def _check_split(self, split: str) -> None:
    self.sampler(split)

  def check_data(self) -> None:
    """Reads every split the run uses (train, validation, evaluation): a missing or damaged
    dataset, fewer classes than num_ways or a class with fewer than num_shots + num_queries
    examples fail here, before training."""
    splits = dict.fromkeys(["train", self.validation_split, *self.eval_distributions])
    for split in filter(None, splits):
      self._check_split(split)

  @property
  def input_shape(self) -> Sequence[int]:
    """The shape of one example (of the train split)."""
    return tuple(self.sampler("train").item_shape)

  def _episodes(self, split: str, seed: int, preprocessed: bool = True, **kwargs):
    return episodic.episode_dataset(self.sampler(split), seed,
                                    preprocess=self._preprocess if preprocessed else None,
                                    **kwargs)

  def train_dataset(self, seed: int, start_step: int = 0, tasks=None) -> tf.data.Dataset:
    """Meta-batch s holds episodes s*T .. s*T+T-1 of the stream ``seed``: resuming is exact.
    A share (``tasks = (first, count)``) loads episodes s*T+first .. s*T+first+count-1 only."""
    size = self.meta_batch_size
    first, count = check_task_share(tasks, size)
    numbers = episodic.meta_batch_episodes(start_step, size, first, count)
    return self._episodes("train", seed, episodes=numbers, batch_size=count)

  def split_seed(self, split: str) -> int:
    """The seed of the fixed episodes of ``split`` (the same in every few-shot domain)."""
    return self.eval_seed + 1000 * readers.SPLITS.index(split)

  def eval_batches(self, split: str, num_tasks: int,
                   preprocessed: bool = True) -> tf.data.Dataset:
    """The first ``num_tasks`` fixed evaluation episodes of ``split`` ("val" or "test")."""
    return self._episodes(split, self.split_seed(split), preprocessed, num_episodes=num_tasks,
                          batch_size=self.eval_batch_size, drop_remainder=False)

  def eval_episodes(self, split: str, num_tasks: int):
    """(Episode of numpy arrays [num_tasks, ...], None): small evaluations and plots."""
    return episodic.split_arrays(self.eval_batches(split, num_tasks)), None

  # --- export ----------------------------------------------------------------------------------
  def export_signature(self):
    """(support_x [N*K, ...], support_y [N*K], query_x [Q', ...]), inputs as stored (the
    SavedModel preprocesses them as in training, see :meth:`export_preprocess`)."""
    shape, support = list(self.input_shape), self.num_ways * self.num_shots
    return [tf.TensorSpec([support, *shape], tf.float32, name="support_x"),
            tf.TensorSpec([support], tf.int32, name="support_y"),
            tf.TensorSpec([None, *shape], tf.float32, name="query_x")]

  # --- figures ---------------------------------------------------------------------------------
  def plot(self, learners, path: str, num_steps: int = 5, evaluations=None) -> str:
    """PNG: test accuracy (95% CI) vs inner steps per learner, and the mean L2F gamma of each
    attenuated tensor (``Learner.gamma_names``) for learners that attenuate.

    A learner with ``evaluations`` (label -> its test figures from results.json) is drawn at
    exactly those steps and numbers; one without is evaluated after 0..num_steps steps on
    ``plot_episodes`` test episodes (the title then says how many). A learner whose gammas
    cannot be computed is left out of that panel with a warning, never failing the figure."""
    from l2f_tf import plots  # Imported here: matplotlib is only needed for figures.
    curves, gammas = {}, {}
    evaluations = evaluations or {}
    num_tasks = self.plot_episodes
    gamma_learners = {label for label, learner in learners.items()
                      if learner.attenuation is not None}
    # Episodes are read only when a learner needs them (no results to draw, or gammas).
    needed = any(label not in evaluations or label in gamma_learners for label in learners)
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
      if label in gamma_learners:
        drawn = _mean_gammas(learner, episodes, min(num_tasks, 20))
        if drawn is not None:
          gammas[label] = drawn
    for label, figures in evaluations.items():  # curves without a learner (an ensemble)
      curves.setdefault(label, plots.curve_from_figures(figures, "accuracy"))
    title = f"{self.name}, {self.num_ways}-way {self.num_shots}-shot"
    if recomputed:
      title += f" ({num_tasks} test episodes)"
    return plots.plot_accuracy_by_steps(path, curves, gammas, title=title)


def _mean_gammas(learner, episodes, count: int) -> Optional[tuple]:
  """(the learner's gamma names, the mean of each gamma over `count` tasks), or None (with a
  warning) if the learner cannot give one gamma per name."""
  try:
    gamma = np.mean([np.asarray(learner.attenuate(episodes.support_x[i],
                                                  episodes.support_y[i])[1])
                     for i in range(count)], axis=0)
    names = list(learner.gamma_names)
    if gamma.ndim != 1 or len(gamma) != len(names):
      raise ValueError(f"{gamma.shape} gammas for {len(names)} names")
  except Exception as error:  # pylint: disable=broad-except  # A figure never fails the run.
    logging.warning("Not drawing the gammas of %s: %s", type(learner).__name__, error)
    return None
  return names, gamma


@gin.configurable
class FewShotClassification(EpisodicFewShot):
  """N-way K-shot classification of images from a dataset on disk.

  Args (and those of :class:`EpisodicFewShot`):
    root: the dataset folder (any layout of `l2f_tf.data.readers`), or in gin a call such as
      ``@ensure_glyphs()`` that returns one.
    name: name of the dataset in results (e.g. "mini_imagenet"); "mini_imagenet",
      "tiered_imagenet" and "omniglot" also make a root holding another of these an error.
    meta_batch_size: 2 for 5-shot, 4 for 1-shot in the reference.
    image_size: images are resized to image_size x image_size.
    channels: 1 or 3, or None for the format's default (1 for Omniglot, else 3).
    normalization: "imagenet" (/255, ImageNet mean/std) or "unit" (/255 only).
    backbone: ``backbone(num_classes=, image_shape=)`` -> Keras model (e.g. conv4, resnet12).
    reader_options: extra arguments of the dataset reader (e.g. Omniglot's rotations).
  """

  def __init__(self, root: str = gin.REQUIRED, name: str = "few_shot", num_ways: int = 5,
               num_shots: int = 5, num_queries: int = 15, meta_batch_size: int = 2,
               image_size: int = 84, channels: Optional[int] = None,
               normalization: str = "imagenet", backbone: Callable[..., keras.Model] = conv4,
               eval_seed: int = 20200614, eval_batch_size: int = 10,
               reader_options: Optional[Dict] = None, plot_episodes: int = 100):
    if normalization not in episodic.NORMALIZATIONS:
      raise ValueError(f"FewShotClassification.normalization must be one of "
                       f"{episodic.NORMALIZATIONS}, got {normalization!r}.")
    super().__init__(name, num_ways, num_shots, num_queries, meta_batch_size, eval_seed,
                     eval_batch_size, plot_episodes)
    self.root, self.image_size = root, image_size
    self.normalization, self.backbone = normalization, backbone
    self.reader_options = dict(reader_options or {})
    self._channels = channels

  def _new_sampler(self, split: str) -> episodic.ImageEpisodeSampler:
    """Reads the split's index (checked against `name` if that is one of readers.DATASETS)."""
    with naming_root_binding("FewShotClassification.root"):
      index = readers.load_split(self.root, split, image_size=(self.image_size,) * 2,
                                 channels=self._channels, dataset=self.name,
                                 **self.reader_options)
    return episodic.ImageEpisodeSampler(index, self.num_ways, self.num_shots, self.num_queries)

  def check_data(self) -> None:
    with naming_root_binding("FewShotClassification.root"):
      readers.detect_format(self.root)
    super().check_data()

  def _check_split(self, split: str) -> None:
    """Also decodes the first image of each class (an unreadable dataset fails before
    training). Evaluation splits are not kept: they are read again when evaluated (a pickled
    split can take GBs of memory)."""
    if split in ("train", self.validation_split):
      sampler = self.sampler(split)
    else:
      sampler = self._samplers.get(split) or self._new_sampler(split)
    readers.check_first_images(sampler.class_index)

  @property
  def image_shape(self) -> Sequence[int]:
    return self.input_shape

  def make_network(self) -> keras.Model:
    return self.backbone(num_classes=self.num_ways, image_shape=tuple(self.image_shape))

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
