"""The sampler's MuJoCo simulators stepped in spawned worker processes give the in-process
batch (the slow tier: spawning the workers and their MuJoCo takes seconds per test; the
meta-RL gin files and the kill fuzzing run worker processes too)."""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tf_agents imports tensorflow)

import numpy as np
import pytest

from l2f_tf.rl import envs
from l2f_tf.rl import sampler as sampler_lib

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("env_name, dropped", [("HalfCheetahVel", False), ("AntDir", True)],
                         ids=["HalfCheetahVel", "AntDir"])
def test_worker_processes_give_the_same_batch(env_name, dropped):
  """MuJoCo simulators stepped in 2 spawned worker processes: identical trajectories.

  The AntDir pool is then dropped without close() (e.g. the first of two experiments in one
  process), which used to leave every worker printing an EOFError traceback; now each worker
  exits with status 0. (Its workers are reused for that: spawning one takes seconds.)
  """
  import multiprocessing
  options = dict(num_tasks=2, trajectories_per_task=2, horizon=6, seed=0)
  in_process = sampler_lib.Sampler(env_name, **options)
  earlier = set(multiprocessing.active_children())
  workers = sampler_lib.Sampler(env_name, num_workers=2, **options)
  processes = [p for p in multiprocessing.active_children() if p not in earlier]
  try:
    tasks = envs.make_env(env_name).sample_tasks(2, seed=3)
    policy = lambda obs: (np.tanh(obs[..., :in_process.action_size]),
                          np.full((2, in_process.action_size), -1.0, np.float32))
    a = in_process.sample(tasks, policy, seed=5)
    b = workers.sample(tasks, policy, seed=5)
    for x, y in zip(a, b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  finally:
    in_process.close()
    if not dropped:
      workers.close()
  if dropped:
    del workers  # the parent's ends of the pipes close: each worker reads EOF
    for process in processes:
      process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]


def test_workers_leave_ctrl_c_to_the_parent():
  """A terminal's Ctrl-C sends SIGINT to every process of the foreground group: the workers
  ignore it and keep answering, so the parent's interrupt handling (checkpoint, then close)
  runs. They used to die of it, and the parent crashed with an EOFError and no checkpoint."""
  import multiprocessing
  import os
  import signal
  import time
  options = dict(num_tasks=2, trajectories_per_task=2, horizon=6, seed=0)
  earlier = set(multiprocessing.active_children())
  workers = sampler_lib.Sampler("HalfCheetahVel", num_workers=2, **options)
  processes = [p for p in multiprocessing.active_children() if p not in earlier]
  env = envs.make_env("HalfCheetahVel", horizon=6)
  tasks = env.sample_tasks(2, seed=[0, 0])
  policy = lambda obs: (np.zeros(obs.shape[:2] + (6,), np.float32), np.zeros((2, 6), np.float32))
  try:
    before = workers.sample(tasks, policy, seed=[0, 1])
    for process in processes:
      os.kill(process.pid, signal.SIGINT)
    time.sleep(1.0)
    assert all(process.is_alive() for process in processes)
    after = workers.sample(tasks, policy, seed=[0, 1])
    np.testing.assert_array_equal(after.rewards, before.rewards)
  finally:
    workers.close()
