"""The meta-RL domain: which environment, how many tasks and trajectories, the policy network.

Configured in gin (``run_experiment.domain = @MetaRLDomain()`` with
``run_experiment.trainer = @MetaRLTrainer``, which trains it with TRPO in the outer loop).
Meta-RL needs the ``rl`` extra (`l2f_tf.extras`): this module imports without it, so that gin
knows every configurable of a default install; building a `MetaRLDomain` without it raises a
one-line `l2f_tf.extras.MissingExtraError` naming the install command.
"""

from typing import TYPE_CHECKING, Sequence

import gin
import keras

from l2f_tf import extras
from l2f_tf.domains.base import Domain
from l2f_tf.models.gaussian_policy import gaussian_policy
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import returns as returns_lib

if TYPE_CHECKING:  # (the sampler's simulators need the rl extra)
  from l2f_tf.rl.sampler import Sampler

INNER_OBJECTIVES = {"reinforce": pg.reinforce_loss, "lvc": pg.lvc_loss}


@gin.configurable
class MetaRLDomain(Domain):
  """A meta-RL problem with the reference settings (docs/settings.md, section 5).

  Args:
    env_name: "Navigation2D", "HalfCheetahVel", "HalfCheetahDir", "AntVel" or "AntDir".
    meta_batch_size: tasks per meta-iteration (20 for navigation, 40 for MuJoCo).
    trajectories_per_task: trajectories per task and adaptation step (20).
    horizon: episode length (100 for navigation, 200 for MuJoCo).
    hidden_units: the Gaussian policy's hidden layers (64-64 tanh).
    eval_seed: seed of the held-out tasks (the same for every model: paired comparisons).
    num_workers: MuJoCo only: worker processes that step the simulators (0: in-process).
    inner_objective: the inner-loop loss: "reinforce" (MAML-RL's, the reference) or "lvc"
      (ProMP's low-variance curvature, `l2f_tf.rl.policy_gradient.lvc_loss`).
    averaging: how the inner loss, the TRPO surrogate and KL, and the advantage normalisation
      average over a task's trajectories: "trajectory" (MAML-RL's: within each trajectory,
      then over trajectories) or "step" (over all valid steps).
  """

  metric_name = "return"

  def __init__(self, env_name: str = "Navigation2D", meta_batch_size: int = 20,
               trajectories_per_task: int = 20, horizon: int = 100,
               hidden_units: Sequence[int] = (64, 64), eval_seed: int = 20200614,
               num_workers: int = 0, inner_objective: str = "reinforce",
               averaging: str = "trajectory"):
    extras.require("rl", "Meta-RL (MetaRLDomain)")
    from l2f_tf.rl import envs  # pylint: disable=g-import-not-at-top  (needs the rl extra)
    envs.check_env_name(env_name, "MetaRLDomain.env_name")
    if meta_batch_size < 1:
      raise ValueError(f"MetaRLDomain.meta_batch_size must be >= 1, got {meta_batch_size}.")
    if inner_objective not in INNER_OBJECTIVES:
      raise ValueError(f"MetaRLDomain.inner_objective must be one of {sorted(INNER_OBJECTIVES)}, "
                       f"got {inner_objective!r}.")
    if averaging not in returns_lib.AVERAGING:
      raise ValueError(f"MetaRLDomain.averaging must be one of {returns_lib.AVERAGING}, got "
                       f"{averaging!r}.")
    self.env_name, self.meta_batch_size = env_name, meta_batch_size
    self.trajectories_per_task, self.horizon = trajectories_per_task, horizon
    self.hidden_units, self.eval_seed = tuple(hidden_units), eval_seed
    self.num_workers, self.inner_objective, self.averaging = (num_workers, inner_objective,
                                                              averaging)
    self._sampler = None

  @property
  def name(self) -> str:
    return self.env_name

  @property
  def sampler(self) -> "Sampler":
    """The (cached) sampler; building MuJoCo simulators is slow."""
    if self._sampler is None:
      from l2f_tf.rl.sampler import Sampler  # pylint: disable=g-import-not-at-top
      self._sampler = Sampler(self.env_name, self.meta_batch_size, self.trajectories_per_task,
                              self.horizon, seed=0, num_workers=self.num_workers)
    return self._sampler

  def make_network(self) -> keras.Model:
    return gaussian_policy(self.sampler.observation_size, self.sampler.action_size,
                           hidden_units=self.hidden_units)

  def loss_fn(self, y_true, y_pred):
    """The inner-loop loss (its gradient is the policy gradient for either objective)."""
    return INNER_OBJECTIVES[self.inner_objective](y_true, y_pred)
