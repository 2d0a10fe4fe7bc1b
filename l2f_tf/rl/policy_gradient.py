"""Diagonal-Gaussian policy math and the policy-gradient losses of MAML-RL / L2F-RL.

The policy network outputs ``[mean, log_std]`` (see `l2f_tf.models.gaussian_policy`). Losses
follow the ``loss_fn(y_true, y_pred)`` contract of `MetaLearner`, so the inner loop is the same
code as for supervised domains: ``y_true`` packs, per time step, the action taken, its
advantage and an averaging weight, ``[actions, advantage, weight]`` ([M, action_dim + 2]), and
``y_pred`` is the policy output on the matching observations ([M, 2 * action_dim]). The weight
is 0 at padded steps and 1 / (valid steps of the trajectory) by default, so that every average
below is MAML-RL's: within each trajectory, then over trajectories
(`l2f_tf.rl.returns.step_weights`; a weight of 1 averages over all valid steps instead).

  inner loss (REINFORCE):   -sum_t w_t * log pi(a_t | s_t) * A_t / sum_t w_t
  inner loss (LVC):         -sum_t w_t * pi(a_t | s_t) / stop(pi(a_t | s_t)) * A_t / sum_t w_t
  outer surrogate (TRPO):   -sum_t w_t * pi(a_t | s_t) / pi_old(a_t | s_t) * A_t / sum_t w_t
  TRPO constraint:           sum_t w_t * KL(pi_old(. | s_t) || pi(. | s_t)) / sum_t w_t

The constraint is KL(old || new), as in the TRPO paper and rllab (on which the original MAML-RL
code is built); the PyTorch MAML-RL reproduction uses KL(new || old). Both have the same value,
gradient (zero) and Hessian (the Fisher matrix) at pi = pi_old, so the conjugate-gradient step
direction and its scaling are identical; they differ only at third order, in which line-search
steps satisfy the constraint.
"""

import math

import tensorflow as tf


def split_output(output: tf.Tensor):
  """[..., 2 * action_dim] policy output -> (mean, log_std), each [..., action_dim]."""
  mean, log_std = tf.split(output, 2, axis=-1)
  return mean, log_std


def log_prob(actions: tf.Tensor, mean: tf.Tensor, log_std: tf.Tensor) -> tf.Tensor:
  """Log-density of ``actions`` under N(mean, diag(exp(log_std)^2)), summed over action dims."""
  z = (actions - mean) * tf.exp(-log_std)
  return tf.reduce_sum(-0.5 * tf.square(z) - log_std - 0.5 * math.log(2.0 * math.pi), axis=-1)


def kl_divergence(mean_p, log_std_p, mean_q, log_std_q) -> tf.Tensor:
  """KL(p || q) of two diagonal Gaussians, summed over action dims."""
  var_p, var_q = tf.exp(2.0 * log_std_p), tf.exp(2.0 * log_std_q)
  return tf.reduce_sum(log_std_q - log_std_p + (var_p + tf.square(mean_p - mean_q)) /
                       (2.0 * var_q) - 0.5, axis=-1)


def pack_targets(actions: tf.Tensor, advantages: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """[..., action_dim], [...], [...] -> y_true [..., action_dim + 2] for the losses below.

  ``weights`` are the averaging weights of the steps (`l2f_tf.rl.returns.step_weights`; a 0/1
  mask averages over valid steps)."""
  dtype = actions.dtype
  return tf.concat([actions, tf.cast(advantages, dtype)[..., None],
                    tf.cast(weights, dtype)[..., None]], axis=-1)


def unpack_targets(y_true: tf.Tensor):
  """Inverse of :func:`pack_targets`: (actions, advantages, weights)."""
  return y_true[..., :-2], y_true[..., -2], y_true[..., -1]


def _weighted_mean(values, weights):
  return tf.reduce_sum(values * weights) / tf.maximum(tf.reduce_sum(weights), 1e-12)


def reinforce_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
  """The inner-loop loss: minus the advantage-weighted log-likelihood of the actions taken."""
  actions, advantages, weights = unpack_targets(y_true)
  mean, log_std = split_output(y_pred)
  return -_weighted_mean(log_prob(actions, mean, log_std) * advantages, weights)


def lvc_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
  """ProMP's low-variance-curvature (LVC) inner loss (Rothfuss et al., ICLR 2019).

  Its value is minus the mean advantage and its gradient equals :func:`reinforce_loss`'s, so
  the inner step, the adapted policy and every return are unchanged. Only its second
  derivative differs: it adds sum_t A_t grad log pi_t grad log pi_t^T, the per-step part of
  the dependence of the support trajectories' distribution on theta, which MAML's REINFORCE
  inner loss drops. The meta-gradient through the inner step then credits the pre-update
  policy for the data it collects (exploration) instead of treating that data as fixed.
  """
  actions, advantages, weights = unpack_targets(y_true)
  mean, log_std = split_output(y_pred)
  log_likelihood = log_prob(actions, mean, log_std)
  ratio = tf.exp(log_likelihood - tf.stop_gradient(log_likelihood))
  return -_weighted_mean(ratio * advantages, weights)


def surrogate_loss(y_true: tf.Tensor, y_pred: tf.Tensor, old_log_prob: tf.Tensor) -> tf.Tensor:
  """TRPO's importance-weighted surrogate (to minimise) w.r.t. the sampling policy's log-probs."""
  actions, advantages, weights = unpack_targets(y_true)
  mean, log_std = split_output(y_pred)
  ratio = tf.exp(log_prob(actions, mean, log_std) - old_log_prob)
  return -_weighted_mean(ratio * advantages, weights)


def mean_kl(y_pred_old: tf.Tensor, y_pred: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """KL(pi_old || pi) averaged with the step ``weights`` (the TRPO constraint)."""
  mean_old, log_std_old = split_output(y_pred_old)
  mean, log_std = split_output(y_pred)
  return _weighted_mean(kl_divergence(mean_old, log_std_old, mean, log_std),
                        tf.cast(weights, mean.dtype))
