"""Compares finished runs: their results side by side, the paired difference of each later run
against the first on the same evaluation tasks, and a figure on the same test tasks.

  python -m l2f_tf.compare --run_dir=runs/maml_5shot --run_dir=runs/l2f_5shot \\
      --figure=runs/maml_vs_l2f_5shot.png --output=runs/maml_vs_l2f_5shot.json

Runs are restored with `l2f_tf.restore_learner`; the figure draws every learner on the first
run's domain. **Paired differences** (``--paired``, default): for each later run B against the
first run A, distribution and step count k, the mean over tasks of metric_B(task, k) -
metric_A(task, k) with its 95% CI (narrower than the unpaired one printed beside it as far as
task difficulty correlates the runs). Runs share their tasks when:

1. none is a meta-RL run (sampled returns are not paired here);
2. their domains have the same class and name;
3. their domains (built from each run's operative_config.gin, defaults included) agree on
   every public setting except :data:`IGNORED_SETTINGS`, which cannot change the evaluation
   tasks or only say where the data lives (check 5 covers those);
4. they are evaluated on the same number of tasks: ``--num_tasks``, else each run's own
   ``num_eval_tasks``, which must then agree;
5. a SHA-256 of every support and query array, computed while evaluating, agrees (e.g. it
   tells two datasets under the same settings apart).
Otherwise one line names the failed check (the differing setting and each run's value).

A run made in Python has no operative_config.gin: ``--gin_file`` names a gin file that builds
its domain (its learner is read from its settings.json; `l2f_tf.train.restore.run_config`),
for the paired differences and the figure; its results print without it.
"""

from l2f_tf import console  # (l2f_tf is imported first: it sets TF_USE_LEGACY_KERAS)

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import hashlib
import math
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
from absl import app, flags

from l2f_tf import atomic, plots
from l2f_tf.domains.base import SupervisedDomain
from l2f_tf.meta.predictions import is_task_batch, per_task_metrics
from l2f_tf.run_folder import CONFIG_NAME, RunFolder
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import restore

FLAGS = flags.FLAGS

# Domain settings that cannot change the evaluation tasks (or, ``root`` and the like, only say
# where the data lives: the task fingerprint checks those).
IGNORED_SETTINGS = frozenset({
    "meta_batch_size", "eval_batch_size", "plot_episodes", "num_query_train", "train_tasks",
    "backbone", "network", "reader_options", "root", "data_root", "data_dir", "cache_dir",
    "log_metric_per_step", "eval_vectorized", "validation_split"})


def define_flags() -> None:
  """The command line (defined only when run, so that importing this module defines no flag)."""
  flags.DEFINE_multi_string("run_dir", [], "Run directories to compare; repeatable.")
  flags.DEFINE_string("figure", None, "PNG path for the figure (optional).")
  flags.DEFINE_integer("num_steps", 5, "Inner steps for the 'after adaptation' curves.")
  flags.DEFINE_boolean("paired", True, "Print the paired difference (and its 95% CI) of each "
                       "later run against the first on the same evaluation tasks.")
  flags.DEFINE_integer("num_tasks", None, "Evaluation tasks of the paired comparison "
                       "(default: the runs' own num_eval_tasks).")
  flags.DEFINE_string("output", None, "Optional JSON output path (results and paired "
                      "differences).")
  flags.DEFINE_integer("chunk_size", 100, "Tasks adapted at once in the paired evaluation.")
  flags.DEFINE_multi_string("gin_file", [], "Gin file(s) that build the domain of the runs made "
                            "in Python (which have no operative_config.gin; their learner is "
                            "read from settings.json); not used for other runs.")


def results_table(run_dirs: List[str]) -> str:
  """A text table of every run's results.json (test distributions x metrics)."""
  lines = []
  for run_dir in run_dirs:
    results = RunFolder(run_dir).read_results()
    for distribution, figures in results["evaluations"].items():
      cells = ", ".join(f"{name}={v['mean']:.4f}+-{v['ci95']:.4f}" for name, v in figures.items())
      objective = results.get("inner_objective")  # meta-RL runs
      method = results["method"] + (f" ({objective})" if objective else "")
      if results.get("smoke"):
        method += " (smoke run: tiny loops, numbers mean nothing)"
      lines.append(f"{method:>10} [{os.path.basename(run_dir.rstrip('/'))}] "
                   f"{distribution}: {cells}")
  return "\n".join(lines)


def compare_figure(run_dirs: List[str], output: str, num_steps: int = 5,
                   gin_files: Sequence[str] = ()) -> str:
  """A figure of every run on the same test tasks (meta-RL: from the runs' results.json);
  ``gin_files``: the domain of runs made in Python."""
  results = [RunFolder(run_dir).read_results() for run_dir in run_dirs]
  if results[0]["metric"] == "return":
    return returns_figure(results, output)
  learners: Dict[str, object] = {}
  evaluations: Dict[str, Dict] = {}
  domain = None
  for run_dir, run_results in zip(run_dirs, results):
    run_domain, learner = restore.restore_learner(run_dir, gin_files=gin_files)
    domain = domain or run_domain
    label = learner.method_name
    if label in learners:
      label = f"{label} ({os.path.basename(run_dir.rstrip('/'))})"
    learners[label] = learner
    if "test" in run_results.get("evaluations", {}):
      evaluations[label] = run_results["evaluations"]["test"]  # the figure draws these
  return domain.plot(learners, output, num_steps=num_steps, evaluations=evaluations)


def returns_figure(results: List[Dict], path: str) -> str:
  """Return vs adaptation steps of several finished meta-RL runs (their results.json)."""
  evaluations = {}
  objectives = {result.get("inner_objective", "reinforce") for result in results}
  for result in results:
    label = result["method"]
    if len(objectives) > 1:  # e.g. MAML (reinforce) vs MAML (lvc)
      label += f" ({result.get('inner_objective', 'reinforce')})"
    while label in evaluations:
      label += "'"
    evaluations[label] = result["evaluations"]["test"]
  return plots.plot_returns(path, evaluations, results[0]["domain"])


# --- paired differences --------------------------------------------------------------------------
def run_labels(run_dirs: Sequence[str]) -> List[str]:
  """Each run's folder name, or its path when two runs share a folder name."""
  names = [os.path.basename(os.path.normpath(run_dir)) for run_dir in run_dirs]
  return [name if names.count(name) == 1 else os.path.normpath(run_dir)
          for name, run_dir in zip(names, run_dirs)]


_UNKNOWN = object()  # A setting that cannot be compared (a function, a network builder).


def _plain(value) -> Any:
  """``value`` as plain data that compares by value (JSON-like), or _UNKNOWN."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, tf.DType):
    return value.name
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
  if callable(value):
    return _UNKNOWN
  if type(value).__repr__ is not object.__repr__:
    return repr(value)
  if hasattr(value, "__dict__"):  # e.g. a SinusoidTasks distribution: its public fields.
    return {"type": type(value).__name__, **{k: _plain(v) for k, v in sorted(vars(value).items())
                                             if not k.startswith("_")}}
  return _UNKNOWN


def task_settings(domain) -> Dict[str, Any]:
  """The domain's settings that define its evaluation tasks (see the module docstring)."""
  settings = {"domain": type(domain).__name__, "name": domain.name,
              "eval_seed": domain.eval_seed,
              "eval_distributions": _plain(getattr(domain, "eval_distributions", None))}
  for name, value in sorted(vars(domain).items()):
    if name.startswith("_") or name in IGNORED_SETTINGS or name in settings:
      continue
    value = _plain(value)
    if value is not _UNKNOWN:
      settings[name] = value
  return settings


def _reported_steps(results: Dict) -> List[int]:
  """The step counts k of the ``<metric>_after_<k>_steps`` figures of every distribution."""
  steps = None
  for figures in results.get("evaluations", {}).values():
    found = {int(m.group(1)) for m in (re.fullmatch(r".+_after_(\d+)_steps", name)
                                       for name in figures) if m}
    steps = found if steps is None else steps & found
  return sorted(steps or [])


def _num_eval_tasks(results: Dict) -> Optional[int]:
  return next((int(value["n"]) for figures in results.get("evaluations", {}).values()
               for value in figures.values()), None)


def _differing(labels: Sequence[str], values: Sequence[Any], what: str) -> Optional[str]:
  if all(v == values[0] for v in values[1:]):
    return None
  shown = "; ".join(f"{label}: {value}" for label, value in zip(labels, values))
  return f"{what} differs ({shown})"


def check_shared_tasks(run_dirs: Sequence[str], num_tasks: Optional[int] = None,
                       gin_files: Sequence[str] = ()) -> Tuple[Optional[str], int, List[int]]:
  """(why the runs do NOT share their evaluation tasks, or None; the number of tasks; the step
  counts every run reports): checks 1 to 4 of the module docstring (replaces the gin config).
  ``gin_files``: the domain of runs made in Python."""
  labels = run_labels(run_dirs)
  results = [RunFolder(run_dir).read_results() for run_dir in run_dirs]
  rl = [label for label, r in zip(labels, results) if r.get("metric") == "return"]
  steps = sorted(set.intersection(*(set(_reported_steps(r)) for r in results)))
  counts = [_num_eval_tasks(r) for r in results]
  given, num_tasks = num_tasks is not None, num_tasks or counts[0] or 0
  if rl:
    return (f"meta-RL runs ({', '.join(rl)}) are not paired here: their returns come from "
            "sampled episodes, not fixed tasks", num_tasks, steps)
  settings = []
  for run_dir in run_dirs:
    domain = restore.parse_domain(*restore.run_config(run_dir, gin_files))
    if not isinstance(domain, SupervisedDomain):
      return f"{run_dir} is not a supervised run", num_tasks, steps
    settings.append(task_settings(domain))
  gin.clear_config()
  for name in ("domain", "name", *sorted(set().union(*settings) - {"domain", "name"})):
    reason = _differing(labels, [s.get(name, "(not set)") for s in settings],
                        "the domain class" if name == "domain" else f"the setting {name!r}")
    if reason:
      return reason, num_tasks, steps
  if not steps:
    return "the runs' results.json have no step count in common", num_tasks, steps
  if not given:
    reason = _differing(labels, counts, "num_eval_tasks")
    if reason:
      return reason + "; pass --num_tasks to pair them on that many tasks", num_tasks, steps
  return None, num_tasks, steps


def _fingerprinted(episodes, digest):
  """The batches of ``episodes`` (one batch or an iterable), each hashed into ``digest``."""
  for batch in ([episodes] if is_task_batch(episodes) else episodes):
    for field in batch:
      array = np.ascontiguousarray(np.asarray(field))
      digest.update(f"{array.dtype}{array.shape}".encode())
      digest.update(array.tobytes())
    yield batch


def paired_differences(run_dirs: Sequence[str], num_tasks: Optional[int] = None,
                       chunk_size: int = 100, gin_files: Sequence[str] = ()) -> Dict[str, Any]:
  """Every later run against the first on the same evaluation tasks: {"shared_tasks": bool,
  "note": why not (or None), "num_tasks", "steps", "reference": the first run's label,
  "differences": {distribution: {"B - A": {"<metric>_after_<k>_steps": {mean, ci95, n,
  num_non_finite, unpaired_ci95, mean_a, mean_b}}}}}. ``gin_files``: the domain of runs made
  in Python."""
  labels = run_labels(run_dirs)
  reason, num_tasks, steps = check_shared_tasks(run_dirs, num_tasks, gin_files)
  report = {"shared_tasks": reason is None, "note": reason, "num_tasks": num_tasks,
            "steps": steps, "reference": labels[0], "differences": {}}
  if reason is not None:
    return report
  values, digests = [], []  # Per run, distribution -> [tasks, len(steps)], and -> its SHA-256.
  for run_dir in run_dirs:
    domain, learner = restore.restore_learner(run_dir, gin_files=gin_files)
    metric = domain.metric_name
    run_values, run_digests = {}, {}
    for distribution in domain.eval_distributions:
      digest = hashlib.sha256()
      episodes = _fingerprinted(domain.eval_batches(distribution, num_tasks), digest)
      per_task = per_task_metrics(learner, episodes, domain.task_metric, max(steps),
                                  chunk_size=chunk_size, vectorized=domain.eval_vectorized)
      run_values[distribution], run_digests[distribution] = per_task[:, steps], digest.hexdigest()
    values.append(run_values)
    digests.append(run_digests)
  for distribution in values[0]:
    if any(d.get(distribution) != digests[0][distribution] for d in digests[1:]):
      report.update(shared_tasks=False, note=(
          f"the runs' {distribution!r} tasks differ although their settings agree (their "
          "data differ, e.g. another dataset under the same name)"), differences={})
      return report
  for distribution, reference in values[0].items():
    pairs = report["differences"][distribution] = {}
    for label, run_values in zip(labels[1:], values[1:]):
      other = run_values[distribution]
      figures = pairs[f"{label} - {labels[0]}"] = {}
      for j, k in enumerate(steps):
        a, b = mean_and_ci95(reference[:, j]), mean_and_ci95(other[:, j])
        figures[f"{metric}_after_{k}_steps"] = {
            **mean_and_ci95(other[:, j] - reference[:, j]),
            "unpaired_ci95": math.sqrt(a["ci95"] ** 2 + b["ci95"] ** 2),
            "mean_a": a["mean"], "mean_b": b["mean"]}
  return report


def paired_table(report: Dict[str, Any]) -> str:
  """The text of :func:`paired_differences` (one line per figure, or why there is none)."""
  if not report["shared_tasks"]:
    return f"No paired differences: {report['note']}."
  lines = [f"Paired differences on the same {report['num_tasks']} tasks (later run - "
           f"{report['reference']}; mean and 95% CI of the per-task differences):"]
  for distribution, pairs in report["differences"].items():
    for pair, figures in pairs.items():
      for name, v in figures.items():
        lines.append(f"  {distribution} {pair} {name}: {v['mean']:+.4f} +- {v['ci95']:.4f} "
                     f"(unpaired +- {v['unpaired_ci95']:.4f}; n={v['n']})")
  return "\n".join(lines)


def main(argv):
  del argv
  run_dirs = FLAGS.run_dir
  if len(run_dirs) < 1:
    raise app.UsageError("Pass at least one --run_dir.")
  try:
    compare(run_dirs)
  except ValueError as error:  # A mistake of the user's: the message names the fix.
    sys.exit(f"compare: {error}")


def compare(run_dirs: Sequence[str]) -> None:
  """What the command prints and writes (flags read from FLAGS)."""
  print(results_table(run_dirs))
  output = {"runs": {label: RunFolder(run_dir).read_results()
                     for label, run_dir in zip(run_labels(run_dirs), run_dirs)}}
  if FLAGS.paired and len(run_dirs) > 1:
    without_config = [d for d in run_dirs if not os.path.exists(RunFolder(d).config)]
    if without_config and not FLAGS.gin_file:
      has = "has" if len(without_config) == 1 else "have"
      print(f"No paired differences: {', '.join(without_config)} {has} no {CONFIG_NAME} (made "
            "in Python), from which the paired comparison rebuilds the evaluation tasks; "
            "pass --gin_file=<a gin file that builds its domain> (docs/your_own_task.md).")
    else:
      report = paired_differences(run_dirs, FLAGS.num_tasks, FLAGS.chunk_size, FLAGS.gin_file)
      print(paired_table(report))
      output["paired"] = report
  if FLAGS.figure:
    print("Wrote", compare_figure(run_dirs, FLAGS.figure, FLAGS.num_steps, FLAGS.gin_file))
  if FLAGS.output:
    print("Wrote", atomic.write_json(FLAGS.output, output))


if __name__ == "__main__":
  define_flags()
  console.define_flag()
  app.run(main)
