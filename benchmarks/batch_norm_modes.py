"""Test accuracy of each batch-norm mode on the same episodes, paired against transductive.

Train the runs first (12 runs of gin/glyphs, each ~5-10 minutes on 2 cores), one folder per
mode and file:

  for f in maml_1shot l2f_1shot maml_5shot l2f_5shot; do
    python run_experiment.py --gin_file=gin/glyphs/$f.gin --root_dir=runs/bn/transductive/$f
    for m in support task_norm_i; do
      python run_experiment.py --gin_file=gin/glyphs/$f.gin --root_dir=runs/bn/$m/$f \\
          --gin_bindings="BatchNorm.mode = '$m'"
    done
  done
  python benchmarks/batch_norm_modes.py --runs=runs/bn --output=runs/bn/table.json

For every file this restores each mode's exported (best validated) checkpoint, evaluates it on
the run's own test episodes (the same for every mode: `l2f_tf.compare.check_shared_tasks`
checks that), and prints the accuracy after the trained number of inner steps with its 95% CI
over episodes, the paired difference of each inductive mode against transductive, and the
transductive model's accuracy when each query is predicted in a call of its own
(``per_task_metrics(queries_alone=True)``), paired against its batched accuracy.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os
from typing import Dict, List, Tuple

import numpy as np
from absl import app, flags

from l2f_tf import atomic, compare
from l2f_tf.meta.predictions import per_task_metrics
from l2f_tf.run_folder import RunFolder
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import restore

RUNS = flags.DEFINE_string("runs", "runs/bn", "Folder holding <mode>/<file> run folders.")
FILES = flags.DEFINE_list("files", ["maml_1shot", "l2f_1shot", "maml_5shot", "l2f_5shot"],
                          "The glyphs gin files trained in every mode.")
OUTPUT = flags.DEFINE_string("output", None, "Also write the figures to this JSON file.")
MODES = ("transductive", "support", "task_norm_i")


def per_task(run_dir: str, num_tasks: int,
             queries_alone: bool = False) -> Tuple[int, Dict[str, np.ndarray]]:
  """(the trained number of inner steps S, {"batched": [num_tasks] accuracy after S steps on the
  run's test episodes, and with ``queries_alone`` "alone": the same with one query per call})."""
  domain, learner = restore.restore_learner(run_dir)
  steps = learner.num_inner_steps
  values = {}
  for key, alone in (("batched", False), ("alone", True))[:1 + queries_alone]:
    values[key] = per_task_metrics(
        learner, domain.eval_batches("test", num_tasks), domain.task_metric, steps,
        chunk_size=domain.eval_batch_size, vectorized=domain.eval_vectorized,
        queries_alone=alone)[:, steps]
  return steps, values


def text(figures: Dict[str, float], signed: bool = False) -> str:
  sign = "+" if signed else ""
  return f"{100 * figures['mean']:{sign}.2f} +- {100 * figures['ci95']:.2f}"


def measure_file(name: str) -> Dict:
  """The figures of one gin file across the modes (accuracy in [0, 1])."""
  runs = [os.path.join(RUNS.value, mode, name) for mode in MODES]
  reason, num_tasks, _ = compare.check_shared_tasks(runs)
  if reason:
    raise ValueError(f"{name}: the modes' runs do not share their test episodes: {reason}")
  steps, transductive = per_task(runs[0], num_tasks, queries_alone=True)
  values = {"transductive": transductive["batched"],
            **{mode: per_task(run, num_tasks)[1]["batched"]
               for mode, run in zip(MODES[1:], runs[1:])},
            "transductive, queries alone": transductive["alone"]}
  figures = {"num_tasks": num_tasks, "steps": steps, "accuracy": {}, "paired_vs_transductive": {}}
  for label, v in values.items():
    figures["accuracy"][label] = mean_and_ci95(v)
    if label != "transductive":
      figures["paired_vs_transductive"][label] = mean_and_ci95(v - values["transductive"])
  figures["results_json"] = {  # what each run recorded at the end of its training
      mode: RunFolder(run).read_results()["evaluations"]["test"][f"accuracy_after_{steps}_steps"]
      for mode, run in zip(MODES, runs)}
  return figures


def table(all_figures: Dict[str, Dict]) -> List[str]:
  """Markdown rows: accuracy (%) per mode, then the paired differences in points."""
  header = ["| glyphs file | transductive | support | TaskNorm-I | transductive, one query per "
            "call |", "| --- | --- | --- | --- | --- |"]
  rows = []
  for name, f in all_figures.items():
    acc, diff = f["accuracy"], f["paired_vs_transductive"]
    cells = [text(acc["transductive"])]
    for label in ("support", "task_norm_i", "transductive, queries alone"):
      cells.append(f"{text(acc[label])} ({text(diff[label], signed=True)})")
    rows.append(f"| {name} | " + " | ".join(cells) + " |")
  return header + rows


def main(argv):
  del argv
  all_figures = {}
  for name in FILES.value:
    all_figures[name] = measure_file(name)
    print(json.dumps({name: all_figures[name]["accuracy"]}), flush=True)
  print("\n".join(table(all_figures)))
  if OUTPUT.value:
    atomic.write_json(OUTPUT.value, all_figures)


if __name__ == "__main__":
  app.run(main)
