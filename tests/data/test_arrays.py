"""Episodes from arrays in memory (l2f_tf.data.arrays): what an episode holds, that episode e is
a pure function of (seed, e), and the errors that name the fix."""

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data import arrays, episodic
from l2f_tf.data.readers import DatasetError


def labelled(num_classes=6, per_class=5, dim=3):
  """Examples whose first feature is 100 * label + the example's index in its class, with the
  classes interleaved (so a sampler must group rows by label)."""
  y = np.tile(np.arange(num_classes), per_class)
  index = np.repeat(np.arange(per_class), num_classes)
  x = np.zeros((len(y), dim), np.float64)
  x[:, 0] = 100 * y + index
  return x, y


def points(num_tasks=4, num_points=9, in_dim=1, out_dim=2):
  """x = 1000 * task + point (each point identifiable); y = its task and point."""
  x = (1000 * np.arange(num_tasks)[:, None] + np.arange(num_points)[None]).astype(np.float32)
  x = np.repeat(x[..., None], in_dim, -1)
  y = np.stack([np.repeat(np.arange(num_tasks)[:, None], num_points, 1),
                np.tile(np.arange(num_points), (num_tasks, 1))], -1)[..., :out_dim]
  return x, y.astype(np.float32)


def test_a_classification_episode_holds_k_then_q_examples_of_n_classes():
  x, y = labelled()
  sampler = arrays.ArrayEpisodeSampler(x, y, "split 'train' of test", 3, 2, 2)
  assert sampler.item_shape == (3,) and sampler.dtype == tf.float32
  support_x, support_y, query_x, query_y = sampler.load(seed=5, episode=7)
  assert support_x.shape == (6, 3) and query_x.shape == (6, 3) and support_x.dtype == np.float32
  np.testing.assert_array_equal(support_y, [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(query_y, [0, 0, 1, 1, 2, 2])
  class_ids, orders = sampler.choose(5, 7)
  for label in range(3):  # label l is class class_ids[l]: its K supports, then its Q queries
    rows = np.concatenate([support_x[2 * label:2 * label + 2], query_x[2 * label:2 * label + 2]])
    np.testing.assert_array_equal(rows[:, 0] // 100, class_ids[label])
    np.testing.assert_array_equal(rows[:, 0] % 100, orders[label][:4])
    assert len(set(rows[:, 0])) == 4  # drawn without replacement


def test_classification_episodes_are_pure_functions_of_seed_and_number():
  x, y = labelled()
  one = arrays.ArrayEpisodeSampler(x, y, "a", 3, 1, 2)
  other = arrays.ArrayEpisodeSampler(x, y, "a", 3, 1, 2)
  for field_a, field_b in zip(one.load(3, 11), other.load(3, 11)):
    np.testing.assert_array_equal(field_a, field_b)
  # Loading other episodes first changes nothing; another episode or seed is another draw.
  one.load(3, 12)
  np.testing.assert_array_equal(one.load(3, 11)[0], other.load(3, 11)[0])
  assert not np.array_equal(one.load(3, 11)[0], one.load(3, 12)[0])
  assert not np.array_equal(one.load(3, 11)[0], one.load(4, 11)[0])
  # Through the tf.data pipeline of the image domains: episode 11 of the stream is the same.
  dataset = episodic.episode_dataset(one, 3, start=11, num_episodes=1)
  np.testing.assert_array_equal(next(iter(dataset)).support_x[0], one.load(3, 11)[0])


def test_string_labels_and_column_labels_are_classes():
  x, y = labelled(num_classes=3)
  named = np.array(["cat", "dog", "owl"])[y]
  sampler = arrays.ArrayEpisodeSampler(x, named, "a", 3, 1, 1)
  assert list(sampler.labels) == ["cat", "dog", "owl"]
  assert arrays.ArrayEpisodeSampler(x, y[:, None], "a", 3, 1, 1).labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x, y), r"Class '5' in split 'train' of S has 3 examples, fewer than the 4 "
     r"needed per class \(num_shots=2 \+ num_queries=2\): lower num_shots or num_queries, or "
     r"give that class more examples"),
    (lambda x, y: (x[y < 2], y[y < 2]), r"Split 'train' of S has 2 classes, fewer than the 3 "
     r"ways requested: lower num_ways to at most 2"),
    (lambda x, y: (x, y.astype(float)), r"labels y of split 'train' of S must be integers"),
    (lambda x, y: (x, y[:-1]), r"has 23 examples but 22 labels"),
    (lambda x, y: (x[:, 0], y), r"fewer than 2 axes: give one row per example"),
    (lambda x, y: (np.where(np.arange(len(x))[:, None] == 4, np.nan, x), y),
     r"hold NaN or infinite values \(first at index \(4, 0\)\)"),
])
def test_classification_arrays_that_cannot_serve_an_episode_name_the_fix(change, message):
  x, y = labelled(per_class=4)  # 24 examples; class 5 loses its last one: 3 examples
  x, y = change(x[:-1], y[:-1])
  with pytest.raises(DatasetError, match=message):
    arrays.ArrayEpisodeSampler(x, y, "split 'train' of S", 3, 2, 2)


def test_a_regression_episode_is_k_and_q_distinct_points_of_one_task():
  x, y = points()
  sampler = arrays.TaskPointSampler(x, y, "a", num_support=3, num_query=4)
  support_x, support_y, query_x, query_y = sampler.load(seed=2, episode=5)
  assert support_x.shape == (3, 1) and support_y.shape == (3, 2)
  assert query_x.shape == (4, 1) and query_y.shape == (4, 2)
  task, chosen = sampler.choose(2, 5)
  np.testing.assert_array_equal(support_y[:, 0], task)  # all of one task
  np.testing.assert_array_equal(query_y[:, 0], task)
  np.testing.assert_array_equal(np.concatenate([support_y[:, 1], query_y[:, 1]]), chosen)
  assert len(set(chosen)) == 7
  np.testing.assert_array_equal(support_x[:, 0], 1000 * task + chosen[:3])  # x matches y
  # None: every point that is not a support point is a query point.
  every = arrays.TaskPointSampler(x, y, "a", num_support=3)
  assert every.num_query == 6 and every.load(2, 5)[2].shape == (6, 1)


def test_regression_episodes_visit_every_task_once_before_any_twice_and_are_pure():
  x, y = points(num_tasks=5)
  sampler = arrays.TaskPointSampler(x, y, "a", 2, 2)
  tasks = [sampler.choose(9, e)[0] for e in range(10)]
  assert sorted(tasks[:5]) == sorted(tasks[5:]) == list(range(5))
  again = arrays.TaskPointSampler(x, y, "a", 2, 2)
  assert [again.choose(9, e)[0] for e in (7, 3)] == [tasks[7], tasks[3]]
  np.testing.assert_array_equal(again.load(9, 7)[3], sampler.load(9, 7)[3])
  assert [sampler.choose(10, e)[0] for e in range(5)] != tasks[:5] or \
      not np.array_equal(sampler.choose(10, 0)[1], sampler.choose(9, 0)[1])
  # The batched stream: batch s holds episodes s*T .. s*T+T-1, wherever it starts.
  numbers = episodic.meta_batch_episodes(start_step=2, meta_batch_size=3)
  batch = next(iter(sampler.dataset(9, numbers, 3)))
  assert batch.support_x.shape == (3, 2, 1)
  np.testing.assert_array_equal(batch.query_y[1], sampler.load(9, 7)[3])


@pytest.mark.parametrize("x_shape, y_shape, message", [
    ((3, 4, 1), (3, 4, 1), r"have 4 points each, fewer than the 5 an episode needs "
     r"\(num_shots=2 \+ num_queries=3\): lower num_shots or num_queries, or give every task "
     r"more points"),
    ((3, 6, 1), (3, 5, 1), r"inputs x of shape \(3, 6, 1\) and targets y of shape \(3, 5, 1\)"),
    ((6,), (6,), r"inputs x of split 'test' of S have shape \(6,\), fewer than 3 axes"),
])
def test_regression_arrays_that_cannot_serve_an_episode_name_the_fix(x_shape, y_shape, message):
  with pytest.raises(DatasetError, match=message):
    arrays.TaskPointSampler(np.zeros(x_shape), np.zeros(y_shape), "split 'test' of S", 2, 3)


def test_splits_are_checked_by_name():
  pair = (np.zeros((2, 1)), np.zeros(2))
  assert list(arrays.check_splits({"test": pair, "train": pair}, "D")) == ["train", "test"]
  with pytest.raises(ValueError, match=r"D.splits has no 'test' split"):
    arrays.check_splits({"train": pair}, "D")
  with pytest.raises(ValueError, match=r"D.splits has the split\(s\) \['validation'\]"):
    arrays.check_splits({"train": pair, "test": pair, "validation": pair}, "D")
  with pytest.raises(ValueError, match=r"D.splits\['train'\] must be a pair \(x, y\)"):
    arrays.check_splits({"train": pair[0], "test": pair}, "D")
  with pytest.raises(ValueError, match=r"must be a dict"):
    arrays.check_splits([pair], "D")


def test_the_fingerprint_tells_data_apart():
  x, y = labelled()
  base = arrays.fingerprint({"train": (x, y)})
  assert arrays.fingerprint({"train": (x.copy(), y.copy())}) == base
  x[0, 1] += 1e-3
  assert arrays.fingerprint({"train": (x, y)}) != base
