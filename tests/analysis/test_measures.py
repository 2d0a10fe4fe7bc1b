"""Checkpoint measures of l2f_tf.analysis on sinusoid learners, and reading summaries back."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.analysis import measures, summaries
from l2f_tf.data.episode import Episode
from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta import diagnostics
from l2f_tf.meta import predictions
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner


def sinusoid_learner(l2f=False):
  domain = SinusoidRegression(num_shots=5, num_query_eval=10)
  keras.utils.set_random_seed(0)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=2, inner_lr=0.01,
                        attenuation=TaskConditionedAttenuation() if l2f else None)
  return domain, learner


def test_layers_group_their_tensors_in_network_order():
  paths = ["dense1/kernel", "dense1/bias", "dense2/kernel", "dense2/bias", "output/kernel"]
  assert measures.layer_groups(paths) == {"dense1": [0, 1], "dense2": [2, 3], "output": [4]}


def test_sweep_at_gamma_one_reproduces_the_evaluation_exactly_and_restores_the_weights():
  domain, learner = sinusoid_learner()
  episodes = domain.eval_batches("test", 12)
  before = [v.numpy().copy() for v in learner.inner_variables]
  sweep = measures.attenuation_sweep(learner, episodes, domain.task_metric, num_steps=2,
                                     gammas_to_try=(0.0, 0.5, 1.0))
  evaluated = predictions.per_task_metrics(learner, episodes, domain.task_metric, 2)[:, 2]
  assert sweep["layers"] == ["dense1", "dense2", "output"]
  assert sweep["values"].shape == (3, 3, 12)
  for row in range(3):
    np.testing.assert_array_equal(sweep["values"][row, 2], evaluated)  # Bit for bit.
    assert sweep["paired_difference"][row][2]["mean"] == 0.0
  np.testing.assert_array_equal(sweep["reference"], evaluated)
  for variable, value in zip(learner.inner_variables, before):
    np.testing.assert_array_equal(variable.numpy(), value)
  assert not np.allclose(sweep["values"][0, 0], evaluated)  # Scaling changes something.


def test_sweep_with_the_output_layer_zeroed_and_no_steps_predicts_zero():
  domain, learner = sinusoid_learner()
  episodes = domain.eval_batches("test", 6)
  sweep = measures.attenuation_sweep(learner, episodes, domain.task_metric, num_steps=0,
                                     gammas_to_try=(0.0,))
  expected = np.mean(np.square(episodes.query_y.numpy()), axis=(1, 2))  # MSE of predicting 0.
  np.testing.assert_allclose(sweep["values"][2, 0], expected, rtol=1e-5)


def test_gammas_are_the_learners_attenuation_of_each_task():
  domain, learner = sinusoid_learner(l2f=True)
  episodes = domain.eval_batches("test", 5)
  gammas = measures.gammas(learner, episodes, chunk_size=2)
  assert gammas.shape == (5, len(learner.inner_variables))
  for t in range(5):
    _, gamma = learner.attenuate(episodes.support_x[t], episodes.support_y[t])
    np.testing.assert_allclose(gammas[t], gamma.numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match="no attenuation"):
    measures.gammas(sinusoid_learner()[1], episodes)


def test_identical_tasks_have_no_conflict_and_different_ones_do():
  domain, learner = sinusoid_learner()
  episodes = domain.eval_batches("test", 4)
  same = Episode(*[tf.concat([f[:1]] * 4, axis=0) for f in episodes])
  # One call (one trace) on both: 4 copies of one task, then 4 different tasks; the meta-batches
  # of 2 are consecutive, so none mixes the two halves.
  both = measures.per_task_conflicts(learner, Episode(*[tf.concat([a, b], axis=0)
                                                        for a, b in zip(same, episodes)]), 2)
  np.testing.assert_allclose(both[:4], 0.0, atol=0.05)
  angles = both[4:]
  assert both.shape == (8, len(learner.inner_variables))
  assert np.all(angles[:, 0] > 1.0)
  # Each meta-batch of 2 is its own group: the mean of its rows is the logged degree.
  gradients = learner.per_task_meta_gradients(Episode(*[f[2:4] for f in episodes]))
  np.testing.assert_allclose(angles[2:].mean(axis=0),
                             diagnostics.degree_of_conflict(gradients).numpy(), rtol=1e-4)
  with pytest.raises(ValueError, match="at least 2"):
    measures.per_task_conflicts(learner, episodes, 1)


def test_meta_batches_regroup_batches_of_any_size():
  episodes = Episode(*[tf.reshape(tf.range(7 * 2, dtype=tf.float32), [7, 2])] * 4)
  pieces = [Episode(*[f[:3] for f in episodes]), Episode(*[f[3:] for f in episodes])]
  groups = list(measures.meta_batches(pieces, 2))
  assert [int(g.support_x.shape[0]) for g in groups] == [2, 2, 2]  # The 7th is dropped.
  np.testing.assert_array_equal(tf.concat([g.support_x for g in groups], 0).numpy(),
                                episodes.support_x[:6].numpy())


def test_landscapes_have_one_row_per_task():
  domain, learner = sinusoid_learner(l2f=True)
  episodes = domain.eval_batches("test", 3)
  rows = measures.landscapes(learner, episodes, chunk_size=2)
  assert rows.shape == (3, len(diagnostics.LANDSCAPE_MEASURES))
  np.testing.assert_allclose(
      rows[1], diagnostics.task_landscape(learner, episodes.support_x[1],
                                       episodes.support_y[1]).numpy(), rtol=1e-5)


def test_summaries_read_back_with_the_later_file_winning_and_a_cut_file_tolerated(tmp_path):
  directory = str(tmp_path)
  for values in ({1: 1.0, 2: 2.0}, {2: 20.0, 3: 30.0}):  # A resumed run rewrites step 2.
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
      for step, value in values.items():
        tf.summary.scalar("degree_of_conflict/dense1/kernel", value, step=step)
        tf.summary.scalar("meta_loss", -value, step=step)
      tf.summary.histogram("inner_lr", [1.0, 2.0], step=1)
    writer.close()
    os.utime(directory)
  series = summaries.read_scalars(directory)
  steps, values = series["degree_of_conflict/dense1/kernel"]
  np.testing.assert_array_equal(steps, [1, 2, 3])
  np.testing.assert_array_equal(values, [1.0, 20.0, 30.0])
  assert "inner_lr" not in series
  assert list(summaries.per_tensor(series, "degree_of_conflict")) == ["dense1/kernel"]
  # A kill while writing leaves a cut record: the file is read up to it.
  path = sorted(p for p in os.listdir(directory))[-1]
  with open(os.path.join(directory, path), "ab") as f:
    f.write(b"\x05\x00\x00")
  assert "meta_loss" in summaries.read_scalars(directory, prefix="meta")
  with pytest.raises(ValueError, match="no TensorBoard event file"):
    summaries.read_scalars(str(tmp_path / "empty"))
