"""Reproduces L2F Table 7 (sinusoid regression) and measures meta-training throughput.

  python benchmarks/sinusoid_table7.py --root_dir=runs/table7            # full protocol
  python benchmarks/sinusoid_table7.py --only_throughput                  # speed figures only

For K in {5, 10, 20} and MAML / MAML+L2F, runs gin/sinusoid/{maml,l2f}_{K}shot.gin through the
normal experiment runner (70,000 meta-iterations, meta-batch 25; a finished run is reused, an
interrupted one resumes), evaluates the MSE after 1, 2 and 5 inner steps on 600 fixed test tasks
of 100 points (mean and 95% CI), prints the table beside the paper's numbers and saves a
MAML-vs-L2F plot per K. Throughput is measured for meta-batch 25, 5-shot, one second-order inner
step, with and without XLA (jit_compile), on the compiled step alone and on the full loop
(one meta-iteration per compiled call, and 100 per call: Trainer.steps_per_call).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os
import subprocess
import sys
import tempfile
import time

import gin
import keras
from absl import app, flags, logging

from l2f_tf import compare
from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.meta import predictions
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import experiment, restore
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer

ROOT = flags.DEFINE_string("root_dir", "runs/table7", "Where the six runs live.")
ITERATIONS = flags.DEFINE_integer("num_iterations", 70000, "Meta-iterations per run.")
EVAL_TASKS = flags.DEFINE_integer("num_eval_tasks", 600, "Test tasks per cell.")
ONLY_THROUGHPUT = flags.DEFINE_bool("only_throughput", False, "Skip the Table 7 runs.")
SKIP_THROUGHPUT = flags.DEFINE_bool("skip_throughput", False, "Skip the throughput figures.")
CASE = flags.DEFINE_string("throughput_case", None, "Internal: measure one case (method,jit) "
                           "in this process and print it as JSON.")

SHOTS = (5, 10, 20)
STEPS = (1, 2, 5)
PAPER = {  # L2F paper, Table 7: MSE after 1 / 2 / 5 steps.
    ("MAML", 5): (1.2247, 1.0268, 0.8995), ("MAML+L2F", 5): (1.0537, 0.8426, 0.7096),
    ("MAML", 10): (0.9884, 0.6192, 0.4072), ("MAML+L2F", 10): (0.8069, 0.5317, 0.3696),
    ("MAML", 20): (0.6144, 0.3346, 0.1817), ("MAML+L2F", 20): (0.5475, 0.2805, 0.1629),
}
METHODS = {"MAML": "maml", "MAML+L2F": "l2f"}


def run_table(root: str, num_iterations: int, num_eval_tasks: int):
  results = {}
  for shots in SHOTS:
    for method, prefix in METHODS.items():
      run_dir = os.path.join(root, f"{prefix}_{shots}shot")
      gin.clear_config()
      restore.setup_run(run_dir, [f"sinusoid/{prefix}_{shots}shot.gin"],
                        [f"Trainer.num_iterations = {num_iterations}",
                        f"run_experiment.num_eval_tasks = {num_eval_tasks}"])
      start = time.perf_counter()
      results[(method, shots)] = experiment.run_experiment(run_dir)
      logging.info("%s %d-shot done in %.0f s", method, shots, time.perf_counter() - start)
    compare.compare_figure([os.path.join(root, f"{prefix}_{shots}shot") for prefix in
                            METHODS.values()], os.path.join(root, f"maml_vs_l2f_{shots}shot.png"))
  return results


def paired_differences(root: str):
  """(shots, steps) -> mean and 95% CI of per-task MSE(L2F) - MSE(MAML) on the same tasks."""
  differences = {}
  for shots in SHOTS:
    values = {}
    for method, prefix in METHODS.items():
      domain, learner = restore.restore_learner(os.path.join(root, f"{prefix}_{shots}shot"))
      episodes, _ = domain.eval_episodes("test", EVAL_TASKS.value)
      values[method] = predictions.per_task_metrics(learner, episodes, domain.task_metric,
                                                   max(STEPS))
    for k in STEPS:
      differences[(shots, k)] = mean_and_ci95(values["MAML+L2F"][:, k] - values["MAML"][:, k])
  return differences


def ood_cell(value) -> str:
  """Mean +- CI, or how many tasks diverged (inf/nan) when some did."""
  if value.get("num_non_finite", 0):
    return f"{value['num_non_finite']}/{value['n']} diverged"
  return f"{value['mean']:.4g}+-{value['ci95']:.3g}"


def print_table(results, differences):
  print("\nSinusoid regression, MSE on 600 test tasks x 100 points (mean +- 95% CI); "
        "paper (Table 7) in brackets")
  print(f"{'':>10} {'method':>9} " + " ".join(f"{f'{k} step' + ('s' if k > 1 else ''):>24}"
                                           for k in STEPS))
  for shots in SHOTS:
    for method in METHODS:
      figures = results[(method, shots)]["evaluations"]["test"]
      cells = []
      for k, paper in zip(STEPS, PAPER[(method, shots)]):
        value = figures[f"mse_after_{k}_steps"]
        cells.append(f"{value['mean']:.4f}+-{value['ci95']:.4f} [{paper:.4f}]")
      print(f"{shots:>4}-shot {method:>9} " + " ".join(f"{c:>24}" for c in cells))
  print("\nPaired difference L2F - MAML on the same test tasks (mean +- 95% CI; negative = L2F "
        "better):")
  for shots in SHOTS:
    cells = [f"{d['mean']:+.4f}+-{d['ci95']:.4f}"
             for d in (differences[(shots, k)] for k in STEPS)]
    print(f"{shots:>4}-shot {'':>9} " + " ".join(f"{c:>24}" for c in cells))
  print("\nOut-of-range tasks (A in [5, 7.5], phase in [pi, 1.5 pi], f in [1.25, 1.5]), MSE "
        "(a cell reads 'k/n diverged' if adaptation blew up on k tasks):")
  for shots in SHOTS:
    for method in METHODS:
      figures = results[(method, shots)]["evaluations"]["out_of_range"]
      cells = [ood_cell(figures[f"mse_after_{k}_steps"]) for k in STEPS]
      print(f"{shots:>4}-shot {method:>9} " + " ".join(f"{c:>24}" for c in cells))


def throughput(l2f: bool, jit_compile: bool, iterations: int = 3000):
  """it/s at meta-batch 25, 5-shot, 1 second-order step: compiled step alone, and the full
  training loop with 1 and with 100 meta-iterations per compiled call (median of 3 windows)."""
  keras.utils.set_random_seed(0)
  domain = SinusoidRegression(num_shots=5, meta_batch_size=25)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1,
                        attenuation=TaskConditionedAttenuation() if l2f else None)
  rates = []
  with tempfile.TemporaryDirectory() as root:
    trainer = Trainer(learner, domain, root, num_iterations=iterations, summary_every=0,
                      jit_compile=jit_compile)
    runner = Runner(trainer, checkpoint_every=10**9, log_every_seconds=1e9)
    step_fn = trainer.train_step_fn(first_order=False, with_metrics=False)
    batch = next(iter(domain.train_dataset(seed=0)))
    step_fn(batch)  # trace and compile

    def time_steps():
      start = time.perf_counter()
      for _ in range(iterations):
        loss = step_fn(batch)[0]
      float(loss)
      return iterations / (time.perf_counter() - start)

    rates.append(median_of(time_steps))
    for steps_per_call in (1, 100):
      trainer.steps_per_call = steps_per_call
      trainer.optimizer.iterations.assign(0)
      trainer.num_iterations = 201
      runner.train()  # compile the loop's own pieces

      def time_loop():
        trainer.num_iterations += iterations
        start = time.perf_counter()
        runner.train()
        return iterations / (time.perf_counter() - start)

      rates.append(median_of(time_loop))
  return rates


def median_of(measure, repeats: int = 3) -> float:
  """The median of a few repeats (robust to a slow first window or a noisy neighbour)."""
  return float(sorted(measure() for _ in range(repeats))[repeats // 2])


def throughput_in_subprocess(l2f: bool, jit_compile: bool):
  """Each case runs in a fresh process so that one case's threads cannot slow the next."""
  out = subprocess.run([sys.executable, os.path.abspath(__file__),
                        f"--throughput_case={int(l2f)},{int(jit_compile)}"],
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  if CASE.value:
    l2f, jit = (bool(int(v)) for v in CASE.value.split(","))
    print(json.dumps(throughput(l2f, jit)))
    return
  if not SKIP_THROUGHPUT.value:
    rows = []
    for l2f in (False, True):
      for jit in (True, False):
        rows.append(("MAML+L2F" if l2f else "MAML", jit, *throughput_in_subprocess(l2f, jit)))
    print("\nMeta-training throughput (meta-batch 25, 5-shot, 1 inner step, second order), "
          f"{os.cpu_count()} CPU cores")
    print(f"{'method':>9} {'jit_compile':>11} {'step it/s':>10} {'loop it/s':>10} "
          f"{'loop it/s, 100 per call':>24}")
    for method, jit, step_rate, loop_rate, chunked_rate in rows:
      print(f"{method:>9} {str(jit):>11} {step_rate:>10.0f} {loop_rate:>10.0f} "
            f"{chunked_rate:>24.0f}")
  if not ONLY_THROUGHPUT.value:
    results = run_table(ROOT.value, ITERATIONS.value, EVAL_TASKS.value)
    print_table(results, paired_differences(ROOT.value))
    with open(os.path.join(ROOT.value, "table7.json"), "w") as f:
      json.dump({f"{m}/{k}": r for (m, k), r in results.items()}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
