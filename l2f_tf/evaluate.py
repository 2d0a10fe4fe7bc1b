"""Evaluates an exported SavedModel on fresh tasks or episodes of a dataset split.

  python -m l2f_tf.evaluate --saved_model=runs/l2f_5shot/saved_model --num_tasks=600
  python -m l2f_tf.evaluate --saved_model=runs/mini_l2f_5shot/saved_model --distribution=test \
      --gin_bindings="FewShotClassification.root = '/data/miniImageNet'"

The task distribution (or dataset) is rebuilt from the training config stored inside the
SavedModel (assets.extra/operative_config.gin), with ``--gin_bindings`` on top (e.g. the dataset
root on this machine). ``--seed`` picks the tasks (the training run's own evaluation used the
domain's ``eval_seed``; pass that value to reproduce it). Prints and optionally writes JSON: the
metric after the SavedModel's number of inner steps, mean with 95% CI over tasks.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os

import gin
import numpy as np
from absl import app, flags, logging

from l2f_tf import config, export
from l2f_tf.data import episodic
from l2f_tf.domains.base import SupervisedDomain
from l2f_tf.meta.evaluation import batches
from l2f_tf.stats import mean_and_ci95

SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A run's saved_model/ directory.")
NUM_TASKS = flags.DEFINE_integer("num_tasks", 600, "Number of fresh tasks.")
SEED = flags.DEFINE_integer("seed", 1, "Seed of the fresh tasks.")
DISTRIBUTIONS = flags.DEFINE_multi_string("distribution", [], "Task distributions (sinusoid) or "
                                          "dataset splits (images) to evaluate (default: all "
                                          "of the domain's test distributions).")
GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Bindings applied on top of the "
                                         "SavedModel's config, e.g. the dataset root.")
OUTPUT = flags.DEFINE_string("output", None, "Optional JSON output path.")
BATCH = flags.DEFINE_integer("batch_size", 100, "Tasks per SavedModel call.")


def evaluate_saved_model(path: str, num_tasks: int, seed: int, distributions=(),
                         batch_size: int = 100, gin_bindings=()):
  """{distribution: {metric_after_N_steps: {mean, ci95, n}}} of the SavedModel on fresh tasks."""
  loaded = export.load(path)
  if not os.path.exists(loaded.config_path):
    raise ValueError(f"{loaded.config_path} is missing: this SavedModel was not exported by "
                     "run_experiment.py, so its task distribution is unknown.")
  gin.clear_config()
  config.parse([loaded.config_path], list(gin_bindings))
  domain = config.configured_domain()
  if not isinstance(domain, SupervisedDomain):
    raise ValueError(f"{path} was trained on {type(domain).__name__}, not on a supervised "
                     "domain; its act/adapt_and_act signatures are documented in the README "
                     "(Meta-reinforcement learning).")
  domain.eval_seed = seed
  known = list(domain.eval_distributions)
  if domain.validation_split:
    known.append(domain.validation_split)
  results = {}
  for distribution in distributions or list(domain.eval_distributions):
    if distribution not in known:
      raise ValueError(f"Unknown --distribution {distribution!r}; choose from {sorted(known)}.")
    values = []
    with episodic.raise_data_errors():
      for batch in batches(domain.eval_batches(distribution, num_tasks, raw_pixels=True),
                           batch_size):
        predictions = loaded.predict_batch(*(np.asarray(field) for field in batch[:3]))
        values.extend(float(domain.task_metric(y, p))
                      for y, p in zip(np.asarray(batch.query_y), predictions))
    name = f"{domain.metric_name}_after_{loaded.num_steps}_steps"
    results[distribution] = {name: mean_and_ci95(np.array(values))}
  return results


def main(argv):
  del argv
  if not SAVED_MODEL.value:
    raise app.UsageError("--saved_model is required (a run's saved_model/ directory).")
  results = evaluate_saved_model(SAVED_MODEL.value, NUM_TASKS.value, SEED.value,
                                 DISTRIBUTIONS.value, BATCH.value, GIN_BINDINGS.value)
  text = json.dumps(results, indent=2)
  print(text)
  if OUTPUT.value:
    with open(OUTPUT.value, "w") as f:
      f.write(text)
    logging.info("Wrote %s", OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
