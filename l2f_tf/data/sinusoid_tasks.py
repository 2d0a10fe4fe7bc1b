"""Sinusoid regression tasks (Finn et al. 2017; L2F Table 7), seeded and resumable.

A task is y = A * sin(f * x - phase). Its support and query points x are drawn uniformly from
``x_range``. Every draw uses TensorFlow's stateless RNG keyed by (seed, index), so the episodes
of step s are a pure function of the seed and s: a resumed run sees exactly the tasks an
uninterrupted one would, and evaluation tasks are the same for every model.

Two task distributions are provided, :func:`training_tasks` and :func:`out_of_range_tasks`.
``SinusoidTasks`` is gin-configurable: a binding such as ``SinusoidTasks.amplitude_range``
changes the training (and "test") distribution, and the out-of-range one only where it does not
set a range itself (``x_range``).
  * ``training`` (the paper's): A ~ U[0.1, 5.0], phase ~ U[0, pi], f = 1, x ~ U[-5, 5];
  * ``out_of_range`` (ours; the paper did not publish its ranges), disjoint from training in
    every task parameter: A ~ U[5.0, 7.5], phase ~ U[pi, 1.5 pi], f ~ U[1.25, 1.5],
    x ~ U[-5, 5] (same inputs, so only the task differs).
"""

import math
from typing import NamedTuple, Tuple

import gin
import tensorflow as tf

from l2f_tf.data import episodic
from l2f_tf.data.episode import Episode


class SinusoidParameters(NamedTuple):
  """Per-task parameters, each of shape [T]."""
  amplitude: tf.Tensor
  phase: tf.Tensor
  frequency: tf.Tensor


def _check_range(name: str, value: Tuple[float, float]) -> Tuple[float, float]:
  low, high = (float(v) for v in value)
  if high < low:
    raise ValueError(f"SinusoidTasks.{name} must be (low, high) with low <= high, got {value}.")
  return low, high


@gin.configurable
class SinusoidTasks:
  """A distribution of sinusoid tasks.

  Args:
    amplitude_range: (low, high) of A.
    phase_range: (low, high) of the phase.
    frequency_range: (low, high) of f; (1, 1) fixes it at 1 as in the paper.
    x_range: (low, high) of the inputs.
  """

  def __init__(self, amplitude_range=(0.1, 5.0), phase_range=(0.0, math.pi),
               frequency_range=(1.0, 1.0), x_range=(-5.0, 5.0)):
    self.amplitude_range = _check_range("amplitude_range", amplitude_range)
    self.phase_range = _check_range("phase_range", phase_range)
    self.frequency_range = _check_range("frequency_range", frequency_range)
    self.x_range = _check_range("x_range", x_range)

  @staticmethod
  def function(params: SinusoidParameters, x: tf.Tensor) -> tf.Tensor:
    """y = A sin(f x - phase), with params broadcast over the trailing axes of x ([T, N, 1])."""
    a, p, f = (tf.reshape(tf.cast(t, x.dtype), [-1, 1, 1]) for t in params)
    return a * tf.sin(f * x - p)

  def sample_parameters(self, num_tasks: int, seed) -> SinusoidParameters:
    """Task parameters for ``num_tasks`` tasks from a stateless seed (shape [2] int)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    draw = lambda s, r: tf.random.stateless_uniform([num_tasks], s, r[0], r[1])
    return SinusoidParameters(draw(seeds[0], self.amplitude_range),
                              draw(seeds[1], self.phase_range),
                              draw(seeds[2], self.frequency_range))

  def sample(self, num_tasks: int, num_support: int, num_query: int, seed,
             dtype=tf.float32) -> Tuple[Episode, SinusoidParameters]:
    """A meta-batch of episodes: x and y have shapes [T, K, 1] and [T, Q, 1]."""
    seed = tf.convert_to_tensor(seed, tf.int64)
    task_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    params = self.sample_parameters(num_tasks, task_seed)
    x = tf.random.stateless_uniform([num_tasks, num_support + num_query, 1], x_seed,
                                    self.x_range[0], self.x_range[1])
    y = self.function(params, x)
    x, y = tf.cast(x, dtype), tf.cast(y, dtype)
    episode = Episode(x[:, :num_support], y[:, :num_support], x[:, num_support:],
                      y[:, num_support:])
    return episode, params


def training_tasks() -> SinusoidTasks:
  """The paper's distribution."""
  return SinusoidTasks()


def out_of_range_tasks() -> SinusoidTasks:
  """Our disjoint test distribution (see the module docstring)."""
  return SinusoidTasks(amplitude_range=(5.0, 7.5), phase_range=(math.pi, 1.5 * math.pi),
                       frequency_range=(1.25, 1.5))


def episode_seed(seed: int, index) -> tf.Tensor:
  """The stateless seed of episode batch ``index`` of a stream seeded with ``seed``."""
  return tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])


def episode_dataset(tasks: SinusoidTasks, num_tasks: int, num_support: int, num_query: int,
                    seed: int, start_index: int = 0, dtype=tf.float32) -> tf.data.Dataset:
  """An endless stream of meta-batches; element s is a function of (seed, start_index + s) only."""

  def make(index):
    episode, _ = tasks.sample(num_tasks, num_support, num_query, episode_seed(seed, index),
                              dtype=dtype)
    return episode

  return episodic.without_autotuning(
      tf.data.Dataset.range(start_index, 2**62)
      .map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      .prefetch(tf.data.AUTOTUNE))
