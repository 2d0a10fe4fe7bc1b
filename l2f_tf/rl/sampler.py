"""Samples the trajectories of a meta-batch of tasks with a Gaussian policy.

Every meta-RL iteration samples, for each of T tasks, N trajectories with the pre-adaptation
policy, and then N more with each task's adapted policy. `Sampler` does one such round per
`sample` call: it steps the T * N environments of a meta-batch in lock step and asks the caller's
`policy_fn` for the action distribution of all of them at once, so the policy (a TensorFlow
network with per-task fast weights) runs once per time step rather than once per environment.

The policy is a diagonal Gaussian with a state-dependent mean and a state-independent log-std
per task. The sampler draws the noise itself from a numpy Generator seeded by `sample`'s seed,
and also seeds the environments' reset noise from it, so the same seed gives the same batch.
The logged action is the unclipped sample (the one whose log-likelihood the policy gradient
needs); the environment clips it to its action bounds when it steps.

2D navigation is stepped by `BatchedNavigation2D`, all T * N rows in one numpy call, because
the meta-RL loop needs tens of thousands of steps per second; the MuJoCo tasks keep one
simulator per (task, trajectory), built once and reused by every call, stepped in a Python
loop. Environments are not spread over processes: on the small CPUs this runs on, the
simulators are cheap next to the policy call and the process round trips would eat the gain.
"""

import time
from typing import Any, Callable, List, NamedTuple, Sequence, Tuple

from absl import logging
import numpy as np

from l2f_tf.progress import rate_text_of
from l2f_tf.rl import envs
from l2f_tf.rl.envs import base

PolicyFn = Callable[[np.ndarray], Tuple[Any, Any]]
NAVIGATION = "Navigation2D"
_LAST = 2  # tf_agents StepType.LAST, as an int for fast numpy comparisons


class Trajectories(NamedTuple):
  """One meta-batch of trajectories; numpy arrays with axes [task, trajectory, time, ...].

  Time step t (the position along the horizon axis) holds the observation the policy saw, the
  action it sampled and the reward the environment returned for that action. Episodes that end
  before the horizon (a navigation agent reaching its goal, an Ant falling over) are padded
  with zeros, and `mask` tells the real steps from the padding.

  Attributes:
    observations: float32 [T, N, H, obs_dim].
    actions: float32 [T, N, H, act_dim], the sampled actions before the environment clips them.
    rewards: float32 [T, N, H].
    mask: float32 [T, N, H]; 1 for every step of the episode, its last step included, and 0
      after it ended.
    num_steps: number of environment steps taken, i.e. the sum of `mask`.
  """
  observations: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  mask: np.ndarray
  num_steps: int


class Sampler:
  """Steps T tasks x N trajectories of one environment with a caller-given Gaussian policy.

  The environments are built once, in the constructor, and every `sample` call sets their
  tasks and resets them, so building (slow for MuJoCo) is not repeated per meta-iteration.
  """

  def __init__(self, env_name: str, num_tasks: int, trajectories_per_task: int, horizon: int,
               seed: base.Seed = 0, num_workers: int = 0):
    """Builds the environments.

    Args:
      env_name: one of `envs.ENVIRONMENTS` ("Navigation2D", "HalfCheetahVel", "HalfCheetahDir",
        "AntVel", "AntDir").
      num_tasks: T, the number of tasks of each `sample` call (the meta-batch size).
      trajectories_per_task: N, the number of trajectories sampled for each task.
      horizon: H, the episode length (episodes may end earlier).
      seed: seeds the environments' construction and the seeds of `sample` calls made without
        one, so a run that never passes a seed is still reproducible.
      num_workers: MuJoCo only: step the simulators in this many worker processes (each owns
        a contiguous slice of the T * N environments; same results as in-process, which
        0 means). Worth it when the simulators, not the policy, dominate (Ant, many cores).
    """
    envs.check_env_name(env_name)
    for name, value in (("num_tasks", num_tasks), ("trajectories_per_task",
                                                    trajectories_per_task)):
      if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    self._env_name = env_name
    self._num_tasks = int(num_tasks)
    self._per_task = int(trajectories_per_task)
    self._horizon = base.check_horizon(horizon)
    self._rng = np.random.default_rng(seed)
    self.last_steps_per_second = float("nan")
    self._workers = None
    if env_name == NAVIGATION:
      self._batched_env = envs.BatchedNavigation2D(self._num_tasks, self._per_task,
                                                   horizon=self._horizon, seed=seed)
      self._envs = []
      spec_env = self._batched_env
    else:
      self._batched_env = None
      count = self._num_tasks * self._per_task
      self._workers = _WorkerPool(env_name, self._horizon, seed, count, num_workers) \
          if num_workers > 0 else None
      self._envs = [] if self._workers else [
          envs.make_env(env_name, horizon=self._horizon, seed=seed) for _ in range(count)]
      spec_env = self._envs[0] if self._envs else envs.make_env(env_name,
                                                                horizon=self._horizon)
    self._observation_spec = spec_env.observation_spec()
    self._action_spec = spec_env.action_spec()

  @property
  def env_name(self) -> str:
    return self._env_name

  @property
  def num_tasks(self) -> int:
    return self._num_tasks

  @property
  def trajectories_per_task(self) -> int:
    return self._per_task

  @property
  def horizon(self) -> int:
    return self._horizon

  @property
  def observation_size(self) -> int:
    """obs_dim, the length of one observation."""
    return int(self._observation_spec.shape[0])

  @property
  def action_size(self) -> int:
    """act_dim, the length of one action."""
    return int(self._action_spec.shape[0])

  def observation_spec(self):
    """The tf-agents array spec of one observation."""
    return self._observation_spec

  def action_spec(self):
    """The tf-agents array spec of one action (the bounds the environments clip to)."""
    return self._action_spec

  def sample(self, tasks: Sequence[base.Task], policy_fn: PolicyFn,
             seed: base.Seed = None) -> Trajectories:
    """Samples N trajectories of each of the T tasks.

    Args:
      tasks: T task dicts, e.g. from the environment's `sample_tasks`; task i's trajectories
        are row i of every returned array.
      policy_fn: maps the current observations, float32 [T, N, obs_dim] grouped by task, to
        (mean [T, N, act_dim], log_std [T, act_dim]), tensors or arrays. It is called once per
        time step for every environment, including those whose episode has ended (their
        outputs are ignored).
      seed: seeds the action noise and the environments' reset noise; the same seed gives the
        same batch. None draws one from the sampler's own seeded stream.

    Returns:
      The `Trajectories`, with `num_steps` the environment steps taken.
    """
    if len(tasks) != self._num_tasks:
      raise ValueError(f"The sampler was built for num_tasks={self._num_tasks}, got "
                       f"{len(tasks)} tasks.")
    if seed is None:
      seed = int(self._rng.integers(2**63))
    rng = np.random.default_rng(seed)
    shape = (self._num_tasks, self._per_task)
    batch = self._num_tasks * self._per_task
    reset_seeds = rng.integers(2**31, size=batch)
    noise = rng.standard_normal((self._horizon,) + shape + (self.action_size,),
                                dtype=np.float32)
    start = time.perf_counter()
    if self._batched_env is not None:
      step_fn = self._navigation_steps(tasks)
    elif self._workers is not None:
      step_fn = self._workers.steps(tasks, self._per_task, reset_seeds)
    else:
      step_fn = self._mujoco_steps(tasks, reset_seeds)
    trajectories = self._roll_out(step_fn, policy_fn, noise)
    elapsed = time.perf_counter() - start
    self.last_steps_per_second = trajectories.num_steps / max(elapsed, 1e-9)
    logging.log_every_n_seconds(
        logging.INFO, "%s sampler: %d tasks x %d trajectories, %d env steps at %s.",
        60, self._env_name, self._num_tasks, self._per_task, trajectories.num_steps,
        rate_text_of(self.last_steps_per_second, "env step"))
    return trajectories

  def close(self) -> None:
    """Releases the MuJoCo simulators (nothing to release for navigation)."""
    for env in self._envs:
      env.close()
    if getattr(self, "_workers", None) is not None:
      self._workers.close()
      self._workers = None

  def _roll_out(self, steps, policy_fn: PolicyFn, noise: np.ndarray) -> Trajectories:
    """Runs the lock-step loop shared by both kinds of environment.

    Args:
      steps: a generator that first yields the reset observations [T*N, obs_dim], then, for
        every (actions [T*N, act_dim], running [T*N] bool) sent to it, yields (observations,
        rewards, step_types) after the step; it may step only the rows still running, as the
        other rows are masked out.
      policy_fn: see `sample`.
      noise: float32 [H, T, N, act_dim] standard normal noise.

    Returns:
      The `Trajectories`, padding zeroed.
    """
    num_tasks, per_task, horizon = self._num_tasks, self._per_task, self._horizon
    batch = num_tasks * per_task
    obs_dim, act_dim = self.observation_size, self.action_size
    observations = np.zeros((horizon, batch, obs_dim), np.float32)
    actions = np.zeros((horizon, batch, act_dim), np.float32)
    rewards = np.zeros((horizon, batch), np.float32)
    mask = np.zeros((horizon, batch), np.float32)
    running = np.ones(batch, dtype=bool)
    observation = next(steps)
    for t in range(horizon):
      observations[t] = observation
      mask[t] = running
      mean, log_std = self._call_policy(policy_fn, observation.reshape(num_tasks, per_task,
                                                                       obs_dim))
      action = mean + np.exp(log_std)[:, None, :] * noise[t]
      actions[t] = action.reshape(batch, act_dim)
      observation, reward, step_type = steps.send((actions[t], running))
      rewards[t] = reward
      running = running & (step_type != _LAST)
      if not running.any():
        break
    steps.close()
    observations *= mask[..., None]
    actions *= mask[..., None]
    rewards *= mask

    def task_major(array):
      return np.ascontiguousarray(np.moveaxis(array, 0, 1)).reshape(
          (num_tasks, per_task, horizon) + array.shape[2:])

    return Trajectories(task_major(observations), task_major(actions), task_major(rewards),
                        task_major(mask), int(mask.sum()))

  def _call_policy(self, policy_fn: PolicyFn,
                   observation: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Calls `policy_fn` and checks its output, naming the shapes it must have."""
    outputs = policy_fn(observation)
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
      raise ValueError(f"policy_fn must return (mean, log_std), got {type(outputs).__name__}.")
    mean = np.asarray(outputs[0], dtype=np.float32)
    log_std = np.asarray(outputs[1], dtype=np.float32)
    expected_mean = (self._num_tasks, self._per_task, self.action_size)
    expected_log_std = (self._num_tasks, self.action_size)
    if mean.shape != expected_mean:
      raise ValueError(f"policy_fn returned a mean of shape {mean.shape}; expected [T, N, "
                       f"act_dim] = {expected_mean} for observations of shape "
                       f"{observation.shape}.")
    if log_std.shape != expected_log_std:
      raise ValueError(f"policy_fn returned a log_std of shape {log_std.shape}; expected a "
                       f"state-independent log-std per task, [T, act_dim] = "
                       f"{expected_log_std}.")
    if not (np.isfinite(mean).all() and np.isfinite(log_std).all()):
      raise ValueError("policy_fn returned a non-finite mean or log_std (diverged policy?).")
    return mean, log_std

  def _navigation_steps(self, tasks: Sequence[base.Task]):
    """The `_roll_out` step generator of the batched 2D navigation (one numpy call a step)."""
    env = self._batched_env
    env.set_tasks(tasks)
    time_step = env.reset()
    action, _ = yield time_step.observation
    while True:
      # Rows whose episode ended restart here (tf-agents semantics); their outputs are masked.
      time_step = env.step(action)
      action, _ = yield time_step.observation, time_step.reward, time_step.step_type

  def _mujoco_steps(self, tasks: Sequence[base.Task], reset_seeds: np.ndarray):
    """The `_roll_out` step generator of the MuJoCo tasks: one simulator per trajectory."""
    environments: List[base.MetaPyEnvironment] = self._envs
    observation = np.zeros((len(environments), self.observation_size), np.float32)
    for i, env in enumerate(environments):
      env.set_task(tasks[i // self._per_task])
      env.seed(int(reset_seeds[i]))
      observation[i] = env.reset().observation
    reward = np.zeros(len(environments), np.float32)
    step_type = np.zeros(len(environments), np.int32)
    action, running = yield observation.copy()
    while True:
      for i in np.flatnonzero(running):
        time_step = environments[i].step(action[i])
        observation[i] = time_step.observation
        reward[i] = time_step.reward
        step_type[i] = time_step.step_type
      action, running = yield observation.copy(), reward.copy(), step_type.copy()



def _worker(connection, env_name: str, horizon: int, seed, count: int) -> None:
  """A worker process: owns `count` simulators and steps them on request."""
  environments = [envs.make_env(env_name, horizon=horizon, seed=seed) for _ in range(count)]
  while True:
    try:
      command, payload = connection.recv()
    except EOFError:  # the parent went away (exited or dropped the pool): stop quietly
      command, payload = "close", None
    if command == "reset":
      observations = []
      for env, (task, reset_seed) in zip(environments, payload):
        env.set_task(task)
        env.seed(int(reset_seed))
        observations.append(env.reset().observation)
      connection.send(np.stack(observations))
    elif command == "step":
      actions, running = payload
      observation = np.zeros((count, environments[0].observation_spec().shape[0]), np.float32)
      reward = np.zeros(count, np.float32)
      step_type = np.zeros(count, np.int32)
      for i in np.flatnonzero(running):
        time_step = environments[i].step(actions[i])
        observation[i], reward[i], step_type[i] = (time_step.observation, time_step.reward,
                                                  time_step.step_type)
      connection.send((observation, reward, step_type))
    else:
      for env in environments:
        env.close()
      connection.close()
      return


class _WorkerPool:
  """Worker processes (spawned: safe next to TensorFlow) that own slices of the simulators."""

  def __init__(self, env_name: str, horizon: int, seed, count: int, num_workers: int):
    import multiprocessing  # pylint: disable=import-outside-toplevel
    context = multiprocessing.get_context("spawn")
    bounds = np.linspace(0, count, min(num_workers, count) + 1).astype(int)
    self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    self.connections, self.processes = [], []
    for piece in self.slices:
      parent, child = context.Pipe()
      process = context.Process(target=_worker, daemon=True,
                                args=(child, env_name, horizon, seed, piece.stop - piece.start))
      process.start()
      self.connections.append(parent)
      self.processes.append(process)

  def steps(self, tasks, per_task: int, reset_seeds: np.ndarray):
    """The `_roll_out` step generator, with every slice stepped by its own process."""
    for connection, piece in zip(self.connections, self.slices):
      connection.send(("reset", [(tasks[i // per_task], reset_seeds[i])
                                 for i in range(piece.start, piece.stop)]))
    observation = np.concatenate([c.recv() for c in self.connections]).astype(np.float32)
    action, running = yield observation
    while True:
      for connection, piece in zip(self.connections, self.slices):
        connection.send(("step", (action[piece], running[piece])))
      parts = [c.recv() for c in self.connections]
      action, running = yield tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

  def close(self) -> None:
    for connection, process in zip(self.connections, self.processes):
      try:
        connection.send(("close", None))
      except (BrokenPipeError, OSError):
        pass
      process.join(timeout=10)
      if process.is_alive():
        process.terminate()
