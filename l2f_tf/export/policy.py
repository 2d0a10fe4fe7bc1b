"""The meta-RL export, its writer and its loader: a SavedModel of a meta-trained policy with the
signatures ``act`` (= ``serving_default``; observations [B, obs_dim] -> {"mean", "log_std"} of
theta, before any adaptation) and ``adapt_and_act`` (one task's trajectories: observations
[N, H, obs_dim], actions [N, H, act_dim], rewards and mask [N, H], and query observations
[B, obs_dim] -> the adapted policy's {"mean", "log_std"} on the query; advantages, L2F's
embedding and the inner steps are computed inside as in training). The graph checks its inputs
for any consumer; :class:`LoadedPolicy` checks shapes and dtypes in Python too.
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from l2f_tf.export.checks import after, all_equal, assert_that, checked_input
from l2f_tf.export.saved_model import ExportModule, LoadedModel, save
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import returns as returns_lib


class PolicyModule(ExportModule):
  """The saved module: the learner's variables plus the act / adapt graphs."""

  def __init__(self, learner, observation_dim: int, action_dim: int, num_steps: int,
               discount: float, gae_lambda: float, averaging: str = "trajectory",
               description: str = ""):
    super().__init__("meta_policy", learner, num_steps, description)
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
    observations = checked_input(observations, self._act_specs[0])
    return self._outputs(self._learner.theta(), observations)

  def _adapt_and_act(self, observations, actions, rewards, mask, query_observations):
    """The adapted policy on the query, after the checks of the module docstring."""
    inputs = [checked_input(t, s) for t, s in zip(
        (observations, actions, rewards, mask, query_observations), self._adapt_specs)]
    shapes = [tf.shape(t) for t in inputs[:4]]  # observations, actions, rewards, mask
    n, h = zip(*(tf.unstack(shape[:2]) for shape in shapes))
    checks = [
        assert_that(tf.logical_and(all_equal(*n), all_equal(*h)), "observations [N, H, "
                    "obs_dim], actions [N, H, act_dim], rewards [N, H] and mask [N, H] must "
                    "agree on N (trajectories) and H (steps); got observations {} actions {} "
                    "rewards {} mask {}", *shapes),
        assert_that(tf.reduce_sum(inputs[3]) > 0, "The support trajectories are empty: mask "
                    "needs at least one real step (1); got mask {}", shapes[3])]
    observations, actions, rewards, mask, query_observations = after(checks, inputs)
    advantages = returns_lib.advantages_for_task(observations, rewards, mask, self._discount,
                                                 self._gae_lambda,
                                                 averaging=self._averaging).advantages
    y = pg.pack_targets(actions, advantages, returns_lib.step_weights(mask, self._averaging))
    flat = lambda t: tf.reshape(t, [-1, t.shape[-1]])
    adaptation = self._learner.adapt(flat(observations), flat(y), num_steps=self._steps)
    return self._outputs(adaptation.fast_weights, query_observations)


def export_policy(learner, path: str, observation_dim: int, action_dim: int,
                  num_steps: Optional[int] = None, discount: float = 0.99,
                  gae_lambda: float = 1.0, config_path: Optional[str] = None,
                  averaging: str = "trajectory", name: str = "meta-RL") -> str:
  """Writes the SavedModel to ``path`` (replacing it) and returns ``path``.

  The adaptation inside it computes advantages and averages as training did (``discount``,
  ``gae_lambda``, ``averaging``); with ``num_steps`` above the trained steps the later ones take
  the learner's ``later_steps_lr`` (``MetaLearner.later_steps_lr``), fixed in the graph. ``name`` (e.g. the environment's) starts the stored
  description that the loader's error messages quote."""
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  o, a = observation_dim, action_dim
  description = (f"{name} policy: act(observations [B, {o}]); adapt_and_act(observations "
                 f"[N, H, {o}], actions [N, H, {a}], rewards [N, H], mask [N, H], "
                 f"query_observations [B, {o}]), all float32")
  if num_steps > learner.num_inner_steps and learner.inner_lrs.later_lr is not None:
    description += (f"; adapts {num_steps} steps, those after the trained "
                    f"{learner.inner_lrs.num_steps} at lr {learner.inner_lrs.later_lr}")
  module = PolicyModule(learner, observation_dim, action_dim, num_steps, discount, gae_lambda,
                        averaging, description)
  return save(module, path, {"serving_default": module.act, "act": module.act,
                             "adapt_and_act": module.adapt_and_act}, config_path)


class LoadedPolicy(LoadedModel):
  """A loaded meta-RL export (made by ``l2f_tf.export.load``) with checked inputs: ``act``
  and ``adapt_and_act`` return {"mean", "log_std"} numpy arrays; ``observation_dim``,
  ``action_dim``, ``num_steps``, ``description``, ``config_path``."""

  TRAJECTORIES = ("observations", "actions", "rewards", "mask", "query_observations")

  def __init__(self, path: str, module):
    super().__init__(path, module)
    specs = module.signatures["adapt_and_act"].structured_input_signature[1]
    self.observation_dim = int(specs["observations"].shape[-1])
    self.action_dim = int(specs["actions"].shape[-1])

  def act(self, observations) -> Dict[str, np.ndarray]:
    """The meta-policy theta (before adaptation) on observations [B, obs_dim]."""
    return self._call("act", ["observations"], [observations])

  def adapt_and_act(self, observations, actions, rewards, mask,
                    query_observations) -> Dict[str, np.ndarray]:
    """Adapts to one task's trajectories (observations [N, H, obs_dim], actions [N, H,
    act_dim], rewards and mask [N, H]) and returns the adapted policy on query_observations."""
    return self._call("adapt_and_act", self.TRAJECTORIES,
                      (observations, actions, rewards, mask, query_observations))
