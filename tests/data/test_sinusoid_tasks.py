"""Sinusoid task generator: seeded, resumable, in range; out-of-range distribution disjoint."""

import math

import numpy as np
import pytest

from l2f_tf.data import sinusoid_tasks


def test_same_seed_same_tasks_other_seed_other_tasks():
  tasks = sinusoid_tasks.training_tasks()
  a, pa = tasks.sample(4, 5, 7, sinusoid_tasks.episode_seed(0, 3))
  b, pb = tasks.sample(4, 5, 7, sinusoid_tasks.episode_seed(0, 3))
  c, _ = tasks.sample(4, 5, 7, sinusoid_tasks.episode_seed(1, 3))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
  assert not np.allclose(a.support_x.numpy(), c.support_x.numpy())
  assert a.support_x.shape == (4, 5, 1) and a.query_y.shape == (4, 7, 1)
  assert a.support_y.shape == (4, 5, 1) and a.query_x.shape == (4, 7, 1)


def test_labels_are_the_sinusoid_of_the_inputs():
  episode, params = sinusoid_tasks.training_tasks().sample(3, 10, 10,
                                                          sinusoid_tasks.episode_seed(2, 0))
  x = episode.support_x.numpy()[..., 0]
  a, p, f = (t.numpy()[:, None] for t in params)
  np.testing.assert_allclose(episode.support_y.numpy()[..., 0], a * np.sin(f * x - p),
                             rtol=1e-5, atol=1e-5)


def test_parameters_in_documented_ranges_and_out_of_range_is_disjoint():
  _, train = sinusoid_tasks.training_tasks().sample(2000, 1, 1, sinusoid_tasks.episode_seed(0, 0))
  _, ood = sinusoid_tasks.out_of_range_tasks().sample(2000, 1, 1, sinusoid_tasks.episode_seed(0, 0))
  assert 0.1 <= train.amplitude.numpy().min() and train.amplitude.numpy().max() <= 5.0
  assert 0 <= train.phase.numpy().min() and train.phase.numpy().max() <= math.pi
  np.testing.assert_array_equal(train.frequency.numpy(), 1.0)
  assert ood.amplitude.numpy().min() >= 5.0 and ood.phase.numpy().min() >= math.pi
  assert ood.frequency.numpy().min() >= 1.25


def test_stream_element_depends_only_on_its_index():
  tasks = sinusoid_tasks.training_tasks()
  full = list(sinusoid_tasks.episode_dataset(tasks, 2, 3, 3, seed=5).take(4))
  resumed = list(sinusoid_tasks.episode_dataset(tasks, 2, 3, 3, seed=5, start_index=2).take(2))
  for x, y in zip(full[2], resumed[0]):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_bad_range_is_reported():
  with pytest.raises(ValueError, match="amplitude_range"):
    sinusoid_tasks.SinusoidTasks(amplitude_range=(5.0, 1.0))
