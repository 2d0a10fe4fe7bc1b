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
