"""Evaluates an exported SavedModel on fresh tasks or episodes of a dataset split.

  python -m l2f_tf.evaluate --saved_model=runs/l2f_5shot --num_tasks=600
  python -m l2f_tf.evaluate --saved_model=runs/mini_l2f_5shot/saved_model --distribution=test \
      --gin_bindings="FewShotClassification.root = '/data/miniImageNet'"
  python -m l2f_tf.evaluate --saved_model=runs/made_in_python --gin_file=my_task.gin
  python -m l2f_tf.evaluate --saved_model=runs/nav_l2f --num_tasks=40 --num_steps=3 \
      --gin_bindings="MetaLearner.later_steps_lr = 0.025"     # a meta-RL run

A meta-RL run is evaluated from its run folder (the environment and the sampler come from its
config) as training evaluates it: the average return on held-out tasks after 0..N adaptation
steps on fresh trajectories (N = ``--num_steps``, default the trained steps), the steps after
the trained ones at ``MetaLearner.later_steps_lr`` when it is bound, and for L2F theta's return
before attenuation (``return_after_0_steps_without_attenuation``).

The tasks come from the SavedModel's training config (``--gin_bindings`` on top, e.g. the
dataset root) and ``--seed``. A run made in Python keeps no gin config: ``--gin_file`` names a
gin file that builds its domain (``run_experiment.domain = ...``), checked against the run's
settings.json when the SavedModel is in its run folder. Prints (``--output``: writes as JSON)
the mean and 95% CI over tasks of the metric after 0..N inner steps, N the SavedModel's steps
or ``--num_steps`` (at most its export ``max_steps``). A user's mistake exits with status 1 and
one line ``evaluate: ...`` naming the fix.
"""

from l2f_tf import console  # (l2f_tf is imported first: it sets TF_USE_LEGACY_KERAS)

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import os
import sys
from typing import Dict, List, Optional

import numpy as np
from absl import app, flags, logging

from l2f_tf import atomic, export, smoke
from l2f_tf.data import episodic
from l2f_tf.meta.predictions import batches, metric_values
from l2f_tf.run_folder import CONFIG_NAME, RunFolder
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import restore, settings

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined only when run, so that importing this module defines no flag)."""
  flags.DEFINE_string("saved_model", None, "A run folder, or its saved_model/ directory.")
  flags.DEFINE_integer("num_tasks", 600, "Number of fresh tasks.")
  flags.DEFINE_integer("seed", 1, "Seed of the fresh tasks.")
  flags.DEFINE_multi_string("distribution", [], "Task distributions (sinusoid) or dataset "
                            "splits (images) to evaluate (default: all of the domain's test "
                            "distributions).")
  flags.DEFINE_multi_string("gin_bindings", [], "Bindings applied on top of the SavedModel's "
                            "config, e.g. the dataset root.")
  flags.DEFINE_multi_string("gin_file", [], "Gin file(s) that build the domain of a "
                            "SavedModel without a stored config (a run made in Python: "
                            "run_experiment.domain = ...; docs/your_own_task.md).")
  flags.DEFINE_string("output", None, "Optional JSON output path.")
  flags.DEFINE_integer("batch_size", 100, "Tasks per SavedModel call.")
  flags.DEFINE_integer("num_steps", None, "Report the metric after 0..num_steps inner steps "
                       "(default: the SavedModel's own number of steps; at most its max_steps).")


def evaluate_saved_model(path: str, num_tasks: int, seed: int, distributions=(),
                         batch_size: int = 100, gin_bindings=(), num_steps: Optional[int] = None,
                         gin_files=()) -> Dict[str, Dict[str, Dict]]:
  """{distribution: {metric_after_k_steps: {mean, ci95, n, num_non_finite}}} of the SavedModel
  (``path``: a run folder or its saved_model/) on fresh tasks, k = 0..num_steps (default: its
  inner steps). ``gin_files``: the domain of a SavedModel without a stored config (a run made
  in Python). ValueError naming the fix for a mistake of the user's."""
  loaded = export.load(path)
  if isinstance(loaded, export.LoadedPolicy):
    return evaluate_meta_rl_run(loaded, num_tasks, seed, gin_bindings, num_steps)
  _refuse_learner_bindings(loaded, gin_bindings)
  num_steps = loaded.check_num_steps(num_steps)
  domain = _domain(loaded, gin_files, gin_bindings)
  domain.eval_seed = seed
  known = list(domain.eval_distributions) + list(filter(None, [domain.validation_split]))
  results = {}
  for distribution in distributions or list(domain.eval_distributions):
    if distribution not in known:
      raise ValueError(f"Unknown --distribution {distribution!r}; choose from {sorted(known)}.")
    values = []  # [tasks, num_steps + 1] per batch
    with episodic.raise_data_errors():
      for batch in batches(domain.eval_batches(distribution, num_tasks, preprocessed=False),
                           batch_size):
        inputs = [np.asarray(field) for field in batch[:3]]
        outputs = loaded.predict_steps_batch(*inputs, num_steps=num_steps)
        values.append(metric_values(outputs, np.asarray(batch.query_y), domain.task_metric))
    values = np.concatenate(values)
    results[distribution] = {f"{domain.metric_name}_after_{k}_steps": mean_and_ci95(values[:, k])
                             for k in range(num_steps + 1)}
  return results


def _refuse_learner_bindings(loaded, gin_bindings) -> None:
  """A supervised SavedModel's adaptation is fixed when it is exported: a binding of the
  learner would be silently ignored, so it is an error naming what does apply."""
  for binding in gin_bindings:
    if binding.strip().startswith(("MetaLearner.", "InnerLearningRates.", "LEO.")):
      raise ValueError(f"--gin_bindings={binding!r}: {loaded.path} adapts as it was exported "
                       "(its inner loop is in the SavedModel), so learner bindings do not apply "
                       "here; bind them in the training run's config and export again.")


def evaluate_meta_rl_run(loaded, num_tasks: int, seed: int, gin_bindings=(),
                         num_steps: Optional[int] = None) -> Dict[str, Dict[str, Dict]]:
  """{"test": {return_after_k_steps: {mean, ci95, n, num_non_finite}, ...}} of the meta-RL run
  whose policy export is ``loaded``, on ``num_tasks`` held-out tasks of ``seed`` (see the
  module docstring); the run's config with ``gin_bindings`` on top."""
  from l2f_tf.train.meta_rl_trainer import MetaRLTrainer  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  run_dir = os.path.dirname(os.path.normpath(loaded.path))
  if not os.path.exists(RunFolder(run_dir).config):
    raise ValueError(f"{loaded.path} is a meta-RL policy outside a run folder: its environment "
                     "and sampler come from the run's config, so pass the run folder it was "
                     "exported to (or load the policy with l2f_tf.export.load: act, "
                     "adapt_and_act).")
  domain, learner = restore.restore_learner(run_dir, gin_bindings)
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  if num_steps < 0:
    raise ValueError(f"--num_steps must be >= 0, got {num_steps}.")
  domain.eval_seed = seed
  try:
    with tempfile.TemporaryDirectory(prefix="l2f_tf_evaluate_") as scratch:
      evaluations, _ = MetaRLTrainer(learner, domain, scratch).evaluate(
          num_tasks, steps=list(range(num_steps + 1)))
  finally:
    domain.sampler.close()  # its worker processes, if any
  return evaluations


def _domain(loaded, gin_files, gin_bindings):
  """The domain of the SavedModel's stored config, or of ``gin_files`` when it has none
  (checked against the settings.json of its run folder, if it is in one)."""
  if os.path.exists(loaded.config_path):
    return restore.parse_domain([loaded.config_path], gin_bindings)
  if not gin_files:
    raise ValueError(f"{loaded.path} holds no gin config (assets.extra/{CONFIG_NAME}): it was "
                     "exported by a run made in Python, so its task distribution is unknown. "
                     "Pass --gin_file=<a gin file that builds its domain> (run_experiment.domain "
                     "= ...; docs/your_own_task.md).")
  domain = restore.parse_domain(gin_files, gin_bindings)
  folder = RunFolder(os.path.dirname(os.path.normpath(loaded.path)))
  if os.path.normpath(folder.saved_model) == os.path.normpath(loaded.path):
    settings.check_rebuilt(folder, domain=domain)
  return domain


def result_lines(results: Dict[str, Dict[str, Dict]]) -> List[str]:
  """One line per distribution and step count: ``test mse_after_2_steps: 0.12 +- 0.01 (n=6)``."""
  return [f"{distribution} {name}: {value['mean']:.4f} +- {value['ci95']:.4f} (n={value['n']})"
          for distribution, figures in results.items() for name, value in figures.items()]


def main(argv):
  del argv
  if not FLAGS.saved_model:
    raise app.UsageError("--saved_model is required (a run folder or its saved_model/).")
  try:
    results = evaluate_saved_model(FLAGS.saved_model, smoke.tasks(FLAGS.num_tasks),
                                   FLAGS.seed, FLAGS.distribution, FLAGS.batch_size,
                                   FLAGS.gin_bindings, FLAGS.num_steps, FLAGS.gin_file)
  except ValueError as error:  # A mistake of the user's: the message names the fix.
    sys.exit(f"evaluate: {error}")
  print("\n".join(result_lines(results)))
  if FLAGS.output:
    logging.info("Wrote %s", atomic.write_json(FLAGS.output, results))


if __name__ == "__main__":
  define_flags()
  console.define_flag()
  app.run(main)
