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

The observation, reward and termination are written for rows of simulators at once; one
environment uses them on a row of one, and `BatchedLocomotion` (the sampler's engine) on all
its simulators after stepping each with a single `mj_step` call, without tf-agents' or
gymnasium's per-step work.
"""

import contextlib
from typing import List, Sequence

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
  def forward_reward(goal_velocity: np.ndarray, x_velocity: np.ndarray) -> np.ndarray:
    """-|v_x - v_goal| per row (float64 arrays of the rows' task values and velocities)."""
    return -np.abs(x_velocity - goal_velocity)


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
  def forward_reward(direction: np.ndarray, x_velocity: np.ndarray) -> np.ndarray:
    """d v_x per row (float64 arrays of the rows' task values and velocities)."""
    return direction * x_velocity


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
  uses_contact_forces = False  # whether the observation or reward reads cfrc_ext

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

  def _rows(self):
    """(qpos, qvel, cfrc_ext) of this simulator as a batch of one row."""
    data = self._physics.data
    return data.qpos[None], data.qvel[None], data.cfrc_ext[None]

  def _observation(self) -> np.ndarray:
    return self.observations(*self._rows())[0]

  def _reset_state(self):
    self._physics.reset()
    return self._observation()

  def _advance(self, action):
    data = self._physics.data
    x_before = data.qpos[0]
    self._physics.do_simulation(action, self._physics.frame_skip)
    x_velocity = (data.qpos[0] - x_before) / self._physics.dt
    rows = self._rows()
    reward = self.rewards(np.array([self._task[self._family.key]]), np.array([x_velocity]),
                          action[None], rows[2])[0]
    return self.observations(*rows)[0], reward, bool(self.terminated(rows[0], rows[1])[0])

  # The body's observation, reward and termination, for rows of simulators at once (one row
  # for this environment, the whole batch for `BatchedLocomotion`).

  @classmethod
  def observations(cls, qpos: np.ndarray, qvel: np.ndarray,
                   cfrc_ext: np.ndarray) -> np.ndarray:
    """float32 [rows, obs_dim]: gymnasium's observation of the body (positions without the
    root's x, velocities), so that policies see what gymnasium's agents see."""
    return np.concatenate([qpos[:, 1:], qvel], axis=1).astype(np.float32)

  @classmethod
  def rewards(cls, task_values: np.ndarray, x_velocity: np.ndarray, actions: np.ndarray,
              cfrc_ext: np.ndarray) -> np.ndarray:
    """float64 [rows]: the task's forward term minus the control cost of the clipped float32
    actions [rows, act_dim], plus the body's own terms."""
    control_cost = cls.ctrl_cost_weight * np.sum(np.square(actions), axis=1).astype(np.float64)
    return cls._family.forward_reward(task_values, x_velocity) - control_cost \
        + cls._body_rewards(cfrc_ext)

  @classmethod
  def _body_rewards(cls, cfrc_ext: np.ndarray) -> np.ndarray:
    """Reward terms of the body that do not depend on the task (none by default)."""
    return np.zeros(len(cfrc_ext))

  @classmethod
  def terminated(cls, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """bool [rows]: whether the state reached after a step is terminal (never, by default)."""
    return np.zeros(len(qpos), bool)


class _HalfCheetah(_LocomotionEnv):
  _physics_class = HalfCheetahEnv
  ctrl_cost_weight = 0.05


class _Ant(_LocomotionEnv):
  _physics_class = AntEnv
  ctrl_cost_weight = 0.5
  contact_cost_weight = 5e-4
  survive_reward = 1.0
  healthy_z_range = (0.2, 1.0)
  uses_contact_forces = True

  @classmethod
  def observations(cls, qpos, qvel, cfrc_ext):
    # gymnasium's Ant (v5): positions without the root's x and y, velocities, and the contact
    # forces of every body but the world, clipped to [-1, 1].
    contact = np.clip(cfrc_ext[:, 1:], -1.0, 1.0).reshape(len(cfrc_ext), -1)
    return np.concatenate([qpos[:, 2:], qvel, contact], axis=1).astype(np.float32)

  @classmethod
  def _body_rewards(cls, cfrc_ext):
    contact = np.clip(cfrc_ext, -1.0, 1.0).reshape(len(cfrc_ext), -1)
    return cls.survive_reward - cls.contact_cost_weight * np.sum(np.square(contact), axis=1)

  @classmethod
  def terminated(cls, qpos, qvel):
    low, high = cls.healthy_z_range
    finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
    return ~(finite & (low <= qpos[:, 2]) & (qpos[:, 2] <= high))


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


class BatchedLocomotion:
  """`count` simulators of one locomotion environment, stepped together (the sampler's engine).

  Each row owns a `MetaPyEnvironment` of ``env_class``, which supplies the row's task and its
  seeded reset (rare: once per trajectory). Steps bypass tf-agents and gymnasium: for every
  running row one `mujoco.mj_step` call advances the whole frame skip, and the observations,
  rewards and terminations of all rows come from the environment class's row-wise functions
  in a few numpy calls. The arithmetic is the environment's own, so the trajectories are the
  ones `MetaPyEnvironment.step` gives, to the bit.

  Args:
    env_class: a `_LocomotionEnv` subclass, e.g. `HalfCheetahVel`.
    count: the number of rows (simulators).
    horizon: H; a row's step type is LAST at its H-th step or when its state is terminal.
    seed: passed to every row's environment (`sample`-time reset seeds override it).
  """

  def __init__(self, env_class, count: int, horizon: int, seed: meta_env.Seed = None):
    self.env_class = env_class
    self.environments = [env_class(horizon=horizon, seed=seed) for _ in range(count)]
    self.horizon = horizon
    physics = self.environments[0].physics
    self._frame_skip, self._dt = physics.frame_skip, physics.dt
    spec = self.environments[0].action_spec()
    self._low, self._high = spec.minimum, spec.maximum
    # The rows' models are identical (one XML); stepping every row's data with one of them
    # keeps the model in cache (measured: ~15% faster than each row's own copy).
    self._model = physics.model
    self._datas = [env.physics.data for env in self.environments]
    data = self._datas[0]
    self._qpos = np.zeros((count, data.qpos.size))
    self._qvel = np.zeros((count, data.qvel.size))
    self._cfrc_ext = np.zeros((count,) + data.cfrc_ext.shape)
    self._task_values = np.zeros(count)
    self._elapsed = np.zeros(count, np.int64)
    self._task_key = env_class._family.key  # pylint: disable=protected-access

  def reset(self, row_tasks: Sequence[meta_env.Task], reset_seeds) -> np.ndarray:
    """Sets row i's task and reset seed and resets it; the observations [rows, obs_dim]."""
    observations = []
    for i, (env, task, reset_seed) in enumerate(zip(self.environments, row_tasks, reset_seeds)):
      env.set_task(task)
      env.seed(int(reset_seed))
      observations.append(env.reset().observation)
      self._qpos[i] = env.physics.data.qpos  # the next step's x before it
      self._task_values[i] = env.get_task()[self._task_key]
    self._elapsed[:] = 0
    return np.stack(observations)

  def step(self, actions: np.ndarray, running: np.ndarray):
    """Steps the running rows with actions [rows, act_dim] (clipped here): (observations,
    rewards, step types), zeros for the rows that are not running."""
    clipped = np.clip(np.asarray(actions, np.float32), self._low, self._high)
    rows = np.flatnonzero(running)
    x_before = self._qpos[:, 0].copy()  # each row's state after its last reset or step
    contact = self.env_class.uses_contact_forces
    model, frame_skip = self._model, self._frame_skip
    for i in rows:
      data = self._datas[i]
      data.ctrl[:] = clipped[i]
      mujoco.mj_step(model, data, nstep=frame_skip)
      self._qpos[i], self._qvel[i] = data.qpos, data.qvel
      if contact:  # cfrc_ext is computed only on request (as gymnasium does after each step)
        mujoco.mj_rnePostConstraint(model, data)
        self._cfrc_ext[i] = data.cfrc_ext
    x_velocity = (self._qpos[:, 0] - x_before) / self._dt
    observations = self.env_class.observations(self._qpos, self._qvel, self._cfrc_ext)
    rewards = self.env_class.rewards(self._task_values, x_velocity, clipped,
                                     self._cfrc_ext).astype(np.float32)
    self._elapsed[rows] += 1
    last = self.env_class.terminated(self._qpos, self._qvel) | (self._elapsed >= self.horizon)
    step_types = np.where(last, 2, 1).astype(np.int32)  # tf-agents StepType.LAST / MID
    stopped = ~np.asarray(running, bool)
    observations[stopped], rewards[stopped], step_types[stopped] = 0.0, 0.0, 0
    return observations, rewards, step_types

  def close(self) -> None:
    for env in self.environments:
      env.close()
