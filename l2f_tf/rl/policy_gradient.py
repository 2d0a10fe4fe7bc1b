"""The diagonal-Gaussian policy distribution and the policy-gradient losses of MAML-RL / L2F-RL.

The policy network outputs ``[mean, log_std]`` (see `l2f_tf.models.gaussian_policy`);
:func:`distribution` turns it into a ``tensorflow_probability`` distribution whose
``log_prob`` and ``entropy`` sum over the action dimensions. tensorflow-probability (the ``rl``
extra, `l2f_tf.extras`) is imported with the first distribution, not with this module, which
loading an exported policy imports: a load then needs neither the package nor its import
time (about a second). Losses follow the
``loss_fn(y_true, y_pred)`` contract of `MetaLearner`, so the inner loop is the same code as
for supervised domains: ``y_true`` packs, per time step, the action taken, its advantage and
an averaging weight, ``[actions, advantage, weight]`` ([M, action_dim + 2]), and ``y_pred`` is
the policy output on the matching observations ([M, 2 * action_dim]). The weights
(`l2f_tf.rl.returns.step_weights`) are 0 at padded steps and by default 1 / (valid steps of
the trajectory), MAML-RL's average within each trajectory, then over trajectories.

  inner loss (REINFORCE):   -sum_t w_t * log pi(a_t | s_t) * A_t / sum_t w_t
  inner loss (LVC):         -sum_t w_t * pi(a_t | s_t) / stop(pi(a_t | s_t)) * A_t / sum_t w_t
  outer surrogate (TRPO):   -sum_t w_t * pi(a_t | s_t) / pi_old(a_t | s_t) * A_t / sum_t w_t
  TRPO constraint:           sum_t w_t * KL(pi_old(. | s_t) || pi(. | s_t)) / sum_t w_t

The constraint is KL(old || new), as in the TRPO paper and rllab; the PyTorch MAML-RL
reproduction uses KL(new || old). Both have the same value, gradient (zero) and Hessian (the
Fisher matrix) at pi = pi_old, so the conjugate-gradient step is the same; they differ only in
which line-search steps satisfy the constraint.
"""

import tensorflow as tf

from l2f_tf import extras
from l2f_tf.rl.returns import weighted_mean


def split_output(output: tf.Tensor):
  """[..., 2 * action_dim] policy output -> (mean, log_std), each [..., action_dim]."""
  mean, log_std = tf.split(output, 2, axis=-1)
  return mean, log_std


@tf.autograph.experimental.do_not_convert  # (called while tracing; nothing to convert)
def distributions():
  """``tensorflow_probability.distributions``, imported on first use; MissingExtraError (one
  line naming the ``rl`` extra) without tensorflow-probability."""
  return extras.import_module("rl", "tensorflow_probability",
                              "Meta-RL's policy distribution").distributions


def gaussian(mean, log_std):
  """N(mean, diag(exp(log_std)^2)) with the action dimensions (the last axis) as event: a
  ``tfp.distributions.Independent``."""
  tfd = distributions()
  return tfd.Independent(tfd.Normal(mean, tf.exp(log_std)), reinterpreted_batch_ndims=1)


def distribution(output: tf.Tensor):
  """The Gaussian of a policy output [..., 2 * action_dim]."""
  return gaussian(*split_output(output))


def log_prob(actions, mean, log_std) -> tf.Tensor:
  """Log-density of ``actions`` under N(mean, diag(exp(log_std)^2)), summed over action dims."""
  return gaussian(mean, log_std).log_prob(actions)


def kl_divergence(mean_p, log_std_p, mean_q, log_std_q) -> tf.Tensor:
  """KL(p || q) of two diagonal Gaussians, summed over action dims.

  The closed form, not tfp.distributions.kl_divergence: that one agrees to rounding and is twice
  differentiable, but in float32 its op order makes TRPO's two curvature forms differ by ~1e-7
  instead of ~3e-9, which conjugate gradient on an ill-conditioned KL Hessian amplifies to a
  1% different step (tests/train/test_meta_rl_trainer.py compares the two forms' steps).
  """
  var_p, var_q = tf.exp(2.0 * log_std_p), tf.exp(2.0 * log_std_q)
  return tf.reduce_sum(log_std_q - log_std_p + (var_p + tf.square(mean_p - mean_q)) /
                       (2.0 * var_q) - 0.5, axis=-1)


def pack_targets(actions: tf.Tensor, advantages: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """[..., action_dim], [...], [...] -> y_true [..., action_dim + 2] for the losses below."""
  dtype = actions.dtype
  return tf.concat([actions, tf.cast(advantages, dtype)[..., None],
                    tf.cast(weights, dtype)[..., None]], axis=-1)


def unpack_targets(y_true: tf.Tensor):
  """Inverse of :func:`pack_targets`: (actions, advantages, weights)."""
  return y_true[..., :-2], y_true[..., -2], y_true[..., -1]


def reinforce_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
  """The inner-loop loss: minus the advantage-weighted log-likelihood of the actions taken."""
  actions, advantages, weights = unpack_targets(y_true)
  return -weighted_mean(distribution(y_pred).log_prob(actions) * advantages, weights)


def lvc_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
  """ProMP's low-variance-curvature (LVC) inner loss (Rothfuss et al., ICLR 2019).

  Its value is minus the mean advantage and its gradient equals :func:`reinforce_loss`'s, so
  the inner step is unchanged. Its second derivative adds sum_t A_t grad log pi_t
  grad log pi_t^T, the per-step part of the support data's dependence on theta that MAML's
  REINFORCE loss drops: the meta-gradient then credits the pre-update policy for the data it
  collects (exploration).
  """
  actions, advantages, weights = unpack_targets(y_true)
  log_likelihood = distribution(y_pred).log_prob(actions)
  ratio = tf.exp(log_likelihood - tf.stop_gradient(log_likelihood))
  return -weighted_mean(ratio * advantages, weights)


def surrogate_loss(y_true: tf.Tensor, y_pred: tf.Tensor, old_log_prob: tf.Tensor) -> tf.Tensor:
  """TRPO's importance-weighted surrogate (to minimise) w.r.t. the sampling policy's log-probs."""
  actions, advantages, weights = unpack_targets(y_true)
  ratio = tf.exp(distribution(y_pred).log_prob(actions) - old_log_prob)
  return -weighted_mean(ratio * advantages, weights)


def mean_kl(y_pred_old: tf.Tensor, y_pred: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """KL(pi_old || pi) averaged with the step ``weights`` (the TRPO constraint)."""
  return weighted_mean(kl_divergence(*split_output(y_pred_old), *split_output(y_pred)), weights)
