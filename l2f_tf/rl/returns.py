"""Returns, the linear feature baseline and GAE on padded trajectory batches.

The advantages of MAML-TRPO's policy-gradient steps come from this per-task chain, as in rllab
(and the reference MAML code built on it): rewards -> discounted reward-to-go -> linear feature
baseline fitted by regularised least squares -> generalised advantage estimation (GAE) ->
normalisation. Averages over a batch of trajectories (the normalisation here, the losses of
`l2f_tf.rl.policy_gradient`) follow :func:`step_weights`.

N trajectories of at most H steps are dense, padded tensors: rewards [N, H], observations
[N, H, obs_dim] and a float mask [N, H], 1 while the episode runs (its last step included) and
0 after it ended, a prefix of ones in every row. Inputs at masked steps are ignored and every
output is 0 there. Pure TensorFlow, eager or in ``tf.function``, float32 or float64.
Discounted sums are one matmul with an [H, H] upper-triangular matrix of powers of the
discount (O(N H^2) work, but no length-H sequential loop).
"""

from typing import NamedTuple, Union

import tensorflow as tf

Scalar = Union[float, tf.Tensor]

BASELINE_OBS_CLIP = 10.0
BASELINE_TIME_SCALE = 100.0
BASELINE_RETRIES = 5  # rllab multiplies the regulariser by 10 up to 5 times (in total 5 solves).


def _as(value: Scalar, dtype: tf.DType) -> tf.Tensor:
  """``value`` as a tensor of ``dtype``, without a float32 detour for Python floats."""
  return tf.cast(value, dtype) if tf.is_tensor(value) else tf.constant(value, dtype)


def _discount_matrix(horizon, factor: Scalar, dtype: tf.DType) -> tf.Tensor:
  """[H, H] matrix D with D[t, k] = factor^(k - t) for k >= t and 0 below the diagonal.

  ``tf.where`` (not a multiplication by a triangular mask) keeps the lower triangle exactly 0
  when factor = 0, where factor^(negative) would be inf; 0^0 = 1 gives the identity then.
  """
  index = tf.range(horizon)
  lag = index[None, :] - index[:, None]
  powers = tf.pow(_as(factor, dtype), tf.cast(tf.maximum(lag, 0), dtype))
  return tf.where(lag >= 0, powers, tf.zeros_like(powers))


def _discounted_sum(values: tf.Tensor, factor: Scalar) -> tf.Tensor:
  """out[n, t] = sum_{k >= t} factor^(k - t) values[n, k]."""
  matrix = _discount_matrix(tf.shape(values)[1], factor, values.dtype)
  return tf.matmul(values, matrix, transpose_b=True)


def discounted_returns(rewards: tf.Tensor, mask: tf.Tensor, discount: Scalar) -> tf.Tensor:
  """[N, H] reward-to-go R_t = sum_{k >= t} discount^(k - t) r_k over the valid steps.

  The return of the last valid step is its reward: nothing is bootstrapped after the end of an
  episode (ended or truncated).
  """
  mask = tf.cast(mask, rewards.dtype)
  return _discounted_sum(rewards * mask, discount) * mask


def linear_baseline_features(observations: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """rllab's LinearFeatureBaseline features: [o, o^2, t, t^2, t^3, 1] per step.

  [N, H, 2 * obs_dim + 4]: o is the observation clipped to [-10, 10] and t the time index
  within the episode divided by 100. Features of masked steps are 0 (the constant too), so that
  padded steps do not enter the least-squares fit and their baseline value is 0.
  """
  dtype = observations.dtype
  obs = tf.clip_by_value(observations, _as(-BASELINE_OBS_CLIP, dtype),
                         _as(BASELINE_OBS_CLIP, dtype))
  shape = tf.shape(observations)
  time = tf.cast(tf.range(shape[1]), dtype) / _as(BASELINE_TIME_SCALE, dtype)
  time = tf.broadcast_to(time[None, :, None], tf.concat([shape[:2], [1]], axis=0))
  features = tf.concat([obs, obs ** 2, time, time ** 2, time ** 3, tf.ones_like(time)], axis=-1)
  return features * tf.cast(mask, dtype)[..., None]


def fit_linear_baseline(features: tf.Tensor, returns: tf.Tensor, mask: tf.Tensor,
                        reg_coeff: float = 1e-5) -> tf.Tensor:
  """Least-squares coefficients of the linear baseline on the valid steps, as rllab fits them.

  rllab solves the regularised normal equations (X^T X + reg I) w = X^T y with
  ``numpy.linalg.lstsq`` and, if the solution contains NaN, retries with reg multiplied by 10
  (5 attempts). Here the same is done in-graph: X^T X is eigendecomposed once in float64 (float32
  normal equations lose too much precision with the cubic time feature), each regulariser
  shifts its eigenvalues, and the minimum-norm solution of the first attempt that is finite is
  kept (eigenvalues below float64 eps * F * the largest one are dropped, as lstsq drops small
  singular values). If no attempt is finite (non-finite inputs), the coefficients are 0, i.e.
  no baseline, rather than NaN.

  Gradients are stopped. Returns the [F] coefficients of the [N, H, F] ``features`` of
  :func:`linear_baseline_features`, in their dtype.
  """
  num_features = tf.shape(features)[-1]
  weights = tf.cast(tf.reshape(mask, [-1, 1]), tf.float64)
  design = tf.reshape(tf.cast(tf.stop_gradient(features), tf.float64), [-1, num_features])
  design = design * weights
  targets = tf.reshape(tf.cast(tf.stop_gradient(returns), tf.float64), [-1, 1]) * weights
  gram = tf.matmul(design, design, transpose_a=True)
  moments = tf.matmul(design, targets, transpose_a=True)[:, 0]
  eigenvalues, eigenvectors = tf.linalg.eigh(gram)
  projected = tf.linalg.matvec(eigenvectors, moments, transpose_a=True)
  rcond = tf.cast(num_features, tf.float64) * tf.constant(2.220446049250313e-16, tf.float64)

  coeffs = tf.zeros_like(moments)
  for attempt in reversed(range(BASELINE_RETRIES)):  # the first finite attempt is kept
    shifted = eigenvalues + tf.constant(reg_coeff * 10.0 ** attempt, tf.float64)
    keep = tf.abs(shifted) > rcond * tf.reduce_max(tf.abs(shifted))
    inverse = tf.where(keep, 1.0 / tf.where(keep, shifted, tf.ones_like(shifted)),
                       tf.zeros_like(shifted))
    solution = tf.linalg.matvec(eigenvectors, inverse * projected)
    coeffs = tf.where(tf.reduce_all(tf.math.is_finite(solution)), solution, coeffs)
  return tf.cast(coeffs, features.dtype)


def baseline_values(features: tf.Tensor, coeffs: tf.Tensor) -> tf.Tensor:
  """[N, H] baseline predictions features . coeffs (0 at masked steps, whose features are 0)."""
  return tf.linalg.matvec(features, tf.cast(coeffs, features.dtype))


def gae(rewards: tf.Tensor, values: tf.Tensor, mask: tf.Tensor, discount: Scalar,
        gae_lambda: Scalar) -> tf.Tensor:
  """Generalised advantage estimation on padded trajectories.

  delta_t = r_t + discount * V_{t+1} - V_t and A_t = sum_l (discount * lambda)^l delta_{t+l},
  with V = 0 after the last valid step: whether the episode terminated or was truncated at the
  horizon, nothing is bootstrapped, as in the reference code. With lambda = 1 and V = 0 this is
  the discounted return; with lambda = 0 it is the TD error. Returns [N, H] advantages.
  """
  dtype = rewards.dtype
  mask = tf.cast(mask, dtype)
  values = tf.cast(values, dtype) * mask
  next_values = tf.concat([values[:, 1:], tf.zeros_like(values[:, :1])], axis=1)
  deltas = (rewards + _as(discount, dtype) * next_values - values) * mask
  return _discounted_sum(deltas, _as(discount, dtype) * _as(gae_lambda, dtype)) * mask


AVERAGING = ("trajectory", "step")


def step_weights(mask: tf.Tensor, averaging: str = "trajectory") -> tf.Tensor:
  """[N, H] weights w such that sum(w * v) / sum(w) is the average of v over a batch.

  * ``"trajectory"`` (MAML-RL's): the mean over each trajectory's valid steps, then the mean
    over trajectories: w = mask / (valid steps of the trajectory). Every trajectory counts the
    same, however early it ended.
  * ``"step"``: the mean over all valid steps: w = mask. A long trajectory counts more than one
    that ended early (e.g. at the goal).

  The two are equal when no trajectory ends early. Padded steps have weight 0.
  """
  if averaging not in AVERAGING:
    raise ValueError(f"averaging must be one of {AVERAGING}, got {averaging!r}.")
  mask = tf.cast(mask, mask.dtype if mask.dtype.is_floating else tf.float32)
  if averaging == "step":
    return mask
  lengths = tf.reduce_sum(mask, axis=-1, keepdims=True)
  return mask / tf.maximum(lengths, tf.ones_like(lengths))


def weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """sum(values * weights) / sum(weights): with :func:`step_weights`, the batch average."""
  weights = tf.cast(weights, values.dtype)
  return tf.reduce_sum(values * weights) / tf.maximum(tf.reduce_sum(weights),
                                                      _as(1e-12, values.dtype))


def normalize_advantages(advantages: tf.Tensor, weights: tf.Tensor,
                         epsilon: float = 1e-8) -> tf.Tensor:
  """(A - mean) / (std + epsilon), mean and (population) std averaged with ``weights``
  (:func:`step_weights`; a 0/1 mask averages over steps); 0 where ``weights`` is 0. rllab and
  MAML-RL add the same epsilon."""
  dtype = advantages.dtype
  weights = tf.cast(weights, dtype)
  valid = tf.cast(weights > 0, dtype)
  mean = weighted_mean(advantages, weights)
  centred = (advantages - mean) * valid
  std = tf.sqrt(weighted_mean(centred ** 2, weights))
  return centred / (std + _as(epsilon, dtype))


class TaskAdvantages(NamedTuple):
  """The outputs of :func:`advantages_for_task`, all [N, H] and 0 at masked steps.

  Attributes:
    advantages: the (normalised if asked) GAE advantages.
    values: the fitted baseline values.
    returns: the discounted returns the baseline was fitted to.
  """
  advantages: tf.Tensor
  values: tf.Tensor
  returns: tf.Tensor


def advantages_for_task(observations: tf.Tensor, rewards: tf.Tensor, mask: tf.Tensor,
                        discount: Scalar = 0.99, gae_lambda: Scalar = 1.0,
                        normalize: bool = True, reg_coeff: float = 1e-5,
                        averaging: str = "trajectory") -> TaskAdvantages:
  """The per-task chain of MAML-TRPO: returns -> baseline fit -> GAE -> normalisation.

  The baseline is refitted on this batch (the trajectories of one task) before it predicts
  the values used by GAE; ``reg_coeff`` is its initial ridge regulariser. MAML-TRPO uses
  discount 0.99 and lambda 1.0; ``averaging`` is the normalisation's (:func:`step_weights`).
  Advantages are constants for the policy gradient: gradients are stopped.
  """
  observations = tf.stop_gradient(observations)
  rewards = tf.stop_gradient(tf.cast(rewards, observations.dtype))
  mask = tf.cast(mask, observations.dtype)
  returns = discounted_returns(rewards, mask, discount)
  features = linear_baseline_features(observations, mask)
  coeffs = fit_linear_baseline(features, returns, mask, reg_coeff)
  values = baseline_values(features, coeffs)
  advantages = gae(rewards, values, mask, discount, gae_lambda)
  if normalize:
    advantages = normalize_advantages(advantages, step_weights(mask, averaging))
  return TaskAdvantages(advantages, values, returns)
