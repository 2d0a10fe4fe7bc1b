"""Tests of the meta-RL environments: tf-agents contract, hand-computed rewards, task sampling."""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tf_agents imports tensorflow)

import mujoco
import numpy as np
import pytest
from tf_agents.environments import utils as env_utils
from tf_agents.trajectories import time_step as ts

from l2f_tf.rl import envs

FIRST, MID, LAST = int(ts.StepType.FIRST), int(ts.StepType.MID), int(ts.StepType.LAST)
MUJOCO_NAMES = ["HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir"]


def navigation(goal, horizon=100):
  env = envs.Navigation2D(horizon=horizon)
  env.set_task({"goal": np.array(goal)})
  env.reset()
  return env


# --- tf-agents contract and horizon ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(envs.ENVIRONMENTS))
def test_validate_py_environment(name):
  env_utils.validate_py_environment(envs.make_env(name, horizon=5, seed=0), episodes=2)


def test_validate_batched_navigation():
  env = envs.BatchedNavigation2D(num_tasks=3, trajectories_per_task=2, horizon=5, seed=0)
  env_utils.validate_py_environment(env, episodes=2)
  assert env.batched and env.batch_size == 6


def test_default_horizons_and_unknown_name():
  assert envs.make_env("Navigation2D").horizon == 100
  assert envs.make_env("HalfCheetahVel").horizon == 200
  assert envs.make_env("AntDir", horizon=7).horizon == 7
  with pytest.raises(ValueError, match="Unknown environment"):
    envs.make_env("Navigation3D")
  with pytest.raises(ValueError, match="horizon"):
    envs.make_env("Navigation2D", horizon=0)


def test_truncation_after_horizon_then_restart():
  env = navigation(goal=[0.5, 0.5], horizon=3)
  assert env.elapsed_steps == 0
  step_types = []
  for t in range(1, 4):
    step = env.step(np.zeros(2, np.float32))
    step_types.append(int(step.step_type))
    assert env.elapsed_steps == t
  assert step_types == [MID, MID, LAST]
  assert step.discount == 1.0  # a truncation, not a termination
  step = env.step(np.full(2, 0.1, np.float32))  # ignored: a new episode starts
  assert int(step.step_type) == FIRST and env.elapsed_steps == 0
  np.testing.assert_array_equal(step.observation, [0.0, 0.0])


# --- navigation dynamics and reward ---------------------------------------------------------

def test_navigation_reward_is_minus_distance_after_the_move():
  env = navigation(goal=[0.3, -0.2])
  step = env.step(np.array([0.05, 0.1], np.float32))
  np.testing.assert_allclose(step.observation, [0.05, 0.1], rtol=1e-6)
  # position (0.05, 0.1), goal (0.3, -0.2): distance sqrt(0.25^2 + 0.3^2) = sqrt(0.1525).
  np.testing.assert_allclose(step.reward, -0.39051248379533, rtol=1e-6)
  assert int(step.step_type) == MID


def test_navigation_clips_actions_to_max_speed():
  env = navigation(goal=[0.5, 0.5])
  step = env.step(np.array([1.0, -5.0], np.float32))
  np.testing.assert_allclose(step.observation, [0.1, -0.1], rtol=1e-6)
  step = env.step(np.array([-0.03, 0.2], np.float32))
  np.testing.assert_allclose(step.observation, [0.07, 0.0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(step.reward, -np.hypot(0.43, 0.5), rtol=1e-6)


def test_navigation_terminates_within_the_goal_square():
  env = navigation(goal=[0.1, 0.05])
  step = env.step(np.array([0.1, 0.045], np.float32))  # 0.005 from the goal
  assert int(step.step_type) == LAST and step.discount == 0.0
  np.testing.assert_allclose(step.reward, -0.005, rtol=1e-4)
  env = navigation(goal=[0.1, 0.07])
  step = env.step(np.array([0.1, 0.05], np.float32))  # 0.02 from the goal: keep going
  assert int(step.step_type) == MID and step.discount == 1.0
  # |dx| = |dy| = 0.009: 0.0127 away, outside a disc of radius 0.01 but inside MAML-RL's
  # square |dx| < 0.01 and |dy| < 0.01, so the episode ends (single and batched alike).
  env = navigation(goal=[0.109, 0.059])
  step = env.step(np.array([0.1, 0.05], np.float32))
  assert int(step.step_type) == LAST
  np.testing.assert_allclose(step.reward, -np.hypot(0.009, 0.009), rtol=1e-4)
  batched = envs.BatchedNavigation2D(1, 1)
  batched.set_tasks([{"goal": np.array([0.109, 0.059])}])
  batched.reset()
  step = batched.step(np.array([[0.1, 0.05]], np.float32))
  assert int(step.step_type[0]) == LAST
  # 0.011 in one coordinate: outside the square although only 0.011 away.
  env = navigation(goal=[0.111, 0.05])
  assert int(env.step(np.array([0.1, 0.05], np.float32)).step_type) == MID


def test_batched_navigation_equals_single_environments():
  horizon, per_task, num_steps = 7, 2, 30
  batched = envs.BatchedNavigation2D(3, per_task, horizon=horizon)
  tasks = batched.sample_tasks(3, seed=4)
  tasks[1] = {"goal": np.array([0.1, 0.0])}  # reachable in one step: exercises termination
  batched.set_tasks(tasks)
  singles = []
  for row in range(batched.batch_size):
    env = envs.Navigation2D(horizon=horizon)
    env.set_task(tasks[row // per_task])
    singles.append(env)
  rng = np.random.default_rng(0)
  actions = rng.uniform(-0.15, 0.15, (num_steps, batched.batch_size, 2)).astype(np.float32)
  actions[:, 2:4] = [0.1, 0.0]  # the rows of task 1 walk straight to their goal
  outputs = [(batched.reset(), [env.reset() for env in singles])]
  for action in actions:
    outputs.append((batched.step(action), [env.step(a) for env, a in zip(singles, action)]))
    np.testing.assert_array_equal(batched.elapsed_steps, [env.elapsed_steps for env in singles])
  seen = set()
  for batch_step, single_steps in outputs:
    for field in ("step_type", "reward", "discount", "observation"):
      expected = np.stack([getattr(step, field) for step in single_steps])
      np.testing.assert_allclose(getattr(batch_step, field), expected, rtol=1e-6, atol=1e-7)
      assert getattr(batch_step, field).dtype == expected.dtype
    seen.update(zip(batch_step.step_type.tolist(), batch_step.discount.tolist()))
  assert {(LAST, 0.0), (LAST, 1.0), (FIRST, 1.0)} <= seen  # goal, horizon and restarts


def test_batched_navigation_task_layout_and_errors():
  env = envs.BatchedNavigation2D(2, 3, seed=1)
  tasks = env.sample_tasks(2, seed=9)
  env.set_tasks(tasks)
  for got, want in zip(env.get_tasks(), tasks):
    np.testing.assert_array_equal(got["goal"], want["goal"])
  env.reset()
  step = env.step(np.zeros((6, 2), np.float32))
  np.testing.assert_allclose(step.reward[:3], -np.linalg.norm(tasks[0]["goal"]), rtol=1e-6)
  np.testing.assert_allclose(step.reward[3:], -np.linalg.norm(tasks[1]["goal"]), rtol=1e-6)
  with pytest.raises(ValueError, match="num_tasks=2"):
    env.set_tasks(tasks[:1])
  with pytest.raises(ValueError, match="shape"):
    env.step(np.zeros((5, 2), np.float32))


# --- tasks ----------------------------------------------------------------------------------

def flat(tasks):
  return np.array([np.hstack(list(task.values())) for task in tasks], dtype=np.float64)


@pytest.mark.parametrize("name", sorted(envs.ENVIRONMENTS))
def test_sample_tasks_reproducible(name):
  first, second = envs.make_env(name, seed=0), envs.make_env(name, seed=1)
  np.testing.assert_array_equal(flat(first.sample_tasks(40, seed=3)),
                                flat(second.sample_tasks(40, seed=3)))
  assert not np.array_equal(flat(first.sample_tasks(40, seed=3)),
                            flat(first.sample_tasks(40, seed=4)))


@pytest.mark.parametrize("name,low,high", [("Navigation2D", -0.5, 0.5),
                                           ("HalfCheetahVel", 0.0, 2.0), ("AntVel", 0.0, 3.0)])
def test_continuous_task_ranges(name, low, high):
  values = flat(envs.make_env(name).sample_tasks(500, seed=0))
  assert values.min() >= low and values.max() <= high
  assert values.min() < low + 0.1 * (high - low) and values.max() > high - 0.1 * (high - low)


@pytest.mark.parametrize("name", ["HalfCheetahDir", "AntDir"])
def test_direction_tasks_are_plus_or_minus_one(name):
  values = flat(envs.make_env(name).sample_tasks(500, seed=0)).ravel()
  assert set(values.tolist()) == {-1.0, 1.0}
  assert 0.4 < np.mean(values == 1.0) < 0.6


def test_batched_navigation_samples_the_same_tasks():
  single = envs.Navigation2D().sample_tasks(5, seed=2)
  batched = envs.BatchedNavigation2D(5, 1).sample_tasks(5, seed=2)
  np.testing.assert_array_equal(flat(single), flat(batched))


def test_set_task_validates_and_get_task_copies():
  env = envs.make_env("HalfCheetahDir")
  with pytest.raises(ValueError, match="direction"):
    env.set_task({"direction": 0.5})
  with pytest.raises(ValueError, match="'velocity'"):
    envs.make_env("AntVel").set_task({"goal": 1.0})
  with pytest.raises(ValueError, match="goal"):
    envs.make_env("Navigation2D").set_task({"goal": [1.0, 2.0, 3.0]})
  nav = envs.make_env("Navigation2D")
  nav.set_task({"goal": np.array([0.2, 0.3])})
  nav.get_task()["goal"][0] = 9.0
  np.testing.assert_array_equal(nav.get_task()["goal"], [0.2, 0.3])


# --- MuJoCo rewards, termination and seeding ------------------------------------------------

def step_with_x_velocity(env, action):
  """Steps `env` with `action`; returns (time step, x velocity from qpos around the step)."""
  x_before = env.physics.data.qpos[0]
  step = env.step(action)
  return step, (env.physics.data.qpos[0] - x_before) / env.physics.dt


@pytest.mark.parametrize("name,task", [("HalfCheetahVel", {"velocity": 1.3}),
                                       ("HalfCheetahDir", {"direction": -1.0})])
def test_half_cheetah_reward(name, task):
  env = envs.make_env(name, seed=0)
  env.set_task(task)
  env.reset()
  action = np.array([0.5, -1.7, 0.2, 1.0, -0.3, 3.0], np.float32)  # two entries get clipped
  step, x_velocity = step_with_x_velocity(env, action)
  ctrl_cost = 0.05 * np.sum(np.square(np.clip(action, -1.0, 1.0)))
  if "velocity" in task:
    expected = -abs(x_velocity - task["velocity"]) - ctrl_cost
  else:
    expected = task["direction"] * x_velocity - ctrl_cost
  assert abs(x_velocity) > 0.01  # the forward term matters
  np.testing.assert_allclose(step.reward, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,task", [("AntVel", {"velocity": 2.2}),
                                       ("AntDir", {"direction": 1.0})])
def test_ant_reward(name, task):
  env = envs.make_env(name, seed=0)
  env.set_task(task)
  env.reset()
  actions = np.random.default_rng(1).uniform(-1.0, 1.0, (10, 8)).astype(np.float32)
  contact_costs = []
  for action in actions:  # several steps, so that some have the legs on the floor
    step, x_velocity = step_with_x_velocity(env, action)
    contact_cost = 5e-4 * np.sum(np.square(np.clip(env.physics.data.cfrc_ext, -1.0, 1.0)))
    forward = (-abs(x_velocity - task["velocity"]) if "velocity" in task
               else task["direction"] * x_velocity)
    expected = forward + 1.0 - 0.5 * np.sum(np.square(action)) - contact_cost
    np.testing.assert_allclose(step.reward, expected, rtol=1e-6, atol=1e-6)
    assert int(step.step_type) == MID
    contact_costs.append(contact_cost)
  assert max(contact_costs) > 1e-3  # the contact term is exercised


def ant_step_from_height(height, velocity_z=0.0, contacts=True):
  env = envs.make_env("AntVel", horizon=50, seed=0)
  env.reset()
  physics = env.physics
  if not contacts:  # let the torso fall through the floor
    physics.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
  qpos, qvel = physics.data.qpos.copy(), physics.data.qvel.copy()
  qpos[2], qvel[2] = height, velocity_z
  physics.set_state(qpos, qvel)
  return env.step(np.zeros(8, np.float32)), physics.data.qpos[2]


def test_ant_terminates_when_torso_leaves_healthy_range():
  step, height = ant_step_from_height(1.5)
  assert height > 1.0 and int(step.step_type) == LAST and step.discount == 0.0
  step, height = ant_step_from_height(0.22, velocity_z=-2.0, contacts=False)
  assert height < 0.2 and int(step.step_type) == LAST and step.discount == 0.0
  step, height = ant_step_from_height(0.6)
  assert 0.2 <= height <= 1.0 and int(step.step_type) == MID and step.discount == 1.0


@pytest.mark.parametrize("name", MUJOCO_NAMES)
def test_mujoco_resets_are_seeded(name):
  first = [envs.make_env(name, seed=5).reset().observation for _ in range(2)]
  other = envs.make_env(name, seed=6).reset().observation
  np.testing.assert_array_equal(first[0], first[1])
  assert not np.array_equal(first[0], other)
  env = envs.make_env(name, seed=5)
  assert not np.array_equal(env.reset().observation, env.reset().observation)
  assert env.reset().observation.dtype == np.float32


def test_building_writes_no_mujoco_log(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  previous = mujoco.get_mju_user_warning()
  for name in MUJOCO_NAMES:
    envs.make_env(name, seed=0)
  assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
  assert mujoco.get_mju_user_warning() is previous


def test_a_mujoco_warning_is_logged_once_however_many_envs_are_built(monkeypatch):
  from l2f_tf.rl.envs import mujoco_tasks
  logged = []
  monkeypatch.setattr(mujoco_tasks, "_LOGGED_WARNINGS", set())
  monkeypatch.setattr(mujoco_tasks.logging, "info", lambda fmt, *args: logged.append(fmt % args))
  for _ in range(3):
    envs.make_env("HalfCheetahVel", seed=0)
  assert len(logged) == len(set(logged)) >= 1
  assert all(line.startswith("MuJoCo: ") for line in logged)


@pytest.mark.parametrize("name", MUJOCO_NAMES)
def test_mujoco_observation_is_gymnasiums(name):
  """The row-wise observation equals gymnasium's own `_get_obs` after reset and each step."""
  env = envs.make_env(name, seed=2)
  gymnasium_observation = env.physics._get_obs  # pylint: disable=protected-access
  np.testing.assert_array_equal(env.reset().observation,
                                gymnasium_observation().astype(np.float32))
  actions = np.random.default_rng(3).uniform(-1.0, 1.0, (15,) + env.action_spec().shape)
  for action in actions.astype(np.float32):
    step = env.step(action)
    np.testing.assert_array_equal(step.observation, gymnasium_observation().astype(np.float32))
