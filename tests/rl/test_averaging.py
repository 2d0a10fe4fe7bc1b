"""Per-trajectory vs per-step averaging of the meta-RL losses, KL and advantage normalisation.

MAML-RL averages every quantity within each trajectory, then over trajectories; per-step
averaging (over all valid steps) weighs a trajectory by its length. The two differ as soon as
trajectories end early (2D navigation at the goal). The expected values here are written out
with numpy from those definitions, on trajectories of lengths 4, 2 and 1.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.rl import maml_trpo
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import returns as returns_lib
from l2f_tf.rl.sampler import Trajectories

LENGTHS = np.array([4, 2, 1])
H = 4
MASK = (np.arange(H)[None, :] < LENGTHS[:, None]).astype(np.float64)  # [N, H]
RNG = np.random.default_rng(7)


def per_trajectory_mean(values):
  """MAML-RL: the mean over each trajectory's valid steps, then over trajectories."""
  return np.mean([values[i, :n].mean() for i, n in enumerate(LENGTHS)])


def per_step_mean(values):
  return (values * MASK).sum() / MASK.sum()


def numpy_log_prob(actions, mean, log_std):
  z = (actions - mean) / np.exp(log_std)
  return np.sum(-0.5 * z ** 2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def numpy_kl(mean_p, log_std_p, mean_q, log_std_q):
  var_p, var_q = np.exp(2 * log_std_p), np.exp(2 * log_std_q)
  return np.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5,
                axis=-1)


def test_step_weights_by_hand():
  by_trajectory = returns_lib.step_weights(tf.constant(MASK)).numpy()
  np.testing.assert_allclose(by_trajectory, [[0.25] * 4, [0.5, 0.5, 0, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(returns_lib.step_weights(tf.constant(MASK), "step"), MASK)
  with pytest.raises(ValueError, match="averaging must be one of"):
    returns_lib.step_weights(tf.constant(MASK), "episode")


@pytest.mark.parametrize("averaging", ["trajectory", "step"])
def test_losses_and_kl_average_as_configured(averaging):
  expected_mean = per_trajectory_mean if averaging == "trajectory" else per_step_mean
  actions = RNG.normal(size=(3, H, 2))
  advantages = RNG.normal(size=(3, H)) * MASK
  output = RNG.normal(size=(3, H, 4)) * 0.3
  old = RNG.normal(size=(3, H, 4)) * 0.3
  weights = returns_lib.step_weights(tf.constant(MASK), averaging)
  y = tf.reshape(pg.pack_targets(tf.constant(actions), tf.constant(advantages), weights),
                 [3 * H, 4])
  flat = lambda a: tf.constant(a.reshape(3 * H, -1))
  log_p = numpy_log_prob(actions, output[..., :2], output[..., 2:])
  old_log_p = numpy_log_prob(actions, old[..., :2], old[..., 2:])
  assert float(pg.reinforce_loss(y, flat(output))) == pytest.approx(
      -expected_mean(log_p * advantages), rel=1e-10)
  assert float(pg.lvc_loss(y, flat(output))) == pytest.approx(
      -expected_mean(advantages), rel=1e-10)
  assert np.all(np.isfinite(np.exp(log_p - old_log_p)))
  surrogate = pg.surrogate_loss(y, flat(output), tf.constant(old_log_p.reshape(-1)))
  assert float(surrogate) == pytest.approx(
      -expected_mean(np.exp(log_p - old_log_p) * advantages), rel=1e-10)
  kl = pg.mean_kl(flat(old), flat(output), pg.unpack_targets(y)[2])
  assert float(kl) == pytest.approx(expected_mean(
      numpy_kl(old[..., :2], old[..., 2:], output[..., :2], output[..., 2:])), rel=1e-10)


def test_the_two_averagings_differ_on_early_ends_and_agree_on_full_trajectories():
  values = RNG.normal(size=(3, H)) * MASK
  assert abs(per_trajectory_mean(values) - per_step_mean(values)) > 1e-3
  full = tf.constant(np.ones((3, H)))
  np.testing.assert_allclose(returns_lib.step_weights(full) * H, full)  # w = 1/H everywhere


def test_advantage_normalisation_per_trajectory_matches_maml_rl():
  advantages = RNG.normal(size=(3, H)) * 2.0 + 1.0
  got = returns_lib.normalize_advantages(
      tf.constant(advantages), returns_lib.step_weights(tf.constant(MASK))).numpy()
  # MAML-RL's weighted_normalize, written out: mean and variance per trajectory, then averaged.
  mean = per_trajectory_mean(advantages)
  centred = (advantages - mean) * MASK
  std = math.sqrt(per_trajectory_mean(centred ** 2))
  np.testing.assert_allclose(got, centred / (std + 1e-8), rtol=1e-10)
  assert per_trajectory_mean(got) == pytest.approx(0.0, abs=1e-12)
  assert abs(per_step_mean(got)) > 1e-3  # not zero-mean over steps


@pytest.mark.parametrize("averaging", ["trajectory", "step"])
def test_task_batch_packs_the_averaging_weights(averaging):
  obs = RNG.normal(size=(1, 3, H, 2))
  mask = MASK[None]
  trajectories = Trajectories(obs * mask[..., None], np.zeros((1, 3, H, 2)),
                              RNG.normal(size=(1, 3, H)) * mask, mask, int(mask.sum()))
  batch = maml_trpo.to_task_batch(trajectories, dtype=tf.float64, averaging=averaging)
  _, advantages, weights = pg.unpack_targets(batch.y[0])
  expected = returns_lib.step_weights(tf.constant(MASK), averaging).numpy().reshape(-1)
  np.testing.assert_allclose(weights.numpy(), expected)
  mean = per_trajectory_mean if averaging == "trajectory" else per_step_mean
  assert mean(advantages.numpy().reshape(3, H)) == pytest.approx(0.0, abs=1e-9)
