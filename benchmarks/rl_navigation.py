"""MAML-TRPO vs MAML+L2F-TRPO on 2D navigation at the reference settings, time-boxed.

  python benchmarks/rl_navigation.py --root_dir=runs/rl_navigation --minutes_per_method=15

Trains gin/rl/navigation2d_{maml,l2f}.gin (meta-batch 20, 20 trajectories, horizon 100, one
REINFORCE step at lr 0.1, TRPO with max KL 0.01) for as many meta-iterations as fit in the
time box each, then prints the average return on the same 40 held-out tasks after 0..3
adaptation steps (95% CI over tasks), next to a random policy (actions ~ N(0, 0.1^2), clipped)
and an oracle that knows the goal (straight line at full speed: action = clip(goal - position)),
the fraction of the random-to-oracle gap each method closes after one step, and the sampler's
environment steps per second. Re-running continues the runs (each resumes its checkpoint).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os

import gin
import numpy as np
from absl import app, flags, logging

from l2f_tf import config
from l2f_tf.rl.sampler import Sampler
from l2f_tf.train import experiment

ROOT = flags.DEFINE_string("root_dir", "runs/rl_navigation", "Where the two runs go.")
MINUTES = flags.DEFINE_float("minutes_per_method", 15.0, "Training time box per method.")
EVAL_TASKS = flags.DEFINE_integer("num_eval_tasks", 40, "Held-out tasks (multiple of 20).")
METHODS = {"MAML": "maml", "MAML+L2F": "l2f"}


def reference_returns(num_tasks: int, seed: int = 20200614):
  """(random, oracle): mean return per task over the held-out tasks, and env steps/s."""
  sampler = Sampler("Navigation2D", num_tasks=20, trajectories_per_task=20, horizon=100)
  from l2f_tf.rl import envs
  env = envs.make_env("Navigation2D")
  random_returns, oracle_returns, speeds = [], [], []
  for r in range(num_tasks // 20):
    tasks = env.sample_tasks(20, seed=[seed, r])  # the evaluation's held-out tasks
    goals = np.stack([t["goal"] for t in tasks]).astype(np.float32)[:, None, :]
    log_std = np.zeros((20, 2), np.float32)
    random = sampler.sample(tasks, lambda o: (np.zeros_like(o), log_std + np.log(0.1)),
                            seed=[seed, r, 0])
    speeds.append(sampler.last_steps_per_second)
    oracle = sampler.sample(tasks, lambda o: (np.clip(goals - o, -0.1, 0.1), log_std - 30.0),
                            seed=[seed, r, 0])
    for batch, out in ((random, random_returns), (oracle, oracle_returns)):
      out.extend((batch.rewards * batch.mask).sum(-1).mean(-1))
  return np.array(random_returns), np.array(oracle_returns), float(np.median(speeds))


def ci(values):
  values = np.asarray(values)
  return values.mean(), 1.96 * values.std(ddof=1) / np.sqrt(len(values))


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  results = {}
  for label, prefix in METHODS.items():
    root = os.path.join(ROOT.value, prefix)
    gin.clear_config()
    config.setup_run(root, [os.path.join(config.GIN_DIR, "rl", f"navigation2d_{prefix}.gin")],
                     [f"MetaRLTrainer.max_seconds = {60 * MINUTES.value}",
                      f"MetaRLDomain.num_eval_tasks = {EVAL_TASKS.value}"])
    results[label] = experiment.run_experiment(root)
  random, oracle, speed = reference_returns(EVAL_TASKS.value)
  r_mean, r_ci = ci(random)
  o_mean, o_ci = ci(oracle)
  print(f"\n2D navigation, {EVAL_TASKS.value} held-out tasks, average return (95% CI); "
        f"{MINUTES.value:g} min of training per method on {os.cpu_count()} CPU cores")
  print(f"{'method':>10} {'iterations':>10} " + " ".join(f"{f'{k} steps':>16}" for k in range(4))
        + f" {'gap closed (1 step)':>20}")
  for label, result in results.items():
    test = result["evaluations"]["test"]
    cells = [f"{test[f'return_after_{k}_steps']['mean']:8.2f} +- "
             f"{test[f'return_after_{k}_steps']['ci95']:4.2f}" for k in range(4)]
    closed = (test["return_after_1_steps"]["mean"] - r_mean) / (o_mean - r_mean)
    print(f"{label:>10} {result['meta_iterations']:>10} " + " ".join(f"{c:>16}" for c in cells)
          + f" {100 * closed:>19.1f}%")
  print(f"{'random':>10} {'':>10} {r_mean:8.2f} +- {r_ci:4.2f}")
  print(f"{'oracle':>10} {'':>10} {o_mean:8.2f} +- {o_ci:4.2f}")
  print(f"sampler: {speed:,.0f} env steps/s (20 tasks x 20 trajectories x 100 steps, "
        "random policy through the sampler)")
  with open(os.path.join(ROOT.value, "summary.json"), "w") as f:
    json.dump({"results": results, "random": [float(r_mean), float(r_ci)],
               "oracle": [float(o_mean), float(o_ci)],
               "env_steps_per_second": speed}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
