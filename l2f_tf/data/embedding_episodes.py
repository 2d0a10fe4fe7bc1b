"""Episodic tf.data pipeline over pre-computed image embeddings (LEO's input).

Episode ``e`` of the stream ``seed`` chooses its classes and rows with
`episodic.choose_episode`, exactly as `episodic.EpisodeSampler` chooses classes and images:
for a split whose classes, and rows per class, are in the order of an image split's classes
and images (what `l2f_tf.embed` writes), episode ``e`` holds the embeddings of exactly the
images the image pipeline's episode ``e`` holds. A model trained on embeddings is so evaluated
on the very tasks of a model trained on the images (paired comparisons).

The whole split lives in memory (tieredImageNet's 448k x 640 train embeddings take 1.1 GB);
an episode is a numpy gather of N * (K + Q) rows, optionally L2-normalised per row as in LEO's
reference pipeline (``x / max(||x||, 1e-6)``, the ``tf.math.l2_normalize`` formula).

Layout of one episode (labels 0..N-1 in the chosen class order; class-major):
  support_x [N*K, D] float32, support_y [N*K] int32,
  query_x   [N*Q, D] float32, query_y   [N*Q] int32.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.data.episodic import check_episode_shape, choose_episode
from l2f_tf.data.readers.common import DatasetError
from l2f_tf.data.readers.leo_embeddings import EmbeddingSplit

_EPSILON = 1e-12  # tf.math.l2_normalize's: on the squared norm.


def l2_normalize(x: np.ndarray) -> np.ndarray:
  """Each row divided by its L2 norm (numpy; the formula of ``tf.math.l2_normalize``)."""
  x = np.asarray(x, np.float32)
  squared = np.sum(np.square(x), axis=-1, keepdims=True)
  return x / np.sqrt(np.maximum(squared, np.float32(_EPSILON)))


def l2_normalize_tf(x: tf.Tensor) -> tf.Tensor:
  """Each row divided by its L2 norm, in TensorFlow (an exported model's preprocessing)."""
  return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1, epsilon=_EPSILON)


class EmbeddingEpisodeSampler:
  """Chooses and gathers the rows of episode ``e`` from ``(seed, e)`` alone.

  Args:
    split: the split's embeddings (`leo_embeddings.load_embedding_split`).
    num_ways: N, classes per episode.
    num_shots: K, support rows per class.
    num_queries: Q, query rows per class.

  Raises:
    DatasetError: if the split has fewer than N classes or a class fewer than K + Q rows.
  """

  def __init__(self, split: EmbeddingSplit, num_ways: int, num_shots: int, num_queries: int):
    check_episode_shape(num_ways, num_shots, num_queries)
    check_episode_sizes(split, num_ways, num_shots, num_queries)
    self.split = split
    self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
    self._sizes = split.class_sizes

  @property
  def embedding_dim(self) -> int:
    return self.split.embedding_dim

  def choose(self, seed: int, episode: int) -> Tuple[np.ndarray, list]:
    """(class ids [N] in label order, per class a permutation of its rows' positions)."""
    return choose_episode(seed, episode, self._sizes, self.num_ways)

  def rows(self, seed: int, episode: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row ids of the episode's support [N*K] and query [N*Q] sets (class-major)."""
    class_ids, orders = self.choose(seed, episode)
    k, q = self.num_shots, self.num_queries
    chosen = np.stack([self.split.class_rows[c][order[:k + q]]
                       for c, order in zip(class_ids, orders)])
    return chosen[:, :k].reshape(-1), chosen[:, k:].reshape(-1)

  def load(self, seed: int, episode: int, l2_normalize_rows: bool = True):
    """float32 support_x, int32 support_y, float32 query_x, int32 query_y of one episode."""
    support, query = self.rows(seed, episode)
    support_x, query_x = self.split.embeddings[support], self.split.embeddings[query]
    if l2_normalize_rows:
      support_x, query_x = l2_normalize(support_x), l2_normalize(query_x)
    labels = lambda m: np.repeat(np.arange(self.num_ways, dtype=np.int32), m)
    return support_x, labels(self.num_shots), query_x, labels(self.num_queries)


def check_episode_sizes(split: EmbeddingSplit, num_ways: int, num_shots: int,
                        num_queries: int) -> None:
  """Raises DatasetError naming the file and the fix if the split cannot give every episode
  N classes of K + Q rows."""
  if len(split.class_names) < num_ways:
    raise DatasetError(
        f"{split.path} has {len(split.class_names)} classes, fewer than the {num_ways} ways "
        f"requested: lower num_ways to at most {len(split.class_names)} or check the file.")
  needed = num_shots + num_queries
  short = [(len(rows), name) for name, rows in zip(split.class_names, split.class_rows)
           if len(rows) < needed]
  if short:
    count, name = min(short)
    others = f" (and {len(short) - 1} other classes)" if len(short) > 1 else ""
    raise DatasetError(
        f"Class {name!r} of {split.path} has {count} embeddings{others}, fewer than the "
        f"{needed} needed per class (num_shots={num_shots} + num_queries={num_queries}): lower "
        "num_shots or num_queries, or write the file with more images per class.")


def embedding_episode_dataset(sampler: EmbeddingEpisodeSampler, seed: int, start: int = 0,
                              num_episodes: Optional[int] = None, batch_size: int = 1,
                              drop_remainder: bool = True, l2_normalize_rows: bool = True,
                              prefetch: bool = True,
                              episodes: Optional[tf.data.Dataset] = None) -> tf.data.Dataset:
  """Batches of episodes ``start, start+1, ...`` (or the numbers in ``episodes``) of the
  stream ``seed``; the arguments are those of `episodic.episode_dataset`.

  Args:
    sampler: the split's :class:`EmbeddingEpisodeSampler`.
    seed: the stream's seed.
    start: first episode number (training resumes at step * meta_batch_size).
    num_episodes: episodes in total, or None for an endless stream.
    batch_size: episodes per element (fields get a leading task axis).
    drop_remainder: drop a last incomplete batch.
    l2_normalize_rows: divide every embedding by its L2 norm (LEO's reference does); False
      gives the embeddings as stored (what an exported model, which normalises inside, gets).
    prefetch: prefetch batches in the background.
    episodes: a dataset of int64 episode numbers to load instead of ``start`` and
      ``num_episodes`` (a worker's share of each meta-batch).

  Returns:
    A dataset of :class:`Episode` with fixed shapes.
  """
  d = sampler.embedding_dim
  n, k, q = sampler.num_ways, sampler.num_shots, sampler.num_queries

  def load(index):
    support_x, support_y, query_x, query_y = tf.numpy_function(
        lambda e: sampler.load(seed, int(e), l2_normalize_rows), [index],
        [tf.float32, tf.int32, tf.float32, tf.int32], stateful=False)
    return Episode(tf.ensure_shape(support_x, [n * k, d]), tf.ensure_shape(support_y, [n * k]),
                   tf.ensure_shape(query_x, [n * q, d]), tf.ensure_shape(query_y, [n * q]))

  if episodes is not None:
    dataset = episodes
  elif num_episodes is None:
    dataset = tf.data.Dataset.counter(start)
  else:
    dataset = tf.data.Dataset.range(start, start + num_episodes)
  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset
