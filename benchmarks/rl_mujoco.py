"""MAML-TRPO vs MAML+L2F-TRPO on MuJoCo direction / velocity tasks, on the same held-out tasks.

  # The reference settings (meta-batch 40, 20 trajectories, horizon 200, 500 meta-iterations):
  python benchmarks/rl_mujoco.py --env=halfcheetah_vel --root_dir=runs/rl_mujoco
  # A quarter of the reference budget, one root per seed (state the cut when you quote it):
  python benchmarks/rl_mujoco.py --env=halfcheetah_dir --iterations=125 --seed=1 \
      --root_dir=runs/mujoco25/seed1

  # The markdown tables of every finished pair under a folder (any depth, e.g. one root per seed):
  python benchmarks/rl_mujoco.py --table --root_dir=runs/mujoco25

For each learner it trains gin/rl/<env>_{maml,l2f}.gin (resuming a finished or interrupted run
from its checkpoint), evaluates on ``--num_eval_tasks`` held-out tasks (the same tasks for both
learners: ``MetaRLDomain.eval_seed``) and prints the average return before and after one
adaptation step (95% CI over tasks), the improvement from adaptation, and the paired
differences L2F - MAML after one step, before adaptation and of the improvement (95% CI over
the same tasks). Writes summary.json.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import glob
import json
import os

import gin
import numpy as np
from absl import app, flags, logging

from l2f_tf import atomic
from l2f_tf.stats import mean_and_ci95

ENV = flags.DEFINE_enum("env", "halfcheetah_vel",
                        ["halfcheetah_vel", "halfcheetah_dir", "ant_vel", "ant_dir"],
                        "Environment (gin/rl/<env>_{maml,l2f}.gin).")
ROOT = flags.DEFINE_string("root_dir", "runs/rl_mujoco", "Where the runs go (<root>/<env>/...).")
ITERATIONS = flags.DEFINE_integer("iterations", 500, "Meta-iterations per learner.")
META_BATCH = flags.DEFINE_integer("meta_batch_size", 40, "Tasks per meta-iteration.")
EVAL_TASKS = flags.DEFINE_integer("num_eval_tasks", 40,
                                  "Held-out tasks (a multiple of --meta_batch_size).")
MINUTES = flags.DEFINE_float("max_minutes_per_method", None, "Optional training time box.")
WORKERS = flags.DEFINE_integer("num_workers", 2, "Simulator worker processes (0: in-process).")
SEED = flags.DEFINE_integer("seed", 0, "Training seed (tasks, sampling noise, initial weights).")
TABLE = flags.DEFINE_bool("table", False, "Print the markdown tables of every finished pair under "
                          "--root_dir (each summary.json) instead of training.")
METHODS = {"MAML": "maml", "MAML+L2F": "l2f"}


def train_and_evaluate(label: str, prefix: str) -> dict:
  # Imported here: --table needs no TensorFlow.
  from l2f_tf.train import experiment, restore  # pylint: disable=import-outside-toplevel
  root = os.path.join(ROOT.value, ENV.value, prefix)
  bindings = [f"MetaRLTrainer.num_iterations = {ITERATIONS.value}",
              f"MetaRLDomain.meta_batch_size = {META_BATCH.value}",
              f"run_experiment.num_eval_tasks = {EVAL_TASKS.value}",
              "run_experiment.eval_steps = (1,)",
              f"MetaRLDomain.num_workers = {WORKERS.value}",
              f"MetaRLTrainer.seed = {SEED.value}", f"build_learner.seed = {SEED.value}"]
  if MINUTES.value:
    bindings.append(f"Runner.max_seconds = {60 * MINUTES.value}")
  gin.clear_config()
  restore.setup_run(root, [f"rl/{ENV.value}_{prefix}.gin"], bindings)
  logging.info("Training %s on %s in %s", label, ENV.value, root)
  return experiment.run_experiment(root)


def per_task_returns(result: dict) -> dict:
  """{figure: per-task returns [tasks]} of a run's held-out evaluation."""
  test = result["evaluations"]["test"]
  names = {"0 steps": "return_after_0_steps", "1 step": "return_after_1_steps",
           "0 steps, theta": "return_after_0_steps_without_attenuation"}
  return {label: np.array(test[key]["per_task"]) for label, key in names.items() if key in test}


def cell(values) -> str:
  figure = mean_and_ci95(values)
  return f"{figure['mean']:.2f} +- {figure['ci95']:.2f}"


def tables(root: str) -> str:
  """Markdown: each finished pair's returns, and the paired L2F - MAML differences per seed and
  averaged over the seeds of an environment (the held-out tasks are the same for every seed)."""
  pairs = {}
  for path in sorted(glob.glob(os.path.join(root, "**", "summary.json"), recursive=True)):
    with open(path) as f:
      summary = json.load(f)
    runs = {}
    for label, prefix in METHODS.items():
      with open(os.path.join(os.path.dirname(path), prefix, "results.json")) as f:
        result = json.load(f)
      runs[label] = (result, per_task_returns(result))
    pairs.setdefault(summary["env"], {})[summary["seed"]] = runs
  if not pairs:
    raise SystemExit(f"No finished pair (summary.json) under {root}: train one first.")
  lines = ["| environment | seed | method | meta-iterations | 0 steps | 1 step | "
           "1 step - 0 steps | 0 steps from theta (no attenuation) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for env, seeds in pairs.items():
    for seed, runs in sorted(seeds.items()):
      for label, (result, returns) in runs.items():
        theta = cell(returns["0 steps, theta"]) if "0 steps, theta" in returns else ""
        lines.append(f"| {env} | {seed} | {label} | {result['meta_iterations']} | "
                     f"{cell(returns['0 steps'])} | {cell(returns['1 step'])} | "
                     f"{cell(returns['1 step'] - returns['0 steps'])} | {theta} |")
  lines += ["", "| environment | seed | before adaptation | after one step | of the improvement "
            "| tasks where L2F is ahead after one step |",
            "| --- | --- | --- | --- | --- | --- |"]
  for env, seeds in pairs.items():
    differences = {}
    for seed, runs in sorted(seeds.items()):
      maml, l2f = runs["MAML"][1], runs["MAML+L2F"][1]
      differences[seed] = (l2f["0 steps"] - maml["0 steps"], l2f["1 step"] - maml["1 step"])
    rows = list(differences.items())
    if len(rows) > 1:
      rows.append((f"mean of {len(rows)}", tuple(np.mean([d[k] for d in differences.values()],
                                                          axis=0) for k in range(2))))
    for seed, (before, after) in rows:
      lines.append(f"| {env} | {seed} | {cell(before)} | {cell(after)} | "
                   f"{cell(after - before)} | {int(np.sum(after > 0))} of {len(after)} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if TABLE.value:
    print(tables(ROOT.value))
    return
  logging.set_verbosity(logging.INFO)
  results = {label: train_and_evaluate(label, prefix) for label, prefix in METHODS.items()}
  print(f"\n{ENV.value}: meta-batch {META_BATCH.value}, seed {SEED.value}, "
        f"{EVAL_TASKS.value} held-out tasks, average return (95% CI over tasks)")
  print(f"{'method':>10} {'iterations':>10} {'minutes':>8} {'0 steps':>18} {'1 step':>18} "
        f"{'1 step - 0 steps':>18}")
  summary = {"env": ENV.value, "meta_batch_size": META_BATCH.value, "seed": SEED.value,
             "num_eval_tasks": EVAL_TASKS.value, "methods": {}}
  before, after = {}, {}
  for label, result in results.items():
    test = result["evaluations"]["test"]
    before[label] = np.array(test["return_after_0_steps"]["per_task"])
    after[label] = np.array(test["return_after_1_steps"]["per_task"])
    cells = [mean_and_ci95(v) for v in (before[label], after[label],
                                         after[label] - before[label])]
    minutes = result["train_seconds"] / 60
    print(f"{label:>10} {result['meta_iterations']:>10} {minutes:8.1f} " +
          " ".join(f"{c['mean']:9.2f} +- {c['ci95']:5.2f}" for c in cells))
    summary["methods"][label] = {"meta_iterations": result["meta_iterations"],
                                 "train_minutes": minutes, "before": cells[0],
                                 "after_1_step": cells[1], "improvement": cells[2]}
  # Paired over the same tasks. A difference after one step that is already there before
  # adaptation comes from the initial policy, not from adapting better: the last line tells.
  for name, key, values in (
      ("after 1 step", "l2f_minus_maml_after_1_step", lambda m: after[m]),
      ("before adaptation", "l2f_minus_maml_before", lambda m: before[m]),
      ("of the improvement", "l2f_minus_maml_improvement", lambda m: after[m] - before[m])):
    difference = mean_and_ci95(values("MAML+L2F") - values("MAML"))
    print(f"L2F - MAML {name}, paired over the same tasks: {difference['mean']:+.2f} +- "
          f"{difference['ci95']:.2f}")
    summary[key] = difference
  os.makedirs(os.path.join(ROOT.value, ENV.value), exist_ok=True)
  # Atomic: a finished pair is one whose summary.json exists (--table, and a queue of runs).
  atomic.write_json(os.path.join(ROOT.value, ENV.value, "summary.json"), summary)


if __name__ == "__main__":
  app.run(main)
