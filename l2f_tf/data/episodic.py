"""The episodic tf.data pipeline of N-way K-shot classification, over images or embeddings.

Episode ``e`` of a stream is a pure function of ``(seed, e)``: its N classes (in random order:
the label shuffle) and the K support and Q query items of each. So a resumed run reads the
episodes it would have read, and models evaluated with one seed see the same episodes (paired
comparisons). :class:`EpisodeSampler` draws every episode; its subclasses differ in where items
come from:

* :class:`ImageEpisodeSampler` decodes images lazily with `l2f_tf.data.readers`, in parallel
  tf.data map calls (Pillow releases the GIL), so a split need not fit in memory. An image that
  cannot be decoded is skipped with one warning and replaced by another of its class; a class
  left with fewer than K + Q raises a `DatasetError` naming its bad files. Pixels stay uint8
  until `normalize_images`.
* :class:`EmbeddingEpisodeSampler` gathers rows of pre-computed embeddings held in memory
  (`l2f_tf.data.readers.leo_embeddings`). With classes and rows in an image split's order (what
  `l2f_tf.embed` writes), episode ``e`` holds the embeddings of the image pipeline's episode
  ``e``.

`raise_data_errors` turns the `tf.errors.OpError` in which tf.data wraps a sampler's error back
into the `DatasetError`.

Layout of one episode (labels 0..N-1 in the chosen class order; support and query are
class-major): support_x [N*K, *item], support_y [N*K] int32, query_x [N*Q, *item],
query_y [N*Q] int32, with x float32.
"""

from __future__ import annotations

import abc
import contextlib
import re
import threading
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf.data.episode import Episode
from l2f_tf.data.readers import (ClassIndex, DatasetError, ImageDecodeError, check_class_sizes,
                                 load_image)
from l2f_tf.data.readers.leo_embeddings import EmbeddingSplit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "unit")
_EPSILON = 1e-12  # tf.math.l2_normalize's: on the squared norm.
# A DatasetError (or subclass) raised in a numpy_function, as tf.data's OpError quotes it.
_QUOTED_ERROR = re.compile(r"\b(?:DatasetError|ImageDecodeError): ([^\n]+)")


def choose_episode(seed: int, episode: int, class_sizes: Sequence[int],
                   num_ways: int) -> Tuple[np.ndarray, List[np.ndarray]]:
  """(class ids [N] in label order, per chosen class a permutation of its item ids) of episode
  ``episode`` of the stream ``seed`` (its first K items support, the next Q queries). Every
  sampler draws with it, so the same classes and items in the same order give the same
  episodes, as images or as their embeddings."""
  rng = np.random.default_rng([seed, episode])
  class_ids = rng.choice(len(class_sizes), num_ways, replace=False)
  return class_ids, [rng.permutation(int(class_sizes[c])) for c in class_ids]


def check_episode_shape(num_ways: int, num_shots: int, num_queries: int,
                        meta_batch_size: int = 1, owner: str = "") -> None:
  """Raises ValueError ("<owner><setting> must be >= ...") unless N >= 2, K, Q and the
  meta-batch size >= 1."""
  for name, value, minimum in (("num_ways", num_ways, 2), ("num_shots", num_shots, 1),
                               ("num_queries", num_queries, 1),
                               ("meta_batch_size", meta_batch_size, 1)):
    if value < minimum:
      raise ValueError(f"{owner}{name} must be >= {minimum}, got {value}.")


class EpisodeSampler(abc.ABC):
  """Chooses the classes and items of episode ``e`` from ``(seed, e)`` alone. Subclasses set
  ``item_shape`` and ``dtype`` (as stored) and give a class's items with ``_class_items``.
  `class_sizes` (name -> items, in index order), `where` and `**message` go to
  `readers.check_class_sizes` (DatasetError: fewer than N classes or K + Q items)."""

  item_shape: Tuple[int, ...] = ()
  dtype: tf.DType = tf.float32

  def __init__(self, class_sizes: Mapping[str, int], where: str, num_ways: int, num_shots: int,
               num_queries: int, **message):
    check_episode_shape(num_ways, num_shots, num_queries)
    check_class_sizes(class_sizes, where, num_ways, num_shots + num_queries,
                      f"num_shots={num_shots} + num_queries={num_queries}", **message)
    self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
    self._sizes = list(class_sizes.values())

  def choose(self, seed: int, episode: int) -> Tuple[np.ndarray, list]:
    """See :func:`choose_episode`."""
    return choose_episode(seed, episode, self._sizes, self.num_ways)

  @abc.abstractmethod
  def _class_items(self, class_id: int, order: np.ndarray) -> np.ndarray:
    """The first K + Q items of class ``class_id`` in the order given, [K + Q, *item_shape]."""

  def load(self, seed: int, episode: int):
    """support_x, int32 support_y, query_x, int32 query_y of one episode (x as stored)."""
    class_ids, orders = self.choose(seed, episode)
    per_class = np.stack([self._class_items(c, o) for c, o in zip(class_ids, orders)])
    k, n, q = self.num_shots, self.num_ways, self.num_queries
    labels = lambda m: np.repeat(np.arange(n, dtype=np.int32), m)
    return (per_class[:, :k].reshape(n * k, *self.item_shape), labels(k),
            per_class[:, k:].reshape(n * q, *self.item_shape), labels(q))


class ImageEpisodeSampler(EpisodeSampler):
  """Episodes of a split of images (`readers.load_split`), decoded when loaded, as uint8."""

  dtype = tf.uint8

  def __init__(self, class_index: ClassIndex, num_ways: int, num_shots: int, num_queries: int):
    super().__init__({name: len(class_index[name]) for name in class_index},
                     f"split {class_index.split!r} of {class_index.root}", num_ways, num_shots,
                     num_queries)
    self.class_index = class_index
    self.item_shape = (*class_index.image_size, class_index.channels)
    self._classes = [class_index[name] for name in class_index.class_names]
    self._bad_sources = {}  # (class id, image id) -> its ImageDecodeError.
    self._lock = threading.Lock()

  def _class_items(self, class_id: int, order: np.ndarray) -> np.ndarray:
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


class EmbeddingEpisodeSampler(EpisodeSampler):
  """Episodes of a split of embeddings (`leo_embeddings.load_embedding_split`), as float32."""

  def __init__(self, split: EmbeddingSplit, num_ways: int, num_shots: int, num_queries: int):
    super().__init__(dict(zip(split.class_names, split.class_sizes)), split.path, num_ways,
                     num_shots, num_queries, items="embeddings", within="of",
                     fix="write the file with more images per class")
    self.split = split
    self.item_shape = (split.embedding_dim,)

  def _class_items(self, class_id: int, order: np.ndarray) -> np.ndarray:
    rows = self.split.class_rows[class_id][order[:self.num_shots + self.num_queries]]
    return self.split.embeddings[rows]


@contextlib.contextmanager
def raise_data_errors():
  """Re-raises a `DatasetError` that stopped a tf.data pipeline of episodes (quoted in a
  `tf.errors.OpError`) as a `DatasetError` with its one-line message; others pass unchanged."""
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


def l2_normalize(x: np.ndarray) -> np.ndarray:
  """Each row divided by its L2 norm, in numpy (the formula of ``tf.math.l2_normalize``, as in
  LEO's reference pipeline; the rounding of numpy's sum is that of the runs so far)."""
  x = np.asarray(x, np.float32)
  squared = np.sum(np.square(x), axis=-1, keepdims=True)
  return x / np.sqrt(np.maximum(squared, np.float32(_EPSILON)))


def l2_normalize_tf(x: tf.Tensor) -> tf.Tensor:
  """Each row divided by its L2 norm, in TensorFlow (an exported model's preprocessing)."""
  return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1, epsilon=_EPSILON)


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """``dataset`` without tf.data's autotuning: ``AUTOTUNE`` parallelism becomes one call per
  core and ``AUTOTUNE`` prefetching a fixed buffer. Deleting an iterator waits for the
  autotuning thread of its pipeline, whose pause between two optimisations doubles up to a
  minute; when the garbage collector dropped a long-lived iterator (a validation's, a finished
  run's), the thread that happened to run it stood still for up to that long (docs/testing.md,
  "Stalls")."""
  options = tf.data.Options()
  options.autotune.enabled = False
  return dataset.with_options(options)


def episode_dataset(sampler: EpisodeSampler, seed: int, start: int = 0,
                    num_episodes: Optional[int] = None, batch_size: int = 1,
                    drop_remainder: bool = True,
                    preprocess: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
                    prefetch: bool = True,
                    episodes: Optional[tf.data.Dataset] = None) -> tf.data.Dataset:
  """:class:`Episode` batches of ``batch_size`` episodes (a leading task axis, static with
  ``drop_remainder``) of the stream ``seed``: episodes ``start, start+1, ...``, ``num_episodes``
  of them (None: endless), or the int64 numbers of the dataset ``episodes`` (a worker's share).
  ``preprocess`` (e.g. `normalize_images`) maps support_x and query_x; None gives the items as
  stored, as float32 (an exported model preprocesses inside)."""
  shape = sampler.item_shape
  n, k, q = sampler.num_ways, sampler.num_shots, sampler.num_queries

  def load(index):
    support_x, support_y, query_x, query_y = tf.numpy_function(
        lambda e: sampler.load(seed, int(e)), [index],
        [sampler.dtype, tf.int32, sampler.dtype, tf.int32], stateful=False)
    inputs = lambda x: tf.cast(preprocess(x) if preprocess else x, tf.float32)
    return Episode(tf.ensure_shape(inputs(support_x), [n * k, *shape]),
                   tf.ensure_shape(support_y, [n * k]),
                   tf.ensure_shape(inputs(query_x), [n * q, *shape]),
                   tf.ensure_shape(query_y, [n * q]))

  if episodes is not None:
    dataset = episodes
  elif num_episodes is None:
    dataset = tf.data.Dataset.counter(start)
  else:
    dataset = tf.data.Dataset.range(start, start + num_episodes)
  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return without_autotuning(dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset)


def meta_batch_episodes(start_step: int, meta_batch_size: int, first: int = 0,
                        count: Optional[int] = None) -> tf.data.Dataset:
  """The int64 episode numbers of meta-batches ``start_step, start_step + 1, ...``: meta-batch
  s holds episodes ``s * T + first .. s * T + first + count - 1`` (T the meta-batch size; a share
  of ``count`` tasks from ``first``, by default all T), so a run resumed at a step reads the
  episodes it would have read."""
  size, count = meta_batch_size, meta_batch_size if count is None else count
  return tf.data.Dataset.counter(start_step).flat_map(
      lambda s: tf.data.Dataset.range(s * size + first, s * size + first + count))


def split_arrays(dataset: tf.data.Dataset) -> Episode:
  """All batches of a finite episode dataset concatenated into one numpy :class:`Episode`."""
  fields = [[], [], [], []]
  for batch in dataset:
    for i, field in enumerate(batch):
      fields[i].append(field.numpy())
  return Episode(*(np.concatenate(f) for f in fields))
