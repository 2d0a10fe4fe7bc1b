"""Samples the trajectories of a meta-batch of tasks with a Gaussian policy.

`Sampler.sample` steps the T * N environments of a meta-batch (N trajectories of each of T
tasks) in lock step and asks the caller's `policy_fn` for the action distribution of all of
them at once, so the policy (a TensorFlow network with per-task fast weights) runs once per
time step rather than once per environment. The policy is a diagonal Gaussian with a
state-dependent mean and a state-independent log-std per task; the sampler draws the noise
from a numpy Generator seeded by `sample`'s seed, which also seeds the environments' reset
noise, so the same seed gives the same batch. The logged action is the unclipped sample (the
one whose log-likelihood the policy gradient needs); the environment clips it when it steps.

2D navigation is stepped by `BatchedNavigation2D`, all T * N rows in one numpy call. The MuJoCo
tasks keep one simulator per trajectory (`mujoco_tasks.BatchedLocomotion`), built once and
reused by every call, stepped in this process or in worker processes (`num_workers`) that
exchange the per-step arrays through shared memory.
"""

import multiprocessing
import signal
import time
from typing import Any, Callable, NamedTuple, Sequence, Tuple

from absl import logging
import numpy as np

from l2f_tf.progress import rate_text_of
from l2f_tf.rl import envs
from l2f_tf.rl.envs import meta_env, mujoco_tasks

PolicyFn = Callable[[np.ndarray], Tuple[Any, Any]]
NAVIGATION = "Navigation2D"
_LAST = 2  # tf_agents StepType.LAST, as an int for fast numpy comparisons


class Trajectories(NamedTuple):
  """One meta-batch of trajectories; numpy arrays with axes [task, trajectory, time, ...].

  Time step t holds the observation the policy saw, the action it sampled and the reward the
  environment returned for that action. Episodes that end before the horizon (a navigation
  agent reaching its goal, an Ant falling over) are padded with zeros.

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


class _Navigation:
  """`BatchedNavigation2D` behind the `BatchedLocomotion` interface (no reset noise to seed)."""

  def __init__(self, num_tasks: int, per_task: int, horizon: int, seed: meta_env.Seed):
    self.env = envs.BatchedNavigation2D(num_tasks, per_task, horizon=horizon, seed=seed)

  def reset(self, row_tasks, reset_seeds) -> np.ndarray:
    del reset_seeds
    self.env.set_tasks(row_tasks[::self.env.trajectories_per_task])
    return self.env.reset().observation

  def step(self, actions, running):
    del running  # Ended rows restart here (tf-agents semantics); their outputs are masked.
    time_step = self.env.step(actions)
    return time_step.observation, time_step.reward, time_step.step_type

  def close(self) -> None:
    pass


class _SharedRows:
  """The per-row arrays a step exchanges with the worker processes, in shared memory: actions
  and the running flags in, observations, rewards and step types out. A step then sends only
  a command through each pipe, and each worker writes its rows' outputs in place."""

  def __init__(self, context, count: int, observation_size: int, action_size: int):
    self.layout = {"actions": (np.float32, (count, action_size)),
                   "running": (np.bool_, (count,)),
                   "observations": (np.float32, (count, observation_size)),
                   "rewards": (np.float32, (count,)),
                   "step_types": (np.int32, (count,))}
    self.raw = {name: context.RawArray("b", int(np.prod(shape)) * np.dtype(dtype).itemsize)
                for name, (dtype, shape) in self.layout.items()}

  def arrays(self):
    """numpy views of the shared buffers, by name."""
    return {name: np.frombuffer(self.raw[name], dtype).reshape(shape)
            for name, (dtype, shape) in self.layout.items()}


def run_worker(connection, env_name: str, horizon: int, seed, rows: Tuple[int, int],
               shared: _SharedRows) -> None:
  """A worker process: steps rows [start, stop) of the batch in a `BatchedLocomotion`, on
  request, through the shared arrays.

  It ignores SIGINT: a terminal's Ctrl-C reaches every process of the foreground group, and a
  worker that died of it would leave the parent's interrupt handling (save a checkpoint, then
  close the pool) an EOFError instead of its answer."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  start, stop = rows
  simulators = mujoco_tasks.BatchedLocomotion(envs.ENVIRONMENTS[env_name], stop - start,
                                              horizon, seed)
  arrays = {name: array[start:stop] for name, array in shared.arrays().items()}
  while True:
    try:
      command, payload = connection.recv()
    except EOFError:  # the parent went away (exited or dropped the pool): stop quietly
      command = "close"
    if command == "close":
      simulators.close()
      connection.close()
      return
    if command == "reset":
      arrays["observations"][:] = simulators.reset(*payload)
    else:
      outputs = simulators.step(arrays["actions"], arrays["running"])
      for name, output in zip(("observations", "rewards", "step_types"), outputs):
        arrays[name][:] = output
    connection.send(None)


class _WorkerPool:
  """Worker processes (spawned: safe next to TensorFlow), each owning a contiguous slice of the
  rows, behind the `BatchedLocomotion` interface. The arrays a call returns are views of the
  shared buffers, valid until the next call."""

  def __init__(self, env_name: str, horizon: int, seed, count: int, num_workers: int,
               observation_size: int, action_size: int):
    context = multiprocessing.get_context("spawn")
    bounds = np.linspace(0, count, min(num_workers, count) + 1).astype(int)
    self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    shared = _SharedRows(context, count, observation_size, action_size)
    self.arrays = shared.arrays()
    self.connections, self.processes = [], []
    for piece in self.slices:
      parent, child = context.Pipe()
      process = context.Process(target=run_worker, daemon=True,
                                args=(child, env_name, horizon, seed,
                                      (int(piece.start), int(piece.stop)), shared))
      process.start()
      self.connections.append(parent)
      self.processes.append(process)

  def _call(self, command: str, payloads) -> None:
    """Runs ``command`` in every worker (with its payload) and waits for all of them."""
    for connection, payload in zip(self.connections, payloads):
      connection.send((command, payload))
    for connection in self.connections:
      connection.recv()

  def reset(self, row_tasks, reset_seeds) -> np.ndarray:
    row_tasks = list(row_tasks)
    self._call("reset", [(row_tasks[piece], reset_seeds[piece]) for piece in self.slices])
    return self.arrays["observations"]

  def step(self, actions, running):
    self.arrays["actions"][:] = actions
    self.arrays["running"][:] = running
    self._call("step", [None] * len(self.slices))
    return self.arrays["observations"], self.arrays["rewards"], self.arrays["step_types"]

  def close(self) -> None:
    for connection, process in zip(self.connections, self.processes):
      try:
        connection.send(("close", None))
      except (BrokenPipeError, OSError):
        pass
      process.join(timeout=10)
      if process.is_alive():
        process.terminate()
    self.connections, self.processes = [], []


class Sampler:
  """Steps T tasks x N trajectories of one environment with a caller-given Gaussian policy.

  The environments are built once, in the constructor; every `sample` call sets their tasks
  and resets them.

  Args:
    env_name: one of `envs.ENVIRONMENTS`.
    num_tasks: T, the number of tasks of each `sample` call (the meta-batch size).
    trajectories_per_task: N, the number of trajectories sampled for each task.
    horizon: H, the episode length (episodes may end earlier).
    seed: seeds the environments' construction and the seeds of `sample` calls made without
      one, so a run that never passes a seed is still reproducible.
    num_workers: MuJoCo only: step the simulators in this many worker processes (each owns a
      contiguous slice of the T * N environments; the same results as in-process, which 0
      means). Worth it when the simulators, not the policy, dominate.
  """

  def __init__(self, env_name: str, num_tasks: int, trajectories_per_task: int, horizon: int,
               seed: meta_env.Seed = 0, num_workers: int = 0):
    self.env_name = envs.check_env_name(env_name)
    self.num_tasks = meta_env.positive_int(num_tasks, "num_tasks")
    self.trajectories_per_task = meta_env.positive_int(trajectories_per_task,
                                                   "trajectories_per_task")
    self.horizon = meta_env.positive_int(horizon, "horizon")
    self._rng = np.random.default_rng(seed)
    self.last_steps_per_second = float("nan")
    probe = envs.make_env(env_name, horizon=self.horizon)
    self.observation_size = int(probe.observation_spec().shape[0])
    self.action_size = int(probe.action_spec().shape[0])
    probe.close()
    count = self.num_tasks * self.trajectories_per_task
    if env_name == NAVIGATION:
      self._environments = _Navigation(self.num_tasks, self.trajectories_per_task,
                                       self.horizon, seed)
    elif num_workers > 0:
      self._environments = _WorkerPool(env_name, self.horizon, seed, count, num_workers,
                                       self.observation_size, self.action_size)
    else:
      self._environments = mujoco_tasks.BatchedLocomotion(envs.ENVIRONMENTS[env_name], count,
                                                          self.horizon, seed)

  def sample(self, tasks: Sequence[meta_env.Task], policy_fn: PolicyFn,
             seed: meta_env.Seed = None) -> Trajectories:
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
    """
    if len(tasks) != self.num_tasks:
      raise ValueError(f"The sampler was built for num_tasks={self.num_tasks}, got "
                       f"{len(tasks)} tasks.")
    if seed is None:
      seed = int(self._rng.integers(2**63))
    rng = np.random.default_rng(seed)
    per_task = self.trajectories_per_task
    batch = self.num_tasks * per_task
    reset_seeds = rng.integers(2**31, size=batch)
    noise = rng.standard_normal((self.horizon, self.num_tasks, per_task, self.action_size),
                                dtype=np.float32)
    start = time.perf_counter()
    row_tasks = [tasks[i // per_task] for i in range(batch)]
    trajectories = self._roll_out(self._environments.reset(row_tasks, reset_seeds), policy_fn,
                                  noise)
    self.last_steps_per_second = trajectories.num_steps / max(time.perf_counter() - start, 1e-9)
    logging.log_every_n_seconds(
        logging.INFO, "%s sampler: %d tasks x %d trajectories, %d env steps at %s.",
        60, self.env_name, self.num_tasks, per_task, trajectories.num_steps,
        rate_text_of(self.last_steps_per_second, "env step"))
    return trajectories

  def close(self) -> None:
    """Releases the MuJoCo simulators or worker processes (nothing to release for navigation)."""
    self._environments.close()

  def _roll_out(self, observation: np.ndarray, policy_fn: PolicyFn,
                noise: np.ndarray) -> Trajectories:
    """The lock-step loop from the reset observations [T*N, obs_dim]; padding zeroed."""
    num_tasks, per_task, horizon = self.num_tasks, self.trajectories_per_task, self.horizon
    batch = num_tasks * per_task
    observations = np.zeros((horizon, batch, self.observation_size), np.float32)
    actions = np.zeros((horizon, batch, self.action_size), np.float32)
    rewards = np.zeros((horizon, batch), np.float32)
    mask = np.zeros((horizon, batch), np.float32)
    running = np.ones(batch, dtype=bool)
    for t in range(horizon):
      observations[t] = observation
      mask[t] = running
      mean, log_std = self._call_policy(policy_fn, observation.reshape(num_tasks, per_task, -1))
      action = mean + np.exp(log_std)[:, None, :] * noise[t]
      actions[t] = action.reshape(batch, -1)
      observation, rewards[t], step_type = self._environments.step(actions[t], running)
      running = running & (step_type != _LAST)
      if not running.any():
        break
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
    expected_mean = (self.num_tasks, self.trajectories_per_task, self.action_size)
    expected_log_std = (self.num_tasks, self.action_size)
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
