"""Export of a meta-trained policy as a SavedModel that acts and adapts.

Signatures (all float32):
  * ``act``: observations [B, obs_dim] -> {"mean" [B, act_dim], "log_std" [act_dim]}: the
    meta-policy theta (before any adaptation; act with ``mean`` or sample with ``log_std``);
  * ``adapt_and_act``: trajectories of one task - observations [N, H, obs_dim], actions
    [N, H, act_dim], rewards [N, H], mask [N, H] (1 for real steps, 0 for padding) - and
    query observations [B, obs_dim] -> the adapted policy's {"mean", "log_std"} on the query.
    Advantages are computed inside as in training (linear baseline refit, GAE, normalisation);
    L2F's embedding and the inner step(s) both use these trajectories.
The training config is stored in ``assets.extra/operative_config.gin``.

The graph checks its inputs (for any consumer): each input's shape against the signature (the
observation and action sizes), NaN or infinite values, the four trajectory tensors agreeing on
N (trajectories) and H (steps), and at least one real step (mask 1). ``l2f_tf.export.load``
loads these exports too (a ``LoadedPolicy``), with the same checks in Python before the call.
"""

from typing import Optional

import tensorflow as tf

from l2f_tf import export as export_lib
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import returns as returns_lib


class PolicyModule(tf.Module):
  """The saved module: the learner's variables plus the act / adapt graphs."""

  def __init__(self, learner, observation_dim: int, action_dim: int, num_steps: int,
               discount: float, gae_lambda: float, averaging: str = "trajectory",
               description: str = ""):
    super().__init__(name="meta_policy")
    self.model, self.inner_lrs = learner.model, learner.inner_lrs
    if learner.attenuation is not None:
      self.attenuation = learner.attenuation
    self.num_steps = tf.Variable(num_steps, trainable=False, name="num_steps")
    self.description = tf.Variable(description, trainable=False, name="description")
    self._learner, self._steps = learner, num_steps
    self._discount, self._gae_lambda, self._averaging = discount, gae_lambda, averaging
    spec = lambda name, *shape: tf.TensorSpec(shape, tf.float32, name=name)
    self._act_specs = [spec("observations", None, observation_dim)]
    self._adapt_specs = [spec("observations", None, None, observation_dim),
                         spec("actions", None, None, action_dim), spec("rewards", None, None),
                         spec("mask", None, None),
                         spec("query_observations", None, observation_dim)]
    self.act = tf.function(self._act, input_signature=self._act_specs)
    self.adapt_and_act = tf.function(self._adapt_and_act, input_signature=self._adapt_specs)

  def _outputs(self, params, observations):
    mean, log_std = pg.split_output(self._learner.forward(params, observations))
    return {"mean": mean, "log_std": log_std[0]}

  def _act(self, observations):
    observations = export_lib.checked_input(observations, self._act_specs[0].shape,
                                            "observations")
    return self._outputs(self._learner.theta(), observations)

  def _checked(self, *inputs):
    """The inputs of adapt_and_act with the checks of the module docstring attached."""
    inputs = [export_lib.checked_input(t, s.shape, s.name)
              for t, s in zip(inputs, self._adapt_specs)]
    observations, actions, rewards, mask, _ = inputs
    trajectories = {"observations": observations, "actions": actions, "rewards": rewards,
                    "mask": mask}
    n, h = zip(*(tf.unstack(tf.shape(t)[:2]) for t in trajectories.values()))
    checks = [
        export_lib.assert_that(
            tf.logical_and(export_lib.all_equal(*n), export_lib.all_equal(*h)),
            "observations [N, H, obs_dim], actions [N, H, act_dim], rewards [N, H] and mask "
            "[N, H] must agree on N (trajectories) and H (steps)", trajectories),
        export_lib.assert_that(tf.reduce_sum(mask) > 0, "The support trajectories are empty: "
                               "mask needs at least one real step (1)", {"mask": mask})]
    return export_lib.after(checks, inputs)

  def _adapt_and_act(self, observations, actions, rewards, mask, query_observations):
    observations, actions, rewards, mask, query_observations = self._checked(
        observations, actions, rewards, mask, query_observations)
    advantages = returns_lib.advantages_for_task(observations, rewards, mask, self._discount,
                                                 self._gae_lambda,
                                                 averaging=self._averaging).advantages
    y = pg.pack_targets(actions, advantages, returns_lib.step_weights(mask, self._averaging))
    flat = lambda t: tf.reshape(t, [-1, t.shape[-1]])
    adaptation = self._learner.adapt(flat(observations), flat(y), num_steps=self._steps)
    return self._outputs(adaptation.fast_weights, query_observations)


def export(learner, path: str, observation_dim: int, action_dim: int,
           num_steps: Optional[int] = None, discount: float = 0.99, gae_lambda: float = 1.0,
           config_path: Optional[str] = None, averaging: str = "trajectory",
           name: str = "meta-RL") -> str:
  """Writes the SavedModel to ``path`` (replacing it) and returns ``path``.

  The adaptation inside it computes advantages and averages as training did (``discount``,
  ``gae_lambda``, ``averaging``). ``name`` (e.g. the environment's) starts the stored
  description that the loader's error messages quote."""
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  o, a = observation_dim, action_dim
  description = (f"{name} policy: act(observations [B, {o}]); adapt_and_act(observations "
                 f"[N, H, {o}], actions [N, H, {a}], rewards [N, H], mask [N, H], "
                 f"query_observations [B, {o}]), all float32")
  module = PolicyModule(learner, observation_dim, action_dim, num_steps, discount, gae_lambda,
                        averaging, description)
  return export_lib.save(module, path, {"serving_default": module.act, "act": module.act,
                                        "adapt_and_act": module.adapt_and_act}, config_path)
