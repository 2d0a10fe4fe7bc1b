"""Episodic tf.data pipeline for N-way K-shot image classification.

Episode number ``e`` of a stream is a pure function of ``(seed, e)``: which N classes (in a
random order, which is the per-episode label shuffle), and which K support and Q query images of
each. So a resumed run reads exactly the episodes it would have read, and every model evaluated
with the same seed sees the same evaluation episodes (paired comparisons).

Images are decoded lazily, episode by episode, by the dataset readers (`l2f_tf.data.readers`),
in parallel tf.data map calls (Pillow releases the GIL while decoding), so a split never has
to fit in memory. An image that cannot be decoded is skipped with a warning (once per image)
and replaced by another image of the same class; a class left with fewer than K + Q readable
images raises a `DatasetError` naming its bad files. tf.data reports that error as a
`tf.errors.OpError` holding a traceback: `raise_data_errors` turns it back into the
`DatasetError` around code that iterates over episodes. Pixels leave the reader as uint8 and are
scaled to [0, 1] and normalised (ImageNet mean/std for the ImageNet sets) in TensorFlow.

Layout of one episode (labels 0..N-1; support and query are class-major):
  support_x [N*K, H, W, C] float32, support_y [N*K] int32,
  query_x   [N*Q, H, W, C] float32, query_y   [N*Q] int32.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf.data.episode import Episode
from l2f_tf.data.readers import (ClassIndex, DatasetError, ImageDecodeError,
                                 check_enough_classes, check_enough_images, load_image)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "unit")
# A DatasetError (or subclass) raised in a numpy_function, as tf.data's OpError quotes it.
_QUOTED_ERROR = re.compile(r"\b(?:DatasetError|ImageDecodeError): ([^\n]+)")


def choose_episode(seed: int, episode: int, class_sizes: Sequence[int],
                   num_ways: int) -> Tuple[np.ndarray, List[np.ndarray]]:
  """The classes and item order of episode ``episode`` of the stream ``seed``.

  Every episode sampler (images here, pre-computed embeddings in
  `l2f_tf.data.embedding_episodes`) draws its episodes with this one function, so a split
  of the same classes, in the same order, with the same items per class in the same order,
  gives the same episodes whatever form its items take: a model trained on embeddings of a
  dataset is evaluated on exactly the tasks of a model trained on its images.

  Args:
    seed: the stream's seed.
    episode: the episode's number in the stream.
    class_sizes: items (images, embeddings) per class, in class-index order.
    num_ways: N, classes per episode.

  Returns:
    (class ids [N] in label order, per chosen class a permutation of its item ids); an episode
    takes the first K + Q items of each permutation (K support, then Q queries).
  """
  rng = np.random.default_rng([seed, episode])
  class_ids = rng.choice(len(class_sizes), num_ways, replace=False)
  return class_ids, [rng.permutation(int(class_sizes[c])) for c in class_ids]


def check_episode_shape(num_ways: int, num_shots: int, num_queries: int) -> None:
  """Raises ValueError unless N >= 2, K >= 1 and Q >= 1 (shared by every episode sampler)."""
  for name, value, minimum in (("num_ways", num_ways, 2), ("num_shots", num_shots, 1),
                               ("num_queries", num_queries, 1)):
    if value < minimum:
      raise ValueError(f"{name} must be >= {minimum}, got {value}.")


class EpisodeSampler:
  """Chooses the classes and images of episode ``e`` from ``(seed, e)`` alone.

  Args:
    class_index: the split's classes and image sources.
    num_ways: N, classes per episode.
    num_shots: K, support images per class.
    num_queries: Q, query images per class.

  Raises:
    DatasetError: if the split has fewer than N classes or a class fewer than K + Q images.
  """

  def __init__(self, class_index: ClassIndex, num_ways: int, num_shots: int, num_queries: int):
    check_episode_shape(num_ways, num_shots, num_queries)
    check_enough_classes(class_index, num_ways)
    check_enough_images(class_index, num_shots + num_queries,
                        needed_as=f"num_shots={num_shots} + num_queries={num_queries}")
    self.class_index = class_index
    self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
    self._classes = [class_index[name] for name in class_index.class_names]
    self._bad_sources = {}  # (class id, image id) -> its ImageDecodeError.
    self._lock = threading.Lock()

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    height, width = self.class_index.image_size
    return height, width, self.class_index.channels

  def choose(self, seed: int, episode: int) -> Tuple[np.ndarray, list]:
    """(class ids [N] in label order, per class a permutation of its image ids); see
    :func:`choose_episode`."""
    return choose_episode(seed, episode, [len(sources) for sources in self._classes],
                          self.num_ways)

  def _load_class(self, class_id: int, order: np.ndarray) -> np.ndarray:
    """K + Q decodable images of one class, in the order given, skipping bad ones."""
    needed = self.num_shots + self.num_queries
    sources = self._classes[class_id]
    images = []
    for image_id in order:
      key = (class_id, int(image_id))
      if key in self._bad_sources:
        continue
      try:
        images.append(load_image(sources[image_id], self.class_index.image_size,
                                 self.class_index.channels))
      except ImageDecodeError as error:
        with self._lock:
          if key not in self._bad_sources:
            self._bad_sources[key] = error
            logging.warning("Skipping an unreadable image (another of its class replaces it): "
                            "%s", error)
        continue
      if len(images) == needed:
        return np.stack(images)
    bad = [error for (c, _), error in sorted(self._bad_sources.items()) if c == class_id]
    first = f" (first: {bad[0].image}: {bad[0].problem})" if bad else ""
    name = self.class_index.class_names[class_id]
    raise DatasetError(
        f"Class {name!r} in split {self.class_index.split!r} of {self.class_index.root} has "
        f"{len(images)} readable images, fewer than the {needed} needed (num_shots="
        f"{self.num_shots} + num_queries={self.num_queries}): {len(bad)} of its "
        f"{len(sources)} images cannot be decoded{first}; re-extract them or lower "
        "num_shots/num_queries.")

  def load(self, seed: int, episode: int):
    """uint8 support_x, int32 support_y, uint8 query_x, int32 query_y of one episode."""
    class_ids, orders = self.choose(seed, episode)
    per_class = np.stack([self._load_class(c, o) for c, o in zip(class_ids, orders)])
    k, n = self.num_shots, self.num_ways
    labels = lambda m: np.repeat(np.arange(n, dtype=np.int32), m)
    support = per_class[:, :k].reshape(n * k, *per_class.shape[2:])
    query = per_class[:, k:].reshape(n * self.num_queries, *per_class.shape[2:])
    return support, labels(k), query, labels(self.num_queries)


@contextlib.contextmanager
def raise_data_errors():
  """Re-raises a `DatasetError` that stopped a tf.data pipeline of episodes as the DatasetError.

  An exception of `EpisodeSampler.load` reaches the code iterating over the dataset as a
  `tf.errors.OpError` whose message quotes the Python traceback; inside this context its
  one-line message is raised again as a `DatasetError` (a ValueError) from the OpError. Other
  errors pass unchanged.
  """
  try:
    yield
  except tf.errors.OpError as error:
    quoted = _QUOTED_ERROR.search(error.message or "")
    if quoted is None:
      raise
    raise DatasetError(quoted.group(1).strip()) from error


def normalize_images(images: tf.Tensor, normalization: Optional[str] = "imagenet") -> tf.Tensor:
  """uint8 (or float pixel values in [0, 255]) -> float32 network input.

  "imagenet": /255 then per-channel ImageNet mean/std (the reference's miniImageNet setting);
  "unit" or None: /255 only.
  """
  if normalization not in (*NORMALIZATIONS, None):
    raise ValueError(f"normalization must be one of {NORMALIZATIONS} or None, got "
                     f"{normalization!r}.")
  x = tf.cast(images, tf.float32) / 255.0
  if normalization == "imagenet":
    channels = x.shape[-1]
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    if channels == 1:  # Grayscale ImageNet images: the mean over colour channels.
      mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
    x = (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
  return x


def episode_dataset(sampler: EpisodeSampler, seed: int, start: int = 0,
                    num_episodes: Optional[int] = None, batch_size: int = 1,
                    drop_remainder: bool = True, normalization: Optional[str] = "imagenet",
                    raw_pixels: bool = False, prefetch: bool = True,
                    episodes: Optional[tf.data.Dataset] = None) -> tf.data.Dataset:
  """Batches of episodes ``start, start+1, ...`` (or the numbers in ``episodes``) of the
  stream ``seed``.

  Args:
    sampler: the split's :class:`EpisodeSampler`.
    seed: the stream's seed.
    start: first episode number (training resumes at step * meta_batch_size).
    num_episodes: episodes in total, or None for an endless stream.
    batch_size: episodes per element (the meta-batch; fields get a leading task axis).
    drop_remainder: drop a last incomplete batch (static task count for the train step).
    normalization: see :func:`normalize_images`.
    raw_pixels: yield float32 pixel values in [0, 255] instead (for an exported model, which
      normalises inside).
    prefetch: prefetch batches in the background.
    episodes: a dataset of int64 episode numbers to load instead of ``start`` and
      ``num_episodes`` (a worker's share of each meta-batch).

  Returns:
    A dataset of :class:`Episode` with fixed shapes.
  """
  shape = sampler.image_shape
  n, k, q = sampler.num_ways, sampler.num_shots, sampler.num_queries

  def load(index):
    support_x, support_y, query_x, query_y = tf.numpy_function(
        lambda e: sampler.load(seed, int(e)), [index],
        [tf.uint8, tf.int32, tf.uint8, tf.int32], stateful=False)
    if raw_pixels:
      support_x, query_x = tf.cast(support_x, tf.float32), tf.cast(query_x, tf.float32)
    else:
      support_x = normalize_images(support_x, normalization)
      query_x = normalize_images(query_x, normalization)
    episode = Episode(tf.ensure_shape(support_x, [n * k, *shape]),
                      tf.ensure_shape(support_y, [n * k]),
                      tf.ensure_shape(query_x, [n * q, *shape]),
                      tf.ensure_shape(query_y, [n * q]))
    return episode

  if episodes is not None:
    dataset = episodes
  elif num_episodes is None:
    dataset = tf.data.Dataset.counter(start)
  else:
    dataset = tf.data.Dataset.range(start, start + num_episodes)
  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def split_arrays(dataset: tf.data.Dataset) -> Episode:
  """All batches of a finite episode dataset concatenated into one numpy :class:`Episode`."""
  fields = [[], [], [], []]
  for batch in dataset:
    for i, field in enumerate(batch):
      fields[i].append(field.numpy())
  return Episode(*(np.concatenate(f) for f in fields))

