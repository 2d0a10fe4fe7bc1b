"""TRPO's curvature products, exact Hessian vs Gauss-Newton (Fisher): speed at equal steps.

  python benchmarks/trpo_curvature.py --env=navigation2d --method=maml
  python benchmarks/trpo_curvature.py --env=navigation2d --method=l2f
  python benchmarks/trpo_curvature.py --env=halfcheetah_vel --method=l2f --meta_batch_size=10
  # on a trained policy instead of the initial one:
  python benchmarks/trpo_curvature.py --run_dir=runs/rl_navigation/reinforce/maml

Builds two MetaRLTrainers from gin/rl/<env>_<method>.gin (or from a run's operative config and
latest checkpoint) that differ only in ``MetaRLTrainer.curvature``, samples ONE meta-iteration
(support and query trajectories of every task), then times the compiled TRPO step of each on
that same batch from the same weights, alternating the two, ``--repeats`` times after one
untimed warm-up (tracing). Prints the median and spread of the step's wall time, the relative
difference of the two updates ||step_fisher - step_hessian|| / ||step_hessian||, and both
line searches' outcome, so "faster at equal results" is read off one table.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import os
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf
from absl import app, flags

from l2f_tf.rl import trpo
from l2f_tf.train import checkpoints, experiment, restore
from l2f_tf.train.meta_rl_trainer import CURVATURES, MetaRLTrainer

ENV = flags.DEFINE_enum("env", "navigation2d",
                        ["navigation2d", "halfcheetah_vel", "halfcheetah_dir", "ant_vel",
                         "ant_dir"], "Environment (gin/rl/<env>_<method>.gin).")
METHOD = flags.DEFINE_enum("method", "maml", ["maml", "l2f"], "Learner.")
RUN_DIR = flags.DEFINE_string("run_dir", None, "Use this run's config and latest checkpoint "
                              "(overrides --env and --method).")
META_BATCH = flags.DEFINE_integer("meta_batch_size", None, "Tasks per meta-iteration "
                                  "(default: the gin file's).")
REPEATS = flags.DEFINE_integer("repeats", 5, "Timed TRPO steps per curvature.")
ITERATION = flags.DEFINE_integer("iteration", 0, "Which meta-iteration's tasks and noise.")


def build(curvature: str, root: str, gin_file: str, bindings) -> MetaRLTrainer:
  domain = restore.parse_domain([gin_file], bindings)
  learner = experiment.build_learner(domain)
  if RUN_DIR.value:
    checkpoints.restore_weights(learner, checkpoints.latest(os.path.join(RUN_DIR.value,
                                                                         "checkpoints")))
  return MetaRLTrainer(learner, domain, os.path.join(root, curvature), curvature=curvature)


def flat(trainer: MetaRLTrainer) -> np.ndarray:
  return trpo.flatten(trainer.tf_variables).numpy()


def assign(trainer: MetaRLTrainer, values: np.ndarray) -> None:
  for variable, value in zip(trainer.tf_variables,
                             trpo.unflatten(tf.constant(values), trainer.tf_variables)):
    variable.assign(value)


def main(argv):
  del argv
  bindings = ["MetaRLDomain.num_workers = 0"]
  if META_BATCH.value:
    bindings.append(f"MetaRLDomain.meta_batch_size = {META_BATCH.value}")
  gin_file = (os.path.join(RUN_DIR.value, "operative_config.gin") if RUN_DIR.value else
              f"rl/{ENV.value}_{METHOD.value}.gin")
  root = tempfile.mkdtemp(prefix="trpo_curvature_")
  trainers = {c: build(c, root, gin_file, bindings) for c in CURVATURES}
  start = flat(trainers["hessian"])
  np.testing.assert_array_equal(start, flat(trainers["fisher"]))
  batch = trainers["hessian"].sample_iteration(ITERATION.value)
  tasks, steps = batch.query.x.shape[:2]
  num_params = start.size
  print(f"{gin_file}: {tasks} tasks x {steps} query steps, {num_params} meta-parameters")

  times = {c: [] for c in CURVATURES}
  updates, outcomes = {}, {}
  for repeat in range(REPEATS.value + 1):
    order = CURVATURES if repeat % 2 == 0 else CURVATURES[::-1]
    for curvature in order:
      trainer = trainers[curvature]
      assign(trainer, start)
      began = time.perf_counter()
      diagnostics = trainer.update(batch)
      diagnostics = {k: float(v) for k, v in diagnostics.items()}  # waits for the step
      elapsed = time.perf_counter() - began
      if repeat:  # the first round traces the graphs
        times[curvature].append(elapsed)
      updates[curvature] = flat(trainer) - start
      outcomes[curvature] = diagnostics

  print(f"{'curvature':>10} {'median s':>9} {'min s':>7} {'max s':>7} {'accepted':>8} "
        f"{'backtracks':>10} {'step size':>10} {'KL after':>9}")
  for curvature in CURVATURES:
    t, d = np.array(times[curvature]), outcomes[curvature]
    print(f"{curvature:>10} {np.median(t):9.3f} {t.min():7.3f} {t.max():7.3f} "
          f"{d['accepted']:8.0f} {d['backtracks']:10.0f} {d['step_size']:10.4f} {d['kl']:9.5f}")
  speedup = np.median(times["hessian"]) / np.median(times["fisher"])
  difference = (np.linalg.norm(updates["fisher"] - updates["hessian"])
                / max(np.linalg.norm(updates["hessian"]), 1e-30))
  print(f"fisher speed-up {speedup:.2f}x; ||step_fisher - step_hessian|| / ||step_hessian|| = "
        f"{difference:.2e} (float32 conjugate gradient)")
  gin.clear_config()


if __name__ == "__main__":
  app.run(main)
