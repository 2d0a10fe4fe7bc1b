"""Compares finished runs: their results side by side and a figure on the same test tasks.

  python -m l2f_tf.compare --run_dir=runs/maml_5shot --run_dir=runs/l2f_5shot \\
      --figure=runs/maml_vs_l2f_5shot.png

Every run is restored from its own operative_config.gin and latest checkpoint; the figure uses
the first run's domain (so its evaluation tasks) and draws every learner on each panel.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from l2f_tf import console

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import os
from typing import Dict, List

from absl import app, flags

from l2f_tf import config, plots
from l2f_tf.run_folder import RunFolder

RUN_DIRS = flags.DEFINE_multi_string("run_dir", [], "Run directories to compare; repeatable.")
FIGURE = flags.DEFINE_string("figure", None, "PNG path for the figure (optional).")
STEPS = flags.DEFINE_integer("num_steps", 5, "Inner steps for the 'after adaptation' curves.")


def results_table(run_dirs: List[str]) -> str:
  """A text table of every run's results.json (test distributions x metrics)."""
  lines = []
  for run_dir in run_dirs:
    results = _load_results(run_dir)
    for distribution, figures in results["evaluations"].items():
      cells = ", ".join(f"{name}={v['mean']:.4f}+-{v['ci95']:.4f}" for name, v in figures.items())
      objective = results.get("inner_objective")  # meta-RL runs
      method = results["method"] + (f" ({objective})" if objective else "")
      lines.append(f"{method:>10} [{os.path.basename(run_dir.rstrip('/'))}] "
                   f"{distribution}: {cells}")
  return "\n".join(lines)


def _load_results(run_dir: str) -> Dict:
  return RunFolder(run_dir).read_results()


def compare_figure(run_dirs: List[str], output: str, num_steps: int = 5) -> str:
  """A figure of every run on the same test tasks (meta-RL: from the runs' results.json)."""
  results = [_load_results(run_dir) for run_dir in run_dirs]
  if results[0]["metric"] == "return":
    return returns_figure(results, output)
  learners: Dict[str, object] = {}
  evaluations: Dict[str, Dict] = {}
  domain = None
  for run_dir, run_results in zip(run_dirs, results):
    run_domain, learner = config.restore_learner(run_dir)
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


def main(argv):
  del argv
  if len(RUN_DIRS.value) < 1:
    raise app.UsageError("Pass at least one --run_dir.")
  print(results_table(RUN_DIRS.value))
  if FIGURE.value:
    print("Wrote", compare_figure(RUN_DIRS.value, FIGURE.value, STEPS.value))


if __name__ == "__main__":
  console.define_flag()
  app.run(main)
