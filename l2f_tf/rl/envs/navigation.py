"""2D navigation, the point-robot meta-RL benchmark of MAML, in one and in many copies.

A point agent starts at the origin and must reach a goal drawn from U[-0.5, 0.5]^2 per task.
The action is a velocity, clipped to [-0.1, 0.1]^2; the reward is minus the distance to the goal
after the move; an episode ends after `horizon` steps, or with a termination when the agent is
within 0.01 of the goal in both coordinates (|dx| < 0.01 and |dy| < 0.01: a square, as in
MAML-RL, not a disc). The observation is the agent's position.

`Navigation2D` is the reference single environment. `BatchedNavigation2D` steps every
trajectory of every task of a meta-batch in one numpy call (the same arithmetic, row by row),
which a Python loop over single environments cannot match.
"""

from typing import List, Sequence

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.trajectories import time_step as ts

from l2f_tf.rl.envs import meta_env

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_SPEED = 0.1
GOAL_TOLERANCE = 0.01  # per coordinate: the goal region is a square
DEFAULT_HORIZON = 100
OBSERVATION_SPEC = meta_env.float_spec((2,), -np.inf, np.inf, "observation")
ACTION_SPEC = meta_env.float_spec((2,), -MAX_SPEED, MAX_SPEED, "action")


def sample_goal_tasks(num_tasks: int, seed: meta_env.Seed = None) -> List[meta_env.Task]:
  """Draws navigation tasks {"goal": float64 array (2,)} from U[-0.5, 0.5]^2; seeded."""
  num_tasks = meta_env.positive_int(num_tasks, "num_tasks", minimum=0)
  goals = np.random.default_rng(seed).uniform(GOAL_LOW, GOAL_HIGH, size=(num_tasks, 2))
  return [{"goal": goal} for goal in goals]


def _goal_of(task: meta_env.Task) -> np.ndarray:
  """The validated goal of a navigation task as a float64 array (2,)."""
  if not isinstance(task, dict) or "goal" not in task:
    raise ValueError(f"A navigation task is a dict with key 'goal', got {task!r}.")
  goal = np.array(task["goal"], dtype=np.float64)
  if goal.shape != (2,) or not np.all(np.isfinite(goal)):
    raise ValueError(f"A navigation goal is 2 finite numbers, got {task['goal']!r}.")
  return goal


def _at_goal(position: np.ndarray, goal: np.ndarray) -> np.ndarray:
  """Whether |dx| < 0.01 and |dy| < 0.01 (over the last axis)."""
  return np.all(np.abs(position - goal) < GOAL_TOLERANCE, axis=-1)


def _distance(position: np.ndarray, goal: np.ndarray) -> np.ndarray:
  """Euclidean distance over the last axis, written out so both classes round identically."""
  delta = position - goal
  return np.sqrt(delta[..., 0] * delta[..., 0] + delta[..., 1] * delta[..., 1])


class Navigation2D(meta_env.MetaPyEnvironment):
  """Point-robot navigation to a per-task goal (one trajectory at a time).

  Tasks are dicts {"goal": array (2,)}; ``seed`` seeds the initial task (the dynamics are
  deterministic).
  """

  def __init__(self, horizon: int = DEFAULT_HORIZON, seed: meta_env.Seed = None):
    self._position = np.zeros(2)
    super().__init__(OBSERVATION_SPEC, ACTION_SPEC, horizon, seed)

  def _sample_tasks(self, rng, num_tasks):
    return sample_goal_tasks(num_tasks, rng)

  def _check_task(self, task):
    return {"goal": _goal_of(task)}

  def _reset_state(self):
    self._position = np.zeros(2)
    return self._position.astype(np.float32)

  def _advance(self, action):
    self._position = self._position + action
    distance = _distance(self._position, self._task["goal"])
    done = bool(_at_goal(self._position, self._task["goal"]))
    return self._position.astype(np.float32), -distance, done


class BatchedNavigation2D(py_environment.PyEnvironment):
  """`num_tasks` x `trajectories_per_task` navigation environments stepped together.

  Row `i` of every batched array belongs to task `i // trajectories_per_task` (task-major
  order). Rows behave exactly like independent `Navigation2D`s wrapped in a tf-agents
  `BatchedPyEnvironment`: a row whose previous step was its last restarts on the next step
  (its action is ignored and it returns `StepType.FIRST`), while the other rows keep going.
  `reset()` restarts every row. ``seed`` seeds the initial tasks.
  """

  def __init__(self, num_tasks: int, trajectories_per_task: int,
               horizon: int = DEFAULT_HORIZON, seed: meta_env.Seed = None):
    super().__init__(handle_auto_reset=False)  # rows restart one by one, see _step
    self.num_tasks = meta_env.positive_int(num_tasks, "num_tasks")
    self.trajectories_per_task = meta_env.positive_int(trajectories_per_task,
                                                   "trajectories_per_task")
    self.horizon = meta_env.positive_int(horizon, "horizon")
    self._batch_size = self.num_tasks * self.trajectories_per_task
    self._position = np.zeros((self._batch_size, 2))
    self._elapsed = np.zeros(self._batch_size, dtype=np.int64)
    self._ended = np.zeros(self._batch_size, dtype=bool)
    self.set_tasks(self.sample_tasks(self.num_tasks, seed))

  @property
  def batched(self) -> bool:
    return True

  @property
  def batch_size(self) -> int:
    return self._batch_size

  @property
  def elapsed_steps(self) -> np.ndarray:
    """int64 (batch_size,): the time index of each row's current observation."""
    return self._elapsed.copy()

  def observation_spec(self):
    return OBSERVATION_SPEC

  def action_spec(self):
    return ACTION_SPEC

  def sample_tasks(self, num_tasks: int, seed: meta_env.Seed = None) -> List[meta_env.Task]:
    """Same tasks as `Navigation2D.sample_tasks` for the same seed."""
    return sample_goal_tasks(num_tasks, seed)

  def set_tasks(self, tasks: Sequence[meta_env.Task]) -> None:
    """Sets the `num_tasks` tasks (e.g. from `sample_tasks`) from the next step on."""
    if len(tasks) != self.num_tasks:
      raise ValueError(f"BatchedNavigation2D was built for num_tasks={self.num_tasks}, "
                       f"got {len(tasks)} tasks.")
    goals = np.stack([_goal_of(task) for task in tasks])
    self._goals = np.repeat(goals, self.trajectories_per_task, axis=0)

  def get_tasks(self) -> List[meta_env.Task]:
    """Copies of the `num_tasks` current tasks."""
    return [{"goal": goal.copy()} for goal in self._goals[::self.trajectories_per_task]]

  def _reset(self) -> ts.TimeStep:
    self._position = np.zeros((self._batch_size, 2))
    self._elapsed[:] = 0
    self._ended[:] = False
    return ts.restart(self._position.astype(np.float32), batch_size=self._batch_size)

  def _step(self, action) -> ts.TimeStep:
    action = np.asarray(action, dtype=np.float32)
    if action.shape != (self._batch_size, 2):
      raise ValueError(f"BatchedNavigation2D expects actions of shape "
                       f"{(self._batch_size, 2)}, got {action.shape}.")
    action = np.clip(action, -MAX_SPEED, MAX_SPEED)
    restart = self._ended
    moving = ~restart
    self._position = np.where(restart[:, None], 0.0, self._position + action)
    self._elapsed = np.where(restart, 0, self._elapsed + 1)
    distance = _distance(self._position, self._goals)
    reached = moving & _at_goal(self._position, self._goals)
    timed_out = moving & ~reached & (self._elapsed >= self.horizon)
    self._ended = reached | timed_out
    step_type = np.where(restart, ts.StepType.FIRST,
                         np.where(self._ended, ts.StepType.LAST, ts.StepType.MID))
    reward = np.where(moving, -distance, 0.0).astype(np.float32)
    discount = np.where(reached, 0.0, 1.0).astype(np.float32)
    return ts.TimeStep(step_type.astype(np.int32), reward, discount,
                       self._position.astype(np.float32))
