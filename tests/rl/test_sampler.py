"""Tests of the meta-RL trajectory sampler: shapes, mask, seeding, rewards, task grouping."""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tf_agents imports tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.rl import envs
from l2f_tf.rl import sampler as sampler_lib
from l2f_tf.rl.envs import navigation

T, N, H = 3, 4, 12


def navigation_sampler(num_tasks=T, per_task=N, horizon=H):
  return sampler_lib.Sampler("Navigation2D", num_tasks, per_task, horizon, seed=0)


def goals_of(tasks):
  return np.stack([task["goal"] for task in tasks])


def random_policy(num_tasks, action_size, log_std=0.0):
  """Zero mean, state-independent std: exercises the sampler's noise only."""
  def policy_fn(observations):
    mean = np.zeros(observations.shape[:2] + (action_size,), np.float32)
    return mean, np.full((num_tasks, action_size), log_std, np.float32)
  return policy_fn


def go_to_goal_policy(goals, log_std=-20.0):
  """Moves each task's agents straight to that task's goal (as TensorFlow tensors)."""
  goals = tf.constant(goals[:, None, :], tf.float32)

  def policy_fn(observations):
    mean = goals - observations
    return mean, tf.fill([goals.shape[0], 2], log_std)
  return policy_fn


def recomputed_navigation_rewards(batch, goals):
  """-distance to the goal after the clipped step, from the logged observations and actions."""
  clipped = np.clip(batch.actions, -navigation.MAX_SPEED, navigation.MAX_SPEED)
  position = batch.observations.astype(np.float64) + clipped
  return -np.linalg.norm(position - goals[:, None, None, :], axis=-1) * batch.mask


def test_shapes_dtypes_and_full_mask_without_early_ends():
  sampler = navigation_sampler()
  tasks = [{"goal": np.array([0.4, -0.3])}, {"goal": np.array([-0.5, 0.5])},
           {"goal": np.array([0.3, 0.3])}]
  batch = sampler.sample(tasks, random_policy(T, 2, log_std=-3.0), seed=0)
  assert isinstance(batch, sampler_lib.Trajectories)
  assert batch.observations.shape == (T, N, H, 2) and batch.observations.dtype == np.float32
  assert batch.actions.shape == (T, N, H, 2) and batch.actions.dtype == np.float32
  assert batch.rewards.shape == (T, N, H) and batch.rewards.dtype == np.float32
  assert batch.mask.shape == (T, N, H) and batch.mask.dtype == np.float32
  np.testing.assert_array_equal(batch.mask, 1.0)  # goals far away: every episode is truncated
  assert batch.num_steps == T * N * H
  np.testing.assert_array_equal(batch.observations[:, :, 0], 0.0)  # episodes start at the origin
  # Consecutive observations differ by the clipped action: time is the position along H.
  clipped = np.clip(batch.actions[:, :, :-1], -0.1, 0.1)
  np.testing.assert_allclose(batch.observations[:, :, 1:],
                             batch.observations[:, :, :-1] + clipped, atol=1e-6)
  assert sampler.observation_size == 2 and sampler.action_size == 2
  assert sampler.last_steps_per_second > 0


def test_episodes_reaching_the_goal_end_early_and_are_padded():
  sampler = navigation_sampler()
  tasks = [{"goal": np.array([0.25, 0.0])}, {"goal": np.array([0.05, -0.42])},
           {"goal": np.array([-0.5, 0.5])}]
  batch = sampler.sample(tasks, go_to_goal_policy(goals_of(tasks)), seed=0)
  # Steps per axis are capped at 0.1: 3, 5 and 5 steps reach the goals, the last one included.
  lengths = np.array([3, 5, 5])
  expected_mask = (np.arange(H)[None, :] < lengths[:, None]).astype(np.float32)
  np.testing.assert_array_equal(batch.mask, np.repeat(expected_mask[:, None], N, axis=1))
  assert batch.num_steps == N * lengths.sum() == int(batch.mask.sum())
  for array in (batch.observations, batch.actions):
    np.testing.assert_array_equal(array[batch.mask == 0], 0.0)
  np.testing.assert_array_equal(batch.rewards[batch.mask == 0], 0.0)
  last = batch.rewards[np.arange(T), 0, lengths - 1]
  assert np.all(-last < np.sqrt(2) * navigation.GOAL_TOLERANCE)  # the last step is at the goal


def test_logged_actions_are_unclipped_and_rewards_match_the_environment():
  sampler = navigation_sampler()
  tasks = envs.sample_goal_tasks(T, seed=3)
  batch = sampler.sample(tasks, random_policy(T, 2, log_std=0.0), seed=5)
  assert np.abs(batch.actions).max() > navigation.MAX_SPEED  # std 1 >> the 0.1 clip
  np.testing.assert_allclose(batch.rewards, recomputed_navigation_rewards(batch, goals_of(tasks)),
                             rtol=1e-5, atol=1e-6)


def test_task_grouping_row_i_uses_task_i():
  sampler = navigation_sampler()
  tasks = envs.sample_goal_tasks(T, seed=7)
  goals = goals_of(tasks)
  batch = sampler.sample(tasks, go_to_goal_policy(goals, log_std=-2.0), seed=1)
  np.testing.assert_allclose(batch.rewards, recomputed_navigation_rewards(batch, goals),
                             rtol=1e-5, atol=1e-6)
  # Any other assignment of goals to rows gives different rewards.
  shifted = recomputed_navigation_rewards(batch, np.roll(goals, 1, axis=0))
  assert not np.allclose(batch.rewards, shifted, atol=1e-3)
  # policy_fn sees observations grouped by task: the agents of task i head to goal i.
  final = batch.observations[:, :, -1]
  assert np.all(np.linalg.norm(final - goals[:, None], axis=-1) < 0.3)


def test_same_seed_same_batch_other_seed_other_batch_across_calls():
  sampler = navigation_sampler()
  tasks = envs.sample_goal_tasks(T, seed=0)
  policy = random_policy(T, 2, log_std=-1.0)
  first = sampler.sample(tasks, policy, seed=11)
  other = sampler.sample(tasks, policy, seed=12)
  again = sampler.sample(tasks, policy, seed=11)  # the reused environment does not leak state
  for a, b, c in zip(first, again, other):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first.actions, other.actions)
  # Without a seed, calls differ but a new sampler with the same seed repeats them.
  unseeded = [navigation_sampler().sample(tasks, policy).actions for _ in range(2)]
  np.testing.assert_array_equal(unseeded[0], unseeded[1])
  fresh = navigation_sampler()
  assert not np.array_equal(fresh.sample(tasks, policy).actions,
                            fresh.sample(tasks, policy).actions)


def test_half_cheetah_vel_shapes_and_seeded_reset_noise():
  sampler = sampler_lib.Sampler("HalfCheetahVel", num_tasks=2, trajectories_per_task=2,
                                horizon=5, seed=0)
  tasks = envs.make_env("HalfCheetahVel").sample_tasks(2, seed=0)
  policy = random_policy(2, sampler.action_size, log_std=-0.5)
  batch = sampler.sample(tasks, policy, seed=0)
  obs_dim, act_dim = sampler.observation_size, sampler.action_size
  assert (obs_dim, act_dim) == (17, 6)
  assert batch.observations.shape == (2, 2, 5, obs_dim)
  assert batch.actions.shape == (2, 2, 5, act_dim)
  assert batch.rewards.shape == batch.mask.shape == (2, 2, 5)
  np.testing.assert_array_equal(batch.mask, 1.0)
  assert batch.num_steps == 20 and np.all(np.isfinite(batch.rewards))
  again = sampler.sample(tasks, policy, seed=0)
  for a, b in zip(batch, again):
    np.testing.assert_array_equal(a, b)
  other = sampler.sample(tasks, policy, seed=1)
  # Reset noise is seeded per call and differs between trajectories of one task.
  assert not np.array_equal(batch.observations[:, :, 0], other.observations[:, :, 0])
  assert not np.array_equal(batch.observations[0, 0, 0], batch.observations[0, 1, 0])
  sampler.close()


def test_policy_fn_shape_errors_name_the_expected_shapes():
  sampler = navigation_sampler()
  tasks = envs.sample_goal_tasks(T, seed=0)
  log_std = np.zeros((T, 2), np.float32)
  with pytest.raises(ValueError, match=r"mean of shape \(3, 4\).*\(3, 4, 2\)"):
    sampler.sample(tasks, lambda obs: (np.zeros((T, N)), log_std), seed=0)
  with pytest.raises(ValueError, match=r"log_std of shape \(3, 4, 2\).*\(3, 2\)"):
    sampler.sample(tasks, lambda obs: (np.zeros((T, N, 2)), np.zeros((T, N, 2))), seed=0)
  with pytest.raises(ValueError, match=r"\(mean, log_std\)"):
    sampler.sample(tasks, lambda obs: np.zeros((T, N, 2)), seed=0)
  with pytest.raises(ValueError, match="non-finite"):
    sampler.sample(tasks, lambda obs: (np.full((T, N, 2), np.nan), log_std), seed=0)


def test_bad_tasks_and_settings_raise():
  sampler = navigation_sampler()
  with pytest.raises(ValueError, match="num_tasks=3, got 2 tasks"):
    sampler.sample(envs.sample_goal_tasks(2, seed=0), random_policy(T, 2), seed=0)
  with pytest.raises(ValueError, match="Unknown environment"):
    sampler_lib.Sampler("Navigation3D", T, N, H)
  with pytest.raises(ValueError, match="trajectories_per_task"):
    sampler_lib.Sampler("Navigation2D", T, 0, H)
  with pytest.raises(ValueError, match="horizon"):
    sampler_lib.Sampler("Navigation2D", T, N, 0)


def environment_by_environment(env_name, tasks, per_task, horizon, policy_fn, seed):
  """The batch `Sampler(env_name, ..., seed=0).sample(tasks, policy_fn, seed)` must return,
  built the slow way: one `MetaPyEnvironment` per trajectory stepped through its tf-agents
  `step` (gymnasium's `do_simulation` underneath), with the sampler's documented seeding."""
  rng = np.random.default_rng(seed)
  count = len(tasks) * per_task
  reset_seeds = rng.integers(2**31, size=count)
  environments = [envs.make_env(env_name, horizon=horizon, seed=0) for _ in range(count)]
  action_size = environments[0].action_spec().shape[0]
  noise = rng.standard_normal((horizon, len(tasks), per_task, action_size), dtype=np.float32)
  observation = []
  for i, env in enumerate(environments):
    env.set_task(tasks[i // per_task])
    env.seed(int(reset_seeds[i]))
    observation.append(env.reset().observation)
  observation = np.stack(observation)
  out = {k: [] for k in ("observations", "actions", "rewards", "mask")}
  running = np.ones(count, bool)
  for t in range(horizon):
    mean, log_std = policy_fn(observation.reshape(len(tasks), per_task, -1))
    action = (mean + np.exp(log_std)[:, None, :] * noise[t]).reshape(count, -1)
    out["observations"].append(observation * running[:, None])
    out["actions"].append(action * running[:, None])
    out["mask"].append(running.astype(np.float32))
    reward = np.zeros(count, np.float32)
    for i in np.flatnonzero(running):
      step = environments[i].step(action[i])
      observation[i], reward[i] = step.observation, step.reward
      running[i] = not step.is_last()
    out["rewards"].append(reward)
  return {k: np.moveaxis(np.stack(v), 0, 1).reshape((len(tasks), per_task, horizon)
                                                    + np.stack(v).shape[2:])
          for k, v in out.items()}


@pytest.mark.parametrize("env_name", ["HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir"])
def test_mujoco_batch_equals_stepping_each_environment(env_name):
  """The batched stepper (one mj_step call per row, row-wise rewards) gives the trajectories of
  the environments' own step, to the bit; the Ant's episodes end early on this policy."""
  num_tasks, per_task, horizon = 2, 3, 40
  sampler = sampler_lib.Sampler(env_name, num_tasks, per_task, horizon, seed=0)
  tasks = envs.make_env(env_name).sample_tasks(num_tasks, seed=4)
  act = sampler.action_size

  def policy_fn(observations):
    return (np.tanh(3.0 * observations[..., :act]).astype(np.float32),
            np.full((num_tasks, act), 0.3, np.float32))

  batch = sampler.sample(tasks, policy_fn, seed=9)
  sampler.close()
  expected = environment_by_environment(env_name, tasks, per_task, horizon, policy_fn, seed=9)
  for name, value in expected.items():
    np.testing.assert_array_equal(getattr(batch, name), value, err_msg=name)
  ended_early = batch.mask[..., -1] == 0
  assert ended_early.any() == env_name.startswith("Ant")
