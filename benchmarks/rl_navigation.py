"""MAML-TRPO vs MAML+L2F-TRPO on 2D navigation at the reference settings.

  python benchmarks/rl_navigation.py --root_dir=runs/rl_navigation/reinforce
  python benchmarks/rl_navigation.py --root_dir=runs/rl_navigation/lvc --inner_objective=lvc

Trains gin/rl/navigation2d_{maml,l2f}.gin (meta-batch 20, 20 trajectories, horizon 100, one
policy-gradient step at lr 0.1, TRPO with max KL 0.01) for the reference's 500 meta-iterations
(or fewer if --max_minutes_per_method runs out first), then prints the average return on the
same held-out tasks after 0..3 adaptation steps (95% CI over tasks), the paired difference
L2F - MAML after one step (95% CI over the same tasks), a random policy's return (actions ~
N(0, 0.1^2), clipped; and uniform on the action box), an oracle's (it knows the goal and goes
straight at full speed: action = clip(goal - position)), the fraction of the random-to-oracle
gap each method closes after one step, and the sampler's environment steps per second.

--averaging=trajectory (the default, MAML-RL's) averages every loss within each trajectory,
then over trajectories; step averages over all valid steps.
--inner_objective=reinforce is MAML-RL's inner loss (the reference); lvc is ProMP's
low-variance-curvature loss: the same inner step, a meta-gradient that also credits the
support data's dependence on theta (see l2f_tf.rl.policy_gradient.lvc_loss).
Re-running continues the runs (each resumes its checkpoint).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os

import gin
import numpy as np
from absl import app, flags, logging

from l2f_tf.rl import envs
from l2f_tf.rl.sampler import Sampler
from l2f_tf.train import experiment, restore

ROOT = flags.DEFINE_string("root_dir", "runs/rl_navigation", "Where the two runs go.")
ITERATIONS = flags.DEFINE_integer("iterations", 500, "Meta-iterations per method (reference: "
                                  "500).")
MINUTES = flags.DEFINE_float("max_minutes_per_method", 30.0, "Training time box per method.")
EVAL_TASKS = flags.DEFINE_integer("num_eval_tasks", 200, "Held-out tasks (multiple of 20).")
OBJECTIVE = flags.DEFINE_enum("inner_objective", "reinforce", ["reinforce", "lvc"],
                              "Inner-loop loss (MetaRLDomain.inner_objective).")
AVERAGING = flags.DEFINE_enum("averaging", "trajectory", ["trajectory", "step"],
                              "How losses, KL and advantage normalisation average over a task's "
                              "trajectories (MetaRLDomain.averaging).")
SEED = flags.DEFINE_integer("seed", 0, "Training seed (MetaRLTrainer.seed and build_learner.seed: "
                            "tasks, sampling noise, initial weights); the held-out tasks stay.")
METHODS = {"MAML": "maml", "MAML+L2F": "l2f"}
EVAL_SEED = 20200614  # MetaRLDomain.eval_seed: the held-out tasks of the evaluation


def reference_returns(num_tasks: int, seed: int = EVAL_SEED):
  """Per-task mean returns of the baselines on the evaluation's held-out tasks, and env steps/s.

  Returns:
    ({"random": [...], "uniform": [...], "oracle": [...]}, median env steps per second).
  """
  sampler = Sampler("Navigation2D", num_tasks=20, trajectories_per_task=20, horizon=100)
  env = envs.make_env("Navigation2D")
  rng = np.random.default_rng(seed)
  returns = {"random": [], "uniform": [], "oracle": []}
  speeds = []
  for r in range(num_tasks // 20):
    tasks = env.sample_tasks(20, seed=[seed, r])  # the evaluation's held-out tasks
    goals = np.stack([t["goal"] for t in tasks]).astype(np.float32)[:, None, :]
    log_std = np.zeros((20, 2), np.float32)
    policies = {
        "random": lambda o: (np.zeros_like(o), log_std + np.log(0.1)),
        # A deterministic policy (log-std -30) whose mean is drawn uniformly on the action box.
        "uniform": lambda o: (rng.uniform(-0.1, 0.1, o.shape).astype(np.float32),
                              log_std - 30.0),
        "oracle": lambda o: (np.clip(goals - o, -0.1, 0.1), log_std - 30.0),
    }
    for name, policy in policies.items():
      batch = sampler.sample(tasks, policy, seed=[seed, r, 0])
      if name == "random":
        speeds.append(sampler.last_steps_per_second)
      returns[name].extend((batch.rewards * batch.mask).sum(-1).mean(-1))
  return {k: np.array(v) for k, v in returns.items()}, float(np.median(speeds))


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
    restore.setup_run(root, [f"rl/navigation2d_{prefix}.gin"],
                      [f"MetaRLTrainer.num_iterations = {ITERATIONS.value}",
                      f"Runner.max_seconds = {60 * MINUTES.value}",
                      f"run_experiment.num_eval_tasks = {EVAL_TASKS.value}",
                      f"MetaRLDomain.eval_seed = {EVAL_SEED}",
                      f"MetaRLDomain.inner_objective = '{OBJECTIVE.value}'",
                      f"MetaRLDomain.averaging = '{AVERAGING.value}'",
                      f"MetaRLTrainer.seed = {SEED.value}",
                      f"build_learner.seed = {SEED.value}"])
    results[label] = experiment.run_experiment(root)
  baselines, speed = reference_returns(EVAL_TASKS.value)
  r_mean, _ = ci(baselines["random"])
  o_mean, _ = ci(baselines["oracle"])
  print(f"\n2D navigation, inner objective {OBJECTIVE.value}, {AVERAGING.value} averaging, "
        f"seed {SEED.value}, "
        f"{EVAL_TASKS.value} held-out tasks, "
        f"average return (95% CI) on {os.cpu_count()} CPU cores")
  print(f"{'method':>10} {'iterations':>10} {'minutes':>8} "
        + " ".join(f"{f'{k} steps':>16}" for k in range(4)) + f" {'gap closed (1 step)':>20}")
  summary = {"inner_objective": OBJECTIVE.value, "averaging": AVERAGING.value,
             "seed": SEED.value, "methods": {}}
  for label, result in results.items():
    test = result["evaluations"]["test"]
    cells = [f"{test[f'return_after_{k}_steps']['mean']:8.2f} +- "
             f"{test[f'return_after_{k}_steps']['ci95']:4.2f}" for k in range(4)]
    closed = (test["return_after_1_steps"]["mean"] - r_mean) / (o_mean - r_mean)
    minutes = result.get("train_seconds", float("nan")) / 60
    print(f"{label:>10} {result['meta_iterations']:>10} {minutes:8.1f} "
          + " ".join(f"{c:>16}" for c in cells) + f" {100 * closed:>19.1f}%")
    summary["methods"][label] = {
        "meta_iterations": result["meta_iterations"], "train_minutes": minutes,
        "gap_closed_after_1_step": float(closed),
        **{k: [v["mean"], v["ci95"]] for k, v in test.items()}}
  for name in ("random", "uniform", "oracle"):
    mean, half = ci(baselines[name])
    print(f"{name:>10} {'':>10} {'':>8} {mean:8.2f} +- {half:4.2f}")
    summary[name] = [float(mean), float(half)]
  after = {label: np.array(result["evaluations"]["test"]["return_after_1_steps"]["per_task"])
           for label, result in results.items()}
  diff_mean, diff_ci = ci(after["MAML+L2F"] - after["MAML"])
  print(f"L2F - MAML after 1 step, paired over the same tasks: {diff_mean:+.2f} +- {diff_ci:.2f}")
  print(f"sampler: {speed:,.0f} env steps/s (20 tasks x 20 trajectories x 100 steps, "
        "random policy through the sampler)")
  summary.update({"l2f_minus_maml_after_1_step": [float(diff_mean), float(diff_ci)],
                  "env_steps_per_second": speed})
  with open(os.path.join(ROOT.value, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)


if __name__ == "__main__":
  app.run(main)
