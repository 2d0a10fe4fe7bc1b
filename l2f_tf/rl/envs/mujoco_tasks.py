"""MuJoCo locomotion meta-RL tasks: HalfCheetah and Ant with a goal velocity or direction.

Gymnasium's MuJoCo models (`HalfCheetahEnv`, `AntEnv`, v5) supply the physics, the observation
and the seeded reset noise only; the task rewards are computed here from the simulator state,
as the common meta-RL code does, so that they do not depend on gymnasium's reward options:

- forward velocity v_x = (x_after - x_before) / dt, from the root's qpos[0] around one step;
- HalfCheetahVel: r = -|v_x - v_goal| - 0.05 ||a||^2, v_goal ~ U[0, 2];
- HalfCheetahDir: r = d * v_x - 0.05 ||a||^2, d = +1 or -1 with probability 0.5;
- AntVel / AntDir: the same forward terms (v_goal ~ U[0, 3]) + 1 (survive bonus)
  - 0.5 ||a||^2 - 5e-4 ||clip(cfrc_ext, -1, 1)||^2 (contact cost), and the episode terminates
  when the torso height qpos[2] leaves [0.2, 1.0] (or the state is not finite).

The Ant's control and contact weights are those of gymnasium's Ant and of ProMP / PEARL; the
ones of the HalfCheetah are fixed by the reference. Nothing is rendered.
"""

import contextlib
from typing import List

from absl import logging
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
import mujoco
import numpy as np

from l2f_tf.rl.envs import meta_env

DEFAULT_HORIZON = 200
_LOGGED_WARNINGS = set()


def _log_once(message: str) -> None:
  """Logs each distinct MuJoCo warning once per process (a sampler builds hundreds of envs)."""
  if message not in _LOGGED_WARNINGS:
    _LOGGED_WARNINGS.add(message)
    logging.info("MuJoCo: %s", message)


@contextlib.contextmanager
def _mujoco_warnings_to_logging():
  """Sends MuJoCo warnings to absl logging, not to MUJOCO_LOG.TXT in the working directory.

  Gymnasium's half_cheetah.xml uses a compiler attribute MuJoCo 4 deprecates (settotalmass),
  so otherwise every HalfCheetah built appends a line to MUJOCO_LOG.TXT wherever the user
  runs. Warnings while simulating are left to MuJoCo.
  """
  previous = mujoco.get_mju_user_warning()
  mujoco.set_mju_user_warning(_log_once)
  try:
    yield
  finally:
    mujoco.set_mju_user_warning(previous)


class _VelocityTask:
  """Run at a target forward velocity v_goal ~ U[0, max_velocity]: forward term -|v_x - v_goal|."""

  key = "velocity"

  def __init__(self, max_velocity: float):
    self.max_velocity = max_velocity

  def sample(self, rng: np.random.Generator, num_tasks: int) -> List[meta_env.Task]:
    return [{"velocity": float(v)} for v in rng.uniform(0.0, self.max_velocity, num_tasks)]

  def check(self, value: float) -> float:
    if not np.isfinite(value):
      raise ValueError(f"A velocity task's 'velocity' is a finite number, got {value!r}.")
    return float(value)

  @staticmethod
  def forward_reward(task: meta_env.Task, x_velocity: float) -> float:
    return -abs(x_velocity - task["velocity"])


class _DirectionTask:
  """Run forward (d = +1) or backward (d = -1), each with probability 0.5: forward term d v_x."""

  key = "direction"

  def sample(self, rng: np.random.Generator, num_tasks: int) -> List[meta_env.Task]:
    return [{"direction": float(d)} for d in rng.choice([-1.0, 1.0], size=num_tasks)]

  def check(self, value: float) -> float:
    if value not in (-1, 1):
      raise ValueError(f"A direction task's 'direction' is +1 or -1, got {value!r}.")
    return float(value)

  @staticmethod
  def forward_reward(task: meta_env.Task, x_velocity: float) -> float:
    return task["direction"] * x_velocity


class _LocomotionEnv(meta_env.MetaPyEnvironment):
  """A gymnasium MuJoCo body driven through its simulator, with a task-dependent reward.

  Subclasses set `_physics_class` (the gymnasium env class), `ctrl_cost_weight` and `_family`
  (a `_VelocityTask` or `_DirectionTask`), and may add body-specific reward terms and a
  termination rule. ``seed`` seeds the initial task and the reset noise (every reset after
  construction continues one seeded stream).
  """

  _physics_class = None
  ctrl_cost_weight = 0.0
  _family = None

  def __init__(self, horizon: int = DEFAULT_HORIZON, seed: meta_env.Seed = None):
    with _mujoco_warnings_to_logging():
      self._physics = self._physics_class()  # render_mode None: no rendering context is made
    self._physics.reset(seed=seed)  # seeds the reset-noise generator
    low, high = self._physics.action_space.low, self._physics.action_space.high
    observation_size = self._physics.observation_space.shape[0]
    super().__init__(meta_env.float_spec((observation_size,), -np.inf, np.inf, "observation"),
                     meta_env.float_spec(low.shape, low, high, "action"), horizon, seed)

  @property
  def physics(self):
    """The gymnasium MuJoCo env that holds the model and data (e.g. for `set_state`)."""
    return self._physics

  def seed(self, seed: meta_env.Seed) -> None:
    """Reseeds the reset noise; the next `reset()` draws from the new stream."""
    self._physics.reset(seed=seed)

  def close(self) -> None:
    self._physics.close()

  def _sample_tasks(self, rng, num_tasks):
    return self._family.sample(rng, num_tasks)

  def _check_task(self, task):
    if not isinstance(task, dict) or self._family.key not in task:
      raise ValueError(f"A {type(self).__name__} task is a dict with key "
                       f"{self._family.key!r}, got {task!r}.")
    return {self._family.key: self._family.check(task[self._family.key])}

  def _observation(self) -> np.ndarray:
    # gymnasium's own observation of the body (positions without x(, y), velocities, and for
    # the Ant the clipped contact forces), so policies see what gymnasium's agents see.
    return self._physics._get_obs().astype(np.float32)  # pylint: disable=protected-access

  def _reset_state(self):
    self._physics.reset()
    return self._observation()

  def _advance(self, action):
    data = self._physics.data
    x_before = data.qpos[0]
    self._physics.do_simulation(action, self._physics.frame_skip)
    x_velocity = (data.qpos[0] - x_before) / self._physics.dt
    reward = (self._family.forward_reward(self._task, x_velocity)
              - self.ctrl_cost_weight * float(np.sum(np.square(action)))
              + self._body_reward())
    return self._observation(), reward, self._terminated()

  def _body_reward(self) -> float:
    """Reward terms of the body that do not depend on the task (none by default)."""
    return 0.0

  def _terminated(self) -> bool:
    """Whether the state reached after a step is terminal (never, by default)."""
    return False


class _HalfCheetah(_LocomotionEnv):
  _physics_class = HalfCheetahEnv
  ctrl_cost_weight = 0.05


class _Ant(_LocomotionEnv):
  _physics_class = AntEnv
  ctrl_cost_weight = 0.5
  contact_cost_weight = 5e-4
  survive_reward = 1.0
  healthy_z_range = (0.2, 1.0)

  def _body_reward(self):
    contact_forces = np.clip(self._physics.data.cfrc_ext, -1.0, 1.0)
    return self.survive_reward - self.contact_cost_weight * float(np.sum(np.square(contact_forces)))

  def _terminated(self):
    state = self._physics.state_vector()
    low, high = self.healthy_z_range
    return not (np.all(np.isfinite(state)) and low <= state[2] <= high)


class HalfCheetahVel(_HalfCheetah):
  """HalfCheetah running at a target velocity ~ U[0, 2]. Tasks are dicts {"velocity": float}."""
  _family = _VelocityTask(max_velocity=2.0)


class HalfCheetahDir(_HalfCheetah):
  """HalfCheetah running forward or backward. Tasks are dicts {"direction": +1.0 or -1.0}."""
  _family = _DirectionTask()


class AntVel(_Ant):
  """Ant running at a target velocity ~ U[0, 3]. Tasks are dicts {"velocity": float}."""
  _family = _VelocityTask(max_velocity=3.0)


class AntDir(_Ant):
  """Ant running forward or backward. Tasks are dicts {"direction": +1.0 or -1.0}."""
  _family = _DirectionTask()
