"""The paper's analysis figures for one or more finished runs (MAML and MAML+L2F overlaid).

  python -m l2f_tf.analyze --run_dir=runs/glyphs_maml_5shot --run_dir=runs/glyphs_l2f_5shot \
      --out_dir=runs/analysis_glyphs_5shot

writes the figures the runs' summaries and checkpoints allow, and analysis.json (every number
plotted, with 95% CIs over tasks), to ``--out_dir`` (docs/analysis.md lists them). Supervised
runs are restored (`l2f_tf.restore_learner`, ``--step=N``: any kept checkpoint) and measured on
the domain's fixed evaluation tasks (paired across runs); meta-RL runs give summaries only. A
run made in Python has no operative_config.gin: ``--gin_file`` names a gin file that builds its
domain (its learner is read from its settings.json; `l2f_tf.train.restore.run_config`).
"""

from l2f_tf import console  # (l2f_tf is imported first: it sets TF_USE_LEGACY_KERAS)

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import os
import re
import sys
from typing import Dict, Optional, Sequence

import gin
import numpy as np
from absl import app, flags, logging

from l2f_tf import atomic, config, smoke
from l2f_tf.analysis import figures, measures, summaries
from l2f_tf.data import episodic
from l2f_tf.domains.base import SupervisedDomain
from l2f_tf.meta import diagnostics, predictions
from l2f_tf.run_folder import RunFolder
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import restore

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined only when run, so that importing this module defines no flag)."""
  flags.DEFINE_multi_string("run_dir", [], "A run folder (repeat to overlay runs).")
  flags.DEFINE_string("out_dir", None, "Where the figures and analysis.json go.")
  flags.DEFINE_integer("num_tasks", 100, "Fixed test tasks of the checkpoint measures "
                       "(per-task conflict, gamma, landscape, the sweep).")
  flags.DEFINE_string("distribution", "test", "Task distribution or split.")
  flags.DEFINE_bool("first_order", False, "First-order per-task meta-gradients for the "
                    "per-task conflict (less memory on large images).")
  flags.DEFINE_list("sweep_gammas", [str(g) for g in measures.DEFAULT_SWEEP_GAMMAS],
                    "The manual gammas of the attenuation sweep.")
  flags.DEFINE_integer("sweep_steps", None, "Inner steps of the sweep's adaptation (default: "
                       "the run's training steps).")
  flags.DEFINE_integer("step", None, "Restore every supervised run's checkpoint of this "
                       "meta-iteration (default: the weights the run exports).")
  flags.DEFINE_multi_string("gin_bindings", [], "Bindings on top of every run's config, e.g. a "
                            "dataset root on this machine.")
  flags.DEFINE_multi_string("gin_file", [], "Gin file(s) that build the domain of the runs made "
                            "in Python (which have no operative_config.gin; their learner is "
                            "read from settings.json); not used for other runs.")


def describe(run_dir: str, gin_files: Sequence[str] = ()) -> Dict[str, str]:
  """{"kind": "supervised" | "meta_rl", "method": "MAML" | "MAML+L2F" | ..., "label"} from the
  run's operative config, or for a run made in Python from ``gin_files`` and its settings.json
  (no model is built)."""
  files, bindings = restore.run_config(run_dir, gin_files)
  gin.clear_config()
  config.parse(files, bindings)
  try:
    trainer = gin.query_parameter("run_experiment.trainer")
  except ValueError:  # Not bound: run_experiment's default, the supervised Trainer.
    trainer = None
  kind = "meta_rl" if "MetaRLTrainer" in str(trainer) else "supervised"
  try:
    attenuation = str(gin.query_parameter("MetaLearner.attenuation"))
  except ValueError:
    attenuation = "None"
  gin.clear_config()
  method = ("MAML" if attenuation == "None" else "MAML+L2F" if "task_conditioned" in attenuation
            else f"MAML+{re.sub(r'[@()]', '', attenuation)}")
  name = os.path.basename(os.path.normpath(run_dir))
  return {"kind": kind, "method": method, "label": f"{method} ({name})"}


def _stats_per_tensor(values: np.ndarray, names: Sequence[str]) -> Dict:
  """{name: mean and 95% CI over tasks} of the columns of values [num_tasks, len(names)]."""
  return {name: mean_and_ci95(values[:, j]) for j, name in enumerate(names)}


def checkpoint_measures(run_dir: str, num_tasks: int, distribution: str, first_order: bool,
                        sweep_gammas: Sequence[float], sweep_steps: Optional[int],
                        gin_bindings: Sequence[str] = (), step: Optional[int] = None,
                        gin_files: Sequence[str] = ()) -> Dict:
  """Per-task conflict, landscape, gamma (L2F) or the attenuation sweep (MAML) of a supervised
  run's restored learner; the arrays under "_". ``gin_files``: the domain of a run made in
  Python."""
  domain, learner = restore.restore_learner(run_dir, gin_bindings, step, gin_files)
  if not isinstance(domain, SupervisedDomain):
    raise ValueError(f"{run_dir} is not a supervised run.")
  if num_tasks < domain.meta_batch_size:
    raise ValueError(f"--num_tasks={num_tasks} is fewer than one meta-batch of {run_dir} "
                     f"({domain.meta_batch_size} tasks), which the per-task conflict needs.")
  names = learner.inner_variable_names
  result = {"tensors": names, "distribution": distribution, "num_tasks": num_tasks,
            "checkpoint_step": "exported weights" if step is None else step, "_": {}}
  episodes = domain.eval_batches(distribution, num_tasks)
  if not predictions.is_task_batch(episodes):
    with episodic.raise_data_errors():
      episodes = list(episodes)  # Read the image episodes once for every measure.
  logging.info("%s: per-task conflict on %d %s tasks...", run_dir, num_tasks, distribution)
  conflicts = measures.per_task_conflicts(learner, episodes, domain.meta_batch_size, first_order)
  result["per_task_conflict"] = _stats_per_tensor(conflicts, names)
  result["per_task_conflict"]["meta_batch_size"] = domain.meta_batch_size
  result["_"]["conflict"] = conflicts
  logging.info("%s: landscape at the checkpoint...", run_dir)
  landscape = measures.landscapes(learner, episodes)
  landscape_names = diagnostics.LANDSCAPE_MEASURES
  result["landscape_at_checkpoint"] = _stats_per_tensor(landscape, landscape_names)
  if learner.attenuation is not None:
    # The same weights without the attenuation: what gamma alone does to the landscape.
    unattenuated = measures.landscapes(learner, episodes, attenuate=False)
    result["landscape_at_checkpoint_without_attenuation"] = _stats_per_tensor(unattenuated,
                                                                              landscape_names)
    result["landscape_attenuated_minus_unattenuated"] = _stats_per_tensor(
        landscape - unattenuated, landscape_names)
    gammas = measures.gammas(learner, episodes)
    result["gamma"] = _stats_per_tensor(gammas, names)
    result["_"]["gamma"] = gammas
  else:
    steps = learner.num_inner_steps if sweep_steps is None else sweep_steps
    logging.info("%s: attenuation sweep (%d layers x %d gammas, %d steps)...", run_dir,
                 len(measures.layer_groups(names)), len(sweep_gammas), steps)
    sweep = measures.attenuation_sweep(learner, episodes, domain.task_metric, steps,
                                       sweep_gammas, vectorized=domain.eval_vectorized)
    result["attenuation_sweep"] = {
        "metric": f"{domain.metric_name}_after_{steps}_steps", "layers": sweep["layers"],
        "gammas": sweep["gammas"], "unscaled": mean_and_ci95(sweep["reference"]),
        "mean": sweep["mean"].tolist(), "paired_difference": sweep["paired_difference"]}
    result["_"]["sweep"] = sweep
  result["metric_name"] = domain.metric_name
  return result


def analyze(run_dirs: Sequence[str], out_dir: str, num_tasks: int = 100,
            distribution: str = "test", first_order: bool = False,
            sweep_gammas: Sequence[float] = measures.DEFAULT_SWEEP_GAMMAS,
            sweep_steps: Optional[int] = None, gin_bindings: Sequence[str] = (),
            step: Optional[int] = None, gin_files: Sequence[str] = ()) -> Dict:
  """Writes the figures and analysis.json of the runs to ``out_dir``; returns
  {"figures": [paths], "runs": {label: numbers}}. ``gin_files``: the domain of runs made in
  Python."""
  if not run_dirs:
    raise ValueError("Give at least one --run_dir.")
  os.makedirs(out_dir, exist_ok=True)
  runs, written = {}, []
  over_training = {"landscape": {}, "conflict": {}, "gamma": {}}  # {label: series} of each
  conflict_per_task, gamma_per_task, names_of = {}, {}, {}
  for run_dir in run_dirs:
    info = describe(run_dir, gin_files)
    label = info["label"]
    try:
      series = summaries.read_scalars(RunFolder(run_dir).train_summaries)
    except ValueError as error:
      logging.warning("%s", error)
      series = {}
    entry = dict(info, run_dir=run_dir)
    for name, prefix in (("landscape", "landscape"), ("conflict", "degree_of_conflict"),
                         ("gamma", "gamma")):
      found = summaries.per_tensor(series, prefix)
      if found and (name != "gamma" or info["kind"] == "meta_rl"):  # (supervised: measured)
        over_training[name][label] = found
        entry[f"{name}_over_training"] = {k: {"steps": steps.tolist(), "values": values.tolist()}
                                          for k, (steps, values) in found.items()}
    if info["kind"] == "supervised":
      measured = checkpoint_measures(run_dir, num_tasks, distribution, first_order,
                                     sweep_gammas, sweep_steps, gin_bindings, step, gin_files)
      arrays = measured.pop("_")
      entry.update(measured)
      names_of[label] = measured["tensors"]
      conflict_per_task[label] = arrays["conflict"]
      if "gamma" in arrays:
        gamma_per_task[label] = arrays["gamma"]
      if "sweep" in arrays:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(run_dir)))
        written.append(figures.plot_attenuation_sweep(
            os.path.join(out_dir, f"manual_attenuation_{name}.png"), arrays["sweep"],
            measured["metric_name"], f"{label}: one layer's initialisation scaled by gamma "
            f"({num_tasks} {distribution} tasks)"))
    runs[label] = entry
  skipped = []
  if over_training["landscape"]:
    written.append(figures.plot_landscape(os.path.join(out_dir, "landscape.png"),
                                          over_training["landscape"]))
  else:
    skipped.append("landscape.png: no run logged the landscape during training (it needs "
                   "Trainer.landscape = True; the gin setup files turn it on)")
  if over_training["conflict"]:
    written.append(figures.plot_per_layer_over_training(
        os.path.join(out_dir, "conflict_over_training.png"), over_training["conflict"],
        "degree of conflict (degrees)", "degree of conflict per layer over meta-training"))
  else:
    skipped.append("conflict_over_training.png: no run logged the degree of conflict during "
                   "training (Trainer.summary_every, MetaRLTrainer.conflict_every)")
  if over_training["gamma"]:
    written.append(figures.plot_per_layer_over_training(
        os.path.join(out_dir, "gamma_over_training.png"), over_training["gamma"], "gamma",
        "gamma per layer over meta-training (mean over the meta-batch)"))
  if conflict_per_task:
    names = next(iter(names_of.values()))
    written.append(figures.plot_distributions_per_tensor(
        os.path.join(out_dir, "conflict_per_task.png"), conflict_per_task, names,
        "angle to the meta-batch's meta-gradient (degrees)",
        f"per-task conflict on {num_tasks} {distribution} tasks"))
  if gamma_per_task:
    names = names_of[next(iter(gamma_per_task))]
    written.append(figures.plot_distributions_per_tensor(
        os.path.join(out_dir, "gamma_per_layer.png"), gamma_per_task, names, "gamma",
        f"gamma per layer over {num_tasks} {distribution} tasks"))
  for reason in skipped:
    logging.warning("Not drawn: %s.", reason)
  result = {"figures": [os.path.basename(p) for p in written], "runs": runs,
            "not_drawn": skipped}
  atomic.write_json(os.path.join(out_dir, "analysis.json"), result, indent=1)
  result["figures"] = written
  return result


def main(argv):
  del argv
  if not FLAGS.run_dir or not FLAGS.out_dir:
    raise app.UsageError("Give --run_dir (one or more) and --out_dir.")
  try:
    gammas = [float(g) for g in FLAGS.sweep_gammas]
  except ValueError as error:
    raise app.UsageError(f"--sweep_gammas must be numbers: {error}") from None
  try:
    result = analyze(FLAGS.run_dir, FLAGS.out_dir, smoke.tasks(FLAGS.num_tasks),
                     FLAGS.distribution, FLAGS.first_order, gammas, FLAGS.sweep_steps,
                     FLAGS.gin_bindings, FLAGS.step, FLAGS.gin_file)
  except ValueError as error:  # A mistake of the user's: the message names the fix.
    sys.exit(f"analyze: {error}")
  for path in result["figures"]:
    print(path)
  print(os.path.join(FLAGS.out_dir, "analysis.json"))


if __name__ == "__main__":
  define_flags()
  console.define_flag()
  app.run(main)
