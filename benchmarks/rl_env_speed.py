"""Environment steps per second of the meta-RL environments (see docs/meta_rl.md, "Speed").

The meta-RL sampler needs >= 50,000 2D-navigation steps/s; a single `Navigation2D` stepped from
Python cannot give them, `BatchedNavigation2D` (a whole meta-batch in one numpy call) can. The
MuJoCo figures are for one simulator in one process. Actions are drawn in advance, so only the
environments are timed.

Run from the repository root (with the package installed, or with PYTHONPATH=.):

  python benchmarks/rl_env_speed.py [--seconds=2] [--num_tasks=20] [--trajectories_per_task=20]
"""

import time

from absl import app
from absl import flags

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tf_agents imports tensorflow)
import numpy as np

from l2f_tf.rl import envs

FLAGS = flags.FLAGS
flags.DEFINE_float("seconds", 2.0, "Approximate time spent on each environment.")
flags.DEFINE_integer("num_tasks", 20, "Tasks of the batched navigation (the meta-batch).")
flags.DEFINE_integer("trajectories_per_task", 20, "Trajectories per task (batched navigation).")


def steps_per_second(env, steps_per_call: int, seconds: float) -> float:
  """Steps `env` with uniform random actions for about `seconds`; returns env steps per second."""
  spec = env.action_spec()
  shape = ((env.batch_size,) if env.batched else ()) + spec.shape
  actions = np.random.default_rng(0).uniform(spec.minimum, spec.maximum, (1000,) + shape)
  actions = actions.astype(np.float32)
  env.reset()
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    for action in actions[calls % len(actions):][:100]:
      env.step(action)
    calls += 100
  return calls * steps_per_call / (time.perf_counter() - start)


def main(argv):
  del argv
  batched = envs.BatchedNavigation2D(FLAGS.num_tasks, FLAGS.trajectories_per_task)
  rows = [("Navigation2D (single)", envs.make_env("Navigation2D", seed=0), 1),
          (f"BatchedNavigation2D ({FLAGS.num_tasks} tasks x {FLAGS.trajectories_per_task} "
           f"trajectories)", batched, batched.batch_size)]
  rows += [(f"{name} (single)", envs.make_env(name, seed=0), 1)
           for name in ("HalfCheetahVel", "AntVel")]
  for label, env, steps_per_call in rows:
    print(f"{label:55s} {steps_per_second(env, steps_per_call, FLAGS.seconds):12,.0f} steps/s")


if __name__ == "__main__":
  app.run(main)
