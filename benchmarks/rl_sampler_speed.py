"""Environment steps per second of the meta-RL sampler, policy calls included.

The meta-RL loop needs >= 50,000 navigation steps/s from `Sampler.sample`, counting the time of
the policy, called once per time step for all T x N environments with per-task weights: the
64-64 tanh Gaussian policy of training (`l2f_tf.models.gaussian_policy`), timed as training
calls it (in numpy, `l2f_tf.rl.numpy_policy`) and as any other network is called (the compiled
`tf.function` of `maml_trpo.stacked_policy_fn`). A random policy (numpy, no network) gives the
sampler's own overhead as a baseline. Steps are the real ones (the sum of the mask),
so episodes that reach their goal early do not inflate the figure.

Run from the repository root (with the package installed, or with PYTHONPATH=.):

  python benchmarks/rl_sampler_speed.py [--num_tasks=20] [--trajectories_per_task=20]
      [--horizon=100] [--repeats=5]
  python benchmarks/rl_sampler_speed.py --env_name=HalfCheetahVel --horizon=200 \
      --num_workers=0 --num_workers=2

With several --num_workers values (MuJoCo environments only) each is timed: 0 steps the
simulators in-process, k > 0 in k spawned worker processes (`Sampler(num_workers=k)`).

For MuJoCo it first prints the physics-only floor: the same T x N bodies, from their reset
states, stepped H times (each step the environment's frame skip of `mj_step`s) with random
controls by one `mujoco.rollout.rollout` call on 1 and on max(--num_workers) threads, i.e.
no policy and no Python per step. Each sampler line then gives its rate as a fraction of the
floor with as many threads as it has processes.
"""

import time

from absl import app
from absl import flags

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tf_agents imports tensorflow)
import keras
import mujoco
import numpy as np
import tensorflow as tf

from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.gaussian_policy import gaussian_policy
from l2f_tf.rl import envs, maml_trpo, numpy_policy
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl.sampler import Sampler

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_tasks", 20, "Tasks per meta-batch (T).")
flags.DEFINE_integer("trajectories_per_task", 20, "Trajectories per task (N).")
flags.DEFINE_integer("horizon", 100, "Episode length (H).")
flags.DEFINE_string("env_name", "Navigation2D", "Environment (l2f_tf.rl.envs.ENVIRONMENTS).")
flags.DEFINE_multi_integer("num_workers", [0], "Simulator worker processes (MuJoCo only).")
flags.DEFINE_integer("repeats", 5, "Timed `sample` calls per policy (after one warm-up call).")


def network_policy_fns(num_tasks: int, observation_size: int, action_size: int):
  """{label: policy_fn} of the 64-64 tanh Gaussian policy with per-task weights: the numpy
  calls training makes, and the compiled network's."""
  keras.utils.set_random_seed(0)
  learner = MetaLearner(gaussian_policy(observation_size, action_size, initial_log_std=-0.5),
                        pg.reinforce_loss)
  stacked = maml_trpo.tile_params(learner.theta(), num_tasks)
  compiled = maml_trpo.stacked_policy_fn(learner)
  numpy_fn = numpy_policy.dense_policy_of(learner, compiled).bind(stacked)
  return {"64-64 tanh policy, numpy (training)": numpy_fn,
          "64-64 tanh policy, tf.function": lambda obs: compiled(stacked, tf.constant(obs))}


def random_policy_fn(num_tasks: int, action_size: int):
  """Returns a policy_fn with zero mean and unit std (numpy only): the sampler's own cost."""
  log_std = np.zeros((num_tasks, action_size), np.float32)

  def policy_fn(observations):
    return np.zeros(observations.shape[:2] + (action_size,), np.float32), log_std

  return policy_fn


def steps_per_second(sampler: Sampler, tasks, policy_fn, repeats: int) -> float:
  """Env steps per second over `repeats` sample calls, after one untimed warm-up call."""
  sampler.sample(tasks, policy_fn, seed=0)
  steps, start = 0, time.perf_counter()
  for seed in range(1, repeats + 1):
    steps += sampler.sample(tasks, policy_fn, seed=seed).num_steps
  return steps / (time.perf_counter() - start)


def physics_floor(env_name: str, count: int, horizon: int, threads: int) -> float:
  """Env steps per second of `count` bodies stepped `horizon` env steps by MuJoCo alone."""
  from mujoco import rollout  # pylint: disable=import-outside-toplevel
  environments = [envs.make_env(env_name, seed=i) for i in range(count)]
  physics = environments[0].physics
  model, frame_skip = physics.model, physics.frame_skip
  spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
  states = np.zeros((count, mujoco.mj_stateSize(model, spec)))
  for env, state in zip(environments, states):
    env.reset()
    mujoco.mj_getState(model, env.physics.data, state, spec)
  controls = np.random.default_rng(0).uniform(-1.0, 1.0, (count, horizon, model.nu))
  controls = np.repeat(controls, frame_skip, axis=1)  # held over the frame skip
  datas = [mujoco.MjData(model) for _ in range(threads)]
  best = 0.0
  for _ in range(3):
    start = time.perf_counter()
    rollout.rollout(model, datas, states, controls)
    best = max(best, count * horizon / (time.perf_counter() - start))
  return best


def main(argv):
  del argv
  num_tasks, per_task = FLAGS.num_tasks, FLAGS.trajectories_per_task
  tasks = envs.make_env(FLAGS.env_name).sample_tasks(num_tasks, seed=0)
  floors = {}
  if FLAGS.env_name != "Navigation2D":
    for threads in sorted({1, max(max(FLAGS.num_workers), 1)}):
      floors[threads] = physics_floor(FLAGS.env_name, num_tasks * per_task, FLAGS.horizon,
                                      threads)
      print(f"{FLAGS.env_name} physics-only floor, {num_tasks * per_task} bodies x horizon "
            f"{FLAGS.horizon}, {threads} thread(s): {floors[threads]:12,.0f} env steps/s")
  for workers in FLAGS.num_workers:
    sampler = Sampler(FLAGS.env_name, num_tasks, per_task, FLAGS.horizon, seed=0,
                      num_workers=workers)
    print(f"{FLAGS.env_name}, {num_tasks} tasks x {per_task} trajectories x horizon "
          f"{FLAGS.horizon}, {workers or 'no'} worker processes")
    policies = [*network_policy_fns(num_tasks, sampler.observation_size,
                                    sampler.action_size).items(),
                ("random policy (numpy baseline)", random_policy_fn(num_tasks, sampler.action_size))]
    for label, policy_fn in policies:
      rate = steps_per_second(sampler, tasks, policy_fn, FLAGS.repeats)
      floor = floors.get(max(workers, 1))
      share = f"  ({rate / floor:.0%} of the floor)" if floor else ""
      print(f"  {label:40s} {rate:12,.0f} env steps/s{share}")
    sampler.close()


if __name__ == "__main__":
  app.run(main)
