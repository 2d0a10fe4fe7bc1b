"""Tests of returns, the linear feature baseline, GAE and normalisation on padded batches."""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow is imported)

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.rl import returns as returns_lib

DTYPES = [np.float32, np.float64]
# Two episodes of horizon 4: the first runs to the horizon, the second ends at step 1.
REWARDS = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 99.0, 99.0]]
MASK = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]


def tol(dtype):
  return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def batch(dtype, seed=0, num=5, horizon=7, obs_dim=3, lengths=(7, 3, 5, 1, 7)):
  rng = np.random.default_rng(seed)
  mask = (np.arange(horizon)[None, :] < np.array(lengths)[:, None]).astype(dtype)
  rewards = rng.normal(size=(num, horizon)).astype(dtype)
  observations = (3 * rng.normal(size=(num, horizon, obs_dim))).astype(dtype)
  observations[0, 0, 0] = 25.0  # clipped to 10 by the features
  return observations, rewards, mask


def numpy_discounted(values, mask, factor):
  """Reference backward recursion, stopping at the end of every episode."""
  out = np.zeros_like(values)
  for n in range(values.shape[0]):
    running = 0.0
    for t in reversed(range(values.shape[1])):
      running = (values[n, t] + factor * running) * mask[n, t]
      out[n, t] = running
  return out


# --- discounted returns ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_discounted_returns_hand_computed(dtype):
  rewards, mask = np.array(REWARDS, dtype), np.array(MASK, dtype)
  got = returns_lib.discounted_returns(tf.constant(rewards), tf.constant(mask), 0.5).numpy()
  expected = [[1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4.0],
              [5 + 0.5 * 6, 6.0, 0.0, 0.0]]
  assert got.dtype == dtype
  np.testing.assert_allclose(got, expected, **tol(dtype))


@pytest.mark.parametrize("discount", [0.0, 0.99, 1.0])
def test_discounted_returns_match_recursion(discount):
  _, rewards, mask = batch(np.float64)
  got = returns_lib.discounted_returns(tf.constant(rewards), tf.constant(mask), discount)
  np.testing.assert_allclose(got.numpy(), numpy_discounted(rewards, mask, discount), rtol=1e-12,
                             atol=1e-12)


# --- GAE ------------------------------------------------------------------------------------

def test_gae_hand_computed():
  rewards, mask = np.array(REWARDS), np.array(MASK)
  values = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
  gamma, lam = 0.5, 0.5
  # V after the last valid step is 0: at the horizon (row 0) and after the end (row 1).
  deltas = np.array([[1 + 0.5 * 2 - 1, 2 + 0.5 * 3 - 2, 3 + 0.5 * 4 - 3, 4 + 0 - 4],
                     [5 + 0.5 * 20 - 10, 6 + 0 - 20, 0, 0]])
  expected = np.array([
      [deltas[0, 0] + 0.25 * deltas[0, 1] + 0.0625 * deltas[0, 2] + 0.015625 * deltas[0, 3],
       deltas[0, 1] + 0.25 * deltas[0, 2] + 0.0625 * deltas[0, 3],
       deltas[0, 2] + 0.25 * deltas[0, 3], deltas[0, 3]],
      [deltas[1, 0] + 0.25 * deltas[1, 1], deltas[1, 1], 0, 0]])
  got = returns_lib.gae(tf.constant(rewards), tf.constant(values), tf.constant(mask), gamma, lam)
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gae_lambda_one_zero_baseline_is_discounted_return(dtype):
  _, rewards, mask = batch(dtype)
  rewards, mask = tf.constant(rewards), tf.constant(mask)
  got = returns_lib.gae(rewards, tf.zeros_like(rewards), mask, 0.99, 1.0)
  expected = returns_lib.discounted_returns(rewards, mask, 0.99)
  np.testing.assert_allclose(got.numpy(), expected.numpy(), **tol(dtype))


def test_gae_lambda_one_is_return_minus_value():
  _, rewards, mask = batch(np.float64)
  values = np.random.default_rng(1).normal(size=rewards.shape)
  got = returns_lib.gae(tf.constant(rewards), tf.constant(values), tf.constant(mask), 0.9, 1.0)
  expected = (numpy_discounted(rewards, mask, 0.9) - values) * mask
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_gae_lambda_zero_is_td_error():
  _, rewards, mask = batch(np.float64)
  values = np.random.default_rng(2).normal(size=rewards.shape)
  got = returns_lib.gae(tf.constant(rewards), tf.constant(values), tf.constant(mask), 0.9, 0.0)
  masked_values = values * mask
  next_values = np.concatenate([masked_values[:, 1:], np.zeros((5, 1))], axis=1)
  expected = (rewards + 0.9 * next_values - values) * mask
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


# --- linear feature baseline ----------------------------------------------------------------

def test_features_layout_and_masking():
  observations, _, mask = batch(np.float64)
  features = returns_lib.linear_baseline_features(tf.constant(observations),
                                                  tf.constant(mask)).numpy()
  assert features.shape == (5, 7, 2 * 3 + 4)
  obs = np.clip(observations, -10, 10)
  t = np.broadcast_to(np.arange(7)[None, :, None] / 100.0, (5, 7, 1))
  expected = np.concatenate([obs, obs ** 2, t, t ** 2, t ** 3, np.ones_like(t)], axis=-1)
  np.testing.assert_allclose(features, expected * mask[..., None], rtol=1e-12)
  assert features[0, 0, 0] == 10.0 and features[0, 0, 3] == 100.0
  assert np.all(features[mask == 0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_baseline_fit_equals_numpy_lstsq_on_valid_rows(dtype):
  observations, rewards, mask = batch(dtype, lengths=(7, 7, 5, 4, 7))
  returns = returns_lib.discounted_returns(tf.constant(rewards), tf.constant(mask), 0.99)
  features = returns_lib.linear_baseline_features(tf.constant(observations), tf.constant(mask))
  coeffs = returns_lib.fit_linear_baseline(features, returns, tf.constant(mask), 1e-5)
  assert coeffs.dtype == dtype and coeffs.shape == (10,)

  valid = mask.astype(bool)
  x = features.numpy()[valid].astype(np.float64)
  y = returns.numpy()[valid].astype(np.float64)
  expected = np.linalg.lstsq(x.T @ x + 1e-5 * np.eye(10), x.T @ y, rcond=None)[0]
  np.testing.assert_allclose(coeffs.numpy(), expected, rtol=1e-4 if dtype == np.float32 else 1e-7)
  values = returns_lib.baseline_values(features, coeffs).numpy()
  np.testing.assert_allclose(values[valid], x @ expected, rtol=1e-4, atol=1e-4)
  assert np.all(values[~valid] == 0)


def test_baseline_fit_ignores_padded_rows():
  observations, rewards, mask = batch(np.float64)
  garbage_obs, garbage_rewards = observations.copy(), rewards.copy()
  garbage_obs[mask == 0] = 1e6
  garbage_rewards[mask == 0] = -1e6

  def fit(obs, rew):
    returns = returns_lib.discounted_returns(tf.constant(rew), tf.constant(mask), 0.99)
    features = returns_lib.linear_baseline_features(tf.constant(obs), tf.constant(mask))
    return returns_lib.fit_linear_baseline(features, returns, tf.constant(mask)).numpy()

  np.testing.assert_array_equal(fit(observations, rewards), fit(garbage_obs, garbage_rewards))


def test_baseline_fit_degenerate_and_non_finite_inputs():
  # A single valid step: the regularised normal equations are still solvable.
  features = tf.constant([[[1.0, 2.0, 1.0]]], tf.float64)
  coeffs = returns_lib.fit_linear_baseline(features, tf.constant([[3.0]], tf.float64),
                                           tf.constant([[1.0]], tf.float64))
  x = np.array([[1.0, 2.0, 1.0]])
  expected = np.linalg.lstsq(x.T @ x + 1e-5 * np.eye(3), x.T @ [3.0], rcond=None)[0]
  np.testing.assert_allclose(coeffs.numpy(), expected, rtol=1e-8)
  # Non-finite targets: no attempt is finite, so no baseline (zeros) instead of NaN.
  coeffs = returns_lib.fit_linear_baseline(features, tf.constant([[np.nan]], tf.float64),
                                           tf.constant([[1.0]], tf.float64))
  np.testing.assert_array_equal(coeffs.numpy(), np.zeros(3))


# --- normalisation and the per-task chain ---------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_normalized_advantages_mean_zero_std_one_on_valid_entries(dtype):
  _, rewards, mask = batch(dtype)
  advantages = rewards * 3.0 + 2.0
  advantages[mask == 0] = 1e3  # ignored
  got = returns_lib.normalize_advantages(tf.constant(advantages), tf.constant(mask)).numpy()
  valid = got[mask == 1].astype(np.float64)
  assert abs(valid.mean()) < 1e-6
  assert abs(valid.std() - 1.0) < 1e-6
  assert np.all(got[mask == 0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_advantages_for_task_chain(dtype):
  observations, rewards, mask = batch(dtype)
  out = returns_lib.advantages_for_task(tf.constant(observations), tf.constant(rewards),
                                        tf.constant(mask), normalize=False)
  expected_returns = numpy_discounted(rewards.astype(np.float64), mask, 0.99)
  np.testing.assert_allclose(out.returns.numpy(), expected_returns, **tol(dtype))
  # lambda = 1: advantage = return - fitted value.
  np.testing.assert_allclose(out.advantages.numpy(),
                             (expected_returns - out.values.numpy()) * mask,
                             rtol=1e-4, atol=1e-4)
  normalized = returns_lib.advantages_for_task(tf.constant(observations), tf.constant(rewards),
                                               tf.constant(mask),
                                               averaging="step").advantages.numpy()
  assert abs(normalized[mask == 1].mean()) < 1e-5
  assert np.all(normalized[mask == 0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_everything_works_inside_tf_function(dtype):
  observations, rewards, mask = batch(dtype)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], dtype),
                                tf.TensorSpec([None, None], dtype),
                                tf.TensorSpec([None, None], dtype)])
  def chain(obs, rew, msk):
    out = returns_lib.advantages_for_task(obs, rew, msk, discount=0.99, gae_lambda=0.97)
    return out.advantages, out.values, out.returns

  graph = chain(tf.constant(observations), tf.constant(rewards), tf.constant(mask))
  eager = returns_lib.advantages_for_task(tf.constant(observations), tf.constant(rewards),
                                          tf.constant(mask), discount=0.99, gae_lambda=0.97)
  for got, expected in zip(graph, eager):
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
  # Another batch size and horizon reuse the same trace (dynamic shapes).
  chain(tf.constant(observations[:2, :4]), tf.constant(rewards[:2, :4]),
        tf.constant(mask[:2, :4]))
  assert len(chain._list_all_concrete_functions()) == 1  # pylint: disable=protected-access
