"""The task interface shared by every meta-RL environment.

Meta-RL samples a batch of tasks, adapts a policy to each one and evaluates the adapted policy
on the same task. An environment therefore needs, besides the tf-agents `PyEnvironment`
interface, a way to draw reproducible tasks and to switch the task it simulates:
`MetaPyEnvironment`. It also holds what every environment here shares: a fixed horizon that
ends an episode with a truncation (discount 1), clipping of actions to the action spec, and
an elapsed-step counter (the time index of the current observation). A subclass describes its
dynamics (`_reset_state`, `_advance`) and its task distribution (`_sample_tasks`,
`_check_task`).
"""

import abc
import copy
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

Task = Dict[str, Any]
Seed = Optional[Any]  # anything np.random.default_rng accepts


def float_spec(shape, minimum, maximum, name: str) -> array_spec.BoundedArraySpec:
  """A float32 `BoundedArraySpec` (the only spec type the environments here use)."""
  return array_spec.BoundedArraySpec(
      shape=tuple(shape), dtype=np.float32, minimum=minimum, maximum=maximum, name=name)


def positive_int(value, name: str, minimum: int = 1) -> int:
  """``value`` as an int >= ``minimum`` (1 or 0), or a ValueError naming the setting."""
  if int(value) != value or value < minimum:
    kind = "positive" if minimum else "non-negative"
    raise ValueError(f"{name} must be a {kind} integer, got {value!r}.")
  return int(value)


class MetaPyEnvironment(py_environment.PyEnvironment, metaclass=abc.ABCMeta):
  """A tf-agents `PyEnvironment` that simulates one task of a task distribution at a time.

  Episodes start with `StepType.FIRST`, end with a termination (discount 0) when the subclass
  says the state is terminal, and otherwise with a truncation (discount 1) after `horizon`
  steps. Stepping after the last step of an episode starts a new one (the action is ignored),
  as tf-agents expects. Actions are clipped to the action spec before the dynamics and the
  reward see them, because a Gaussian policy's samples are unbounded.

  Every environment is built with a task set (the first task `sample_tasks(1, seed)` draws);
  `set_task` changes it from the next step on (call it before `reset` for a whole episode).

  Args:
    observation_spec: float32 spec of one observation.
    action_spec: float32 spec of one action; actions are clipped to its bounds.
    horizon: number of steps after which an episode is truncated.
    seed: seed of the initial task (and, in subclasses, of any reset noise).
  """

  def __init__(self, observation_spec: array_spec.BoundedArraySpec,
               action_spec: array_spec.BoundedArraySpec, horizon: int, seed: Seed = None):
    super().__init__(handle_auto_reset=True)
    self._specs = observation_spec, action_spec
    self.horizon = positive_int(horizon, "horizon")
    self._elapsed_steps = 0
    self._task = self._check_task(self.sample_tasks(1, seed)[0])

  def observation_spec(self) -> array_spec.BoundedArraySpec:
    return self._specs[0]

  def action_spec(self) -> array_spec.BoundedArraySpec:
    return self._specs[1]

  @property
  def elapsed_steps(self) -> int:
    """Steps taken in the current episode: the time index of the current observation."""
    return self._elapsed_steps

  def sample_tasks(self, num_tasks: int, seed: Seed = None) -> List[Task]:
    """``num_tasks`` task dicts for `set_task`, from a fresh generator seeded by ``seed``."""
    return self._sample_tasks(np.random.default_rng(seed),
                              positive_int(num_tasks, "num_tasks", minimum=0))

  def set_task(self, task: Task) -> None:
    """Makes `task` (a dict as returned by `sample_tasks`) the task this environment simulates."""
    self._task = self._check_task(task)

  def get_task(self) -> Task:
    """A copy of the current task dict."""
    return copy.deepcopy(self._task)

  def _reset(self) -> ts.TimeStep:
    self._elapsed_steps = 0
    return ts.restart(self._reset_state())

  def _step(self, action) -> ts.TimeStep:
    action = np.asarray(action, dtype=np.float32)
    spec = self.action_spec()
    if action.shape != spec.shape:
      raise ValueError(f"{type(self).__name__} expects an action of shape {spec.shape}, got "
                       f"{action.shape}.")
    observation, reward, terminated = self._advance(np.clip(action, spec.minimum, spec.maximum))
    self._elapsed_steps += 1
    reward = np.asarray(reward, dtype=np.float32)
    if terminated:
      return ts.termination(observation, reward)
    if self._elapsed_steps >= self.horizon:
      return ts.truncation(observation, reward)
    return ts.transition(observation, reward)

  @abc.abstractmethod
  def _sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> List[Task]:
    """Draws `num_tasks` tasks with `rng`."""

  @abc.abstractmethod
  def _check_task(self, task: Task) -> Task:
    """A validated private copy of `task`; raises ValueError if it is malformed."""

  @abc.abstractmethod
  def _reset_state(self) -> np.ndarray:
    """Resets the simulated state and returns the first observation (float32)."""

  @abc.abstractmethod
  def _advance(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool]:
    """Applies a clipped action; returns (observation, reward, terminated)."""
