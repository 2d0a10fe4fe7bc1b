"""The Episode type shared by every supervised domain."""

from typing import NamedTuple

import tensorflow as tf


class Episode(NamedTuple):
  """Support and query sets of one or more tasks.

  In a meta-batch each field has a leading task axis: support_x is [T, K, ...], query_x is
  [T, Q, ...]. For a single task the task axis is absent.
  """
  support_x: tf.Tensor
  support_y: tf.Tensor
  query_x: tf.Tensor
  query_y: tf.Tensor

  @property
  def num_tasks(self) -> int:
    return self.support_x.shape[0]

  @property
  def num_support(self) -> int:
    """Support examples per task (K for regression, N*K for N-way K-shot) of a meta-batch."""
    return self.support_x.shape[1]

  @property
  def num_query(self) -> int:
    """Query examples per task of a meta-batch."""
    return self.query_x.shape[1]

  def task(self, i: int) -> "Episode":
    """The i-th task of a meta-batch."""
    return Episode(*(field[i] for field in self))
