"""Episodes drawn from numpy arrays held in memory, for tasks of one's own
(`l2f_tf.domains.arrays`).

* :class:`ArrayEpisodeSampler` is the `episodic.EpisodeSampler` of labelled examples ``x [n,
  ...]`` with integer labels ``y [n]``: the examples of a label form a class, and episode ``e``
  of the stream ``seed`` is chosen by `episodic.choose_episode`, as for images and embeddings.
* :class:`TaskPointSampler` draws few-shot regression episodes from tasks that are sets of
  points, ``x [tasks, points, in_dim]`` and ``y [tasks, points, out_dim]``: episode ``e`` is
  one task (every task once, in an order drawn from ``(seed, e // tasks)``, before any task
  twice) with K support and Q query points of it, drawn without replacement from ``(seed, e)``.

So episode ``e`` is a pure function of ``(seed, e)`` in both: a resumed run reads the episodes
it would have read, and every model evaluated with one seed sees the same episodes. Arrays that
cannot serve an episode (too few classes or examples, too few points, NaN, mismatched lengths)
raise a `DatasetError` naming the split and the fix, when the sampler is made.
"""

import hashlib
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from l2f_tf.data import episodic
from l2f_tf.data.episode import Episode
from l2f_tf.data.readers import SPLITS, DatasetError


def check_splits(splits, owner: str, required: Sequence[str] = ("train", "test")
                 ) -> Mapping[str, Tuple[object, object]]:
  """``splits`` ({"train": (x, y), "val": (x, y), "test": (x, y)}) checked as a mapping of
  known split names to pairs, with every ``required`` split; ValueError naming the fix."""
  example = "{'train': (x, y), 'val': (x, y), 'test': (x, y)}"
  if not isinstance(splits, Mapping):
    raise ValueError(f"{owner}.splits must be a dict {example}, got a {type(splits).__name__}.")
  unknown = sorted(str(name) for name in splits if name not in SPLITS)
  if unknown:
    raise ValueError(f"{owner}.splits has the split(s) {unknown}; the names are {SPLITS} "
                     "('val' is optional: validation during training).")
  missing = [name for name in required if name not in splits]
  if missing:
    raise ValueError(f"{owner}.splits has no {' or '.join(repr(m) for m in missing)} split: "
                     f"give {example} (the val split is optional).")
  for name, pair in splits.items():
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
      raise ValueError(f"{owner}.splits[{name!r}] must be a pair (x, y) of arrays, got a "
                       f"{type(pair).__name__}.")
  return {name: tuple(splits[name]) for name in SPLITS if name in splits}


def _inputs(x, where: str, what: str, min_dims: int) -> np.ndarray:
  """``x`` as finite float32 with at least ``min_dims`` axes (DatasetError naming ``where``)."""
  array = np.asarray(x)
  if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or
                                   array.dtype == bool):
    raise DatasetError(f"The {what} of {where} must be numbers, got an array of "
                       f"{array.dtype}.")
  if array.ndim < min_dims:
    raise DatasetError(f"The {what} of {where} have shape {array.shape}, fewer than {min_dims} "
                       "axes" + (": give one row per example (x[:, None] for single numbers)"
                                 if min_dims == 2 else "") + ".")
  array = array.astype(np.float32)
  if not np.all(np.isfinite(array)):
    bad = np.argwhere(~np.isfinite(array))[0]
    raise DatasetError(f"The {what} of {where} hold NaN or infinite values (first at index "
                       f"{tuple(int(i) for i in bad)}): remove or fill them.")
  return array


def fingerprint(splits: Mapping[str, Sequence[np.ndarray]]) -> str:
  """SHA-256 (hex, first 16 digits) of the arrays of every split, their dtypes and shapes: the
  data's identity in a run's settings (another data set is another experiment)."""
  digest = hashlib.sha256()
  for name in sorted(splits):
    digest.update(name.encode())
    for array in splits[name]:
      array = np.ascontiguousarray(array)
      digest.update(f"{array.dtype}{array.shape}".encode())
      digest.update(array.tobytes())
  return digest.hexdigest()[:16]


class ArrayEpisodeSampler(episodic.EpisodeSampler):
  """N-way K-shot episodes of labelled examples held in memory, as float32.

  Args:
    x: examples [n, ...] (numbers; any shape per example).
    y: their labels [n] (integers or strings; each distinct label is a class).
    where: the split's name in messages, e.g. "split 'train' of ArrayClassification.splits".
    num_ways, num_shots, num_queries: N, K and Q.

  Attributes:
    x: the examples as float32; labels: the class labels in class-id order (sorted);
    class_rows: per class id, the rows of its examples in ``x`` (in their order in ``x``).
  """

  def __init__(self, x, y, where: str, num_ways: int, num_shots: int, num_queries: int):
    self.x = _inputs(x, where, "examples x", 2)
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
      labels = labels[:, 0]
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or
                                labels.dtype.kind in "UOb"):
      raise DatasetError(f"The labels y of {where} must be integers [examples], got an array "
                         f"of {labels.dtype} with shape {labels.shape} (class ids, not one-hot "
                         "vectors or regression targets).")
    if len(labels) != len(self.x):
      raise DatasetError(f"{where[:1].upper()}{where[1:]} has {len(self.x)} examples but "
                         f"{len(labels)} labels: give one label per example.")
    self.labels, ids = np.unique(labels, return_inverse=True)
    self.class_rows = [np.flatnonzero(ids == c) for c in range(len(self.labels))]
    super().__init__({str(label): len(rows) for label, rows in zip(self.labels, self.class_rows)},
                     where, num_ways, num_shots, num_queries, items="examples",
                     fix="give that class more examples (or leave it out of the split)")
    self.item_shape = tuple(self.x.shape[1:])

  def _class_items(self, class_id: int, order: np.ndarray) -> np.ndarray:
    return self.x[self.class_rows[class_id][order[:self.num_shots + self.num_queries]]]


class TaskPointSampler:
  """Few-shot regression episodes of tasks given as sets of points, as float32.

  Args:
    x: inputs [tasks, points, in_dim] (or [tasks, points] for one input number).
    y: targets [tasks, points, out_dim] (or [tasks, points]).
    where: the split's name in messages.
    num_support: K, support points per episode.
    num_query: Q, query points per episode; None: all the task's other points.

  Episode ``e`` of the stream ``seed`` (:meth:`choose`): task ``order[e % T]``, where
  ``order`` is a permutation of the T tasks drawn from ``(seed, e // T)``, and its points
  ``permutation[:K]`` (support) and ``permutation[K:K + Q]`` (query), the permutation of its
  points drawn from ``(seed, e)``.
  """

  def __init__(self, x, y, where: str, num_support: int, num_query: Optional[int] = None):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 2:
      x = x[..., None]
    if y.ndim == 2:
      y = y[..., None]
    self.x = _inputs(x, where, "inputs x", 3)
    self.y = _inputs(y, where, "targets y", 3)
    if self.x.ndim != 3 or self.y.ndim != 3 or self.x.shape[:2] != self.y.shape[:2]:
      raise DatasetError(f"{where[:1].upper()}{where[1:]} has inputs x of shape {x.shape} and "
                         f"targets y of shape {y.shape}: give x [tasks, points, in_dim] and y "
                         "[tasks, points, out_dim] with the same tasks and points.")
    self.num_tasks, self.num_points = self.x.shape[:2]
    if num_support < 1 or (num_query is not None and num_query < 1):
      raise ValueError(f"num_shots and num_queries must be >= 1, got {num_support} and "
                       f"{num_query}.")
    if self.num_tasks < 1:
      raise DatasetError(f"{where[:1].upper()}{where[1:]} has no task.")
    needed = num_support + (1 if num_query is None else num_query)
    if self.num_points < needed:
      queries = "at least 1 query point" if num_query is None else f"num_queries={num_query}"
      raise DatasetError(
          f"The tasks of {where} have {self.num_points} points each, fewer than the {needed} "
          f"an episode needs (num_shots={num_support} + {queries}): lower num_shots or "
          "num_queries, or give every task more points.")
    self.num_support = num_support
    self.num_query = self.num_points - num_support if num_query is None else num_query
    self.in_dim, self.out_dim = self.x.shape[2], self.y.shape[2]

  def choose(self, seed: int, episode: int) -> Tuple[int, np.ndarray]:
    """(task id, its K + Q point ids: support first) of episode ``episode``."""
    epoch, position = divmod(int(episode), self.num_tasks)
    order = np.random.default_rng([seed, 1, epoch]).permutation(self.num_tasks)
    points = np.random.default_rng([seed, 0, int(episode)]).permutation(self.num_points)
    return int(order[position]), points[:self.num_support + self.num_query]

  def load(self, seed: int, episode: int):
    """support_x [K, in_dim], support_y [K, out_dim], query_x [Q, in_dim], query_y [Q,
    out_dim] of one episode."""
    task, points = self.choose(seed, episode)
    k = self.num_support
    x, y = self.x[task, points], self.y[task, points]
    return x[:k], y[:k], x[k:], y[k:]

  def episodes(self, seed: int, num_episodes: int) -> Episode:
    """Episodes 0..num_episodes-1 of the stream ``seed`` as one numpy Episode [num_episodes,
    ...]."""
    loaded = [self.load(seed, e) for e in range(num_episodes)]
    return Episode(*(np.stack(field) for field in zip(*loaded)))

  def dataset(self, seed: int, episodes: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches of ``batch_size`` episodes (a static leading task axis) of the stream ``seed``,
    whose numbers the int64 dataset ``episodes`` gives."""
    k, q = self.num_support, self.num_query
    shapes = ([k, self.in_dim], [k, self.out_dim], [q, self.in_dim], [q, self.out_dim])

    def load(index):
      fields = tf.numpy_function(lambda e: self.load(seed, int(e)), [index], [tf.float32] * 4,
                                 stateful=False)
      return Episode(*(tf.ensure_shape(f, s) for f, s in zip(fields, shapes)))

    dataset = episodes.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return episodic.without_autotuning(
        dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

