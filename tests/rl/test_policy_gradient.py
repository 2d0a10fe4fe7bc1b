"""Gaussian policy, its log-likelihood / KL, and the policy-gradient losses of the inner loop."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.gaussian_policy import gaussian_policy
from l2f_tf.rl import policy_gradient as pg

RNG = np.random.default_rng(0)


def batch(m=12, obs_dim=2, act_dim=2):
  obs = RNG.normal(size=(m, obs_dim))
  actions = RNG.normal(size=(m, act_dim))
  advantages = RNG.normal(size=m)
  mask = (np.arange(m) < m - 3).astype(np.float64)  # the last 3 steps are padding
  return tf.constant(obs), pg.pack_targets(tf.constant(actions), tf.constant(advantages),
                                           tf.constant(mask))


def policy(obs_dim=2, act_dim=2):
  keras.utils.set_random_seed(3)
  return gaussian_policy(obs_dim, act_dim, hidden_units=(5, 4), dtype="float64")


def test_log_prob_and_kl_match_closed_forms():
  a, mean, log_std = np.array([[0.3, -1.0]]), np.array([[0.1, 0.5]]), np.array([[-0.2, 0.4]])
  std = np.exp(log_std)
  expected = np.sum(-0.5 * ((a - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi))
  assert float(pg.log_prob(a, mean, log_std)[0]) == pytest.approx(expected)
  assert float(pg.kl_divergence(mean, log_std, mean, log_std)[0]) == pytest.approx(0.0)
  m2, s2 = np.array([[0.0, 0.0]]), np.array([[0.0, 0.0]])
  kl = np.sum(0 - log_std + (std ** 2 + mean ** 2) / 2 - 0.5)
  assert float(pg.kl_divergence(mean, log_std, m2, s2)[0]) == pytest.approx(kl)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_distribution_of_a_policy_output(dtype):
  output = tf.constant([[0.1, 0.5, -0.2, 0.4], [0.0, -1.0, 0.3, -0.6]], dtype)
  distribution = pg.distribution(output)
  mean, log_std = pg.split_output(output)
  actions = tf.constant([[0.3, -1.0], [0.2, 0.1]], dtype)
  np.testing.assert_allclose(distribution.log_prob(actions).numpy(),
                             pg.log_prob(actions, mean, log_std).numpy(), rtol=1e-6)
  entropy = np.sum(log_std.numpy() + 0.5 * math.log(2 * math.pi * math.e), axis=-1)
  np.testing.assert_allclose(distribution.entropy().numpy(), entropy, rtol=1e-6)
  assert distribution.log_prob(actions).dtype == dtype


def test_policy_outputs_mean_and_a_learned_log_std_starting_at_zero():
  model = policy()
  out = model(tf.zeros([3, 2], tf.float64))
  mean, log_std = pg.split_output(out)
  assert out.shape == (3, 4) and np.all(log_std.numpy() == 0.0)
  learner = MetaLearner(model, pg.reinforce_loss, attenuation=TaskConditionedAttenuation(
      dtype="float64"))
  assert len(learner.inner_variables) == 7  # 3 kernels, 3 biases, log-std: 7 gammas
  assert learner.inner_variable_names[-1].endswith("log_std")


def test_padding_steps_do_not_count():
  model = policy()
  obs, y = batch()
  full = pg.reinforce_loss(y, model(obs))
  trimmed = pg.reinforce_loss(y[:9], model(obs[:9]))
  assert float(full) == pytest.approx(float(trimmed))


def test_inner_policy_gradient_step_matches_finite_differences():
  model = policy()
  learner = MetaLearner(model, pg.reinforce_loss, num_inner_steps=1, inner_lr=0.1)
  obs, y = batch()
  theta = learner.theta()
  with tf.GradientTape() as tape:
    tape.watch(theta)
    loss = learner.loss_at(theta, obs, y)
  grads = tape.gradient(loss, theta)
  eps = 1e-6
  for j in (0, 3, 6):  # a kernel, a bias, the log-std
    flat = theta[j].numpy().reshape(-1)
    for i in range(min(flat.size, 3)):
      def perturbed(delta):
        values = flat.copy()
        values[i] += delta
        params = list(theta)
        params[j] = tf.constant(values.reshape(theta[j].shape))
        return float(learner.loss_at(params, obs, y))
      fd = (perturbed(eps) - perturbed(-eps)) / (2 * eps)
      assert grads[j].numpy().reshape(-1)[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)
  # One inner step is theta - 0.1 * grad.
  adapted = learner.adapt(obs, y).fast_weights
  for t, g, a in zip(theta, grads, adapted):
    np.testing.assert_allclose(a.numpy(), t.numpy() - 0.1 * g.numpy(), rtol=1e-12)


def test_surrogate_gradient_at_the_sampling_policy_is_the_policy_gradient():
  model = policy()
  obs, y = batch()
  actions, _, _ = pg.unpack_targets(y)
  mean, log_std = pg.split_output(model(obs))
  old = tf.stop_gradient(pg.log_prob(actions, mean, log_std))
  with tf.GradientTape(persistent=True) as tape:
    out = model(obs)
    surrogate = pg.surrogate_loss(y, out, old)
    reinforce = pg.reinforce_loss(y, out)
  for a, b in zip(tape.gradient(surrogate, model.trainable_variables),
                  tape.gradient(reinforce, model.trainable_variables)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)
  assert float(pg.mean_kl(out, out, y[:, -1])) == pytest.approx(0.0)


def test_lvc_loss_has_the_reinforce_gradient_and_adds_the_score_outer_product_curvature():
  obs, y = batch(m=6)
  del obs
  actions, advantages, mask = pg.unpack_targets(y)
  outputs = tf.Variable(RNG.normal(size=(6, 4)))

  def derivatives(loss_fn):
    with tf.GradientTape() as outer:
      with tf.GradientTape() as inner:
        loss = loss_fn(y, outputs)
      grad = inner.gradient(loss, outputs)
    return loss, grad, outer.jacobian(grad, outputs)  # [6, 4, 6, 4]

  lvc, lvc_grad, lvc_hessian = derivatives(pg.lvc_loss)
  reinforce, reinforce_grad, reinforce_hessian = derivatives(pg.reinforce_loss)
  count = float(tf.reduce_sum(mask))
  # Value: minus the mean advantage over valid steps (every ratio is 1).
  assert float(lvc) == pytest.approx(-float(tf.reduce_sum(advantages * mask)) / count)
  np.testing.assert_allclose(lvc_grad.numpy(), reinforce_grad.numpy(), rtol=1e-12, atol=1e-15)
  # Curvature: REINFORCE's plus -sum_t mask_t A_t s_t s_t^T / count, s_t = d log pi_t / d out_t.
  with tf.GradientTape() as tape:
    mean, log_std = pg.split_output(outputs)
    log_likelihood = pg.log_prob(actions, mean, log_std)
  scores = tape.jacobian(log_likelihood, outputs).numpy()  # [6, 6, 4], row t nonzero only at t
  extra = np.zeros((6, 4, 6, 4))
  for t in range(6):
    s = scores[t, t]
    extra[t, :, t, :] = -float(mask[t] * advantages[t]) * np.outer(s, s) / count
  np.testing.assert_allclose(lvc_hessian.numpy() - reinforce_hessian.numpy(), extra, rtol=1e-10,
                             atol=1e-12)
  assert np.abs(extra).max() > 1e-3
