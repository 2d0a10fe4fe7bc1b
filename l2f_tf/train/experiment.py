"""One experiment end to end: train (or resume), evaluate, write results, export, plot."""

import json
import os
from typing import Sequence

import gin
import tensorflow as tf
from absl import logging

from l2f_tf import export as export_lib
from l2f_tf.meta.attenuation import TaskConditionedAttenuation, TaskIndependentAttenuation
from l2f_tf.train import evaluation
from l2f_tf.train.trainer import Trainer, build_learner

CONFIG_NAME = "operative_config.gin"


def learner_label(learner) -> str:
  """A short name of the method, as in the paper's tables."""
  attenuation = learner.attenuation
  if attenuation is None:
    return "MAML"
  if isinstance(attenuation, TaskConditionedAttenuation):
    return "MAML+L2F" if attenuation.transform == "sigmoid" else \
        f"MAML+task-conditioned({attenuation.transform})"
  if isinstance(attenuation, TaskIndependentAttenuation):
    return f"MAML+task-independent({attenuation.scope})"
  return f"MAML+{type(attenuation).__name__}"


def write_eval_summaries(root_dir: str, step: int, results) -> None:
  writer = tf.summary.create_file_writer(os.path.join(root_dir, "eval"))
  with writer.as_default():
    for distribution, figures in results.items():
      for name, value in figures.items():
        tf.summary.scalar(f"{distribution}/{name}", value["mean"], step=step)
  writer.flush()


def restore_learner(root_dir: str):
  """(domain, learner) of a finished or running experiment, at its latest checkpoint.

  Parses the run's operative_config.gin (replacing the current gin config).
  """
  from l2f_tf import config  # Local import: config imports this module.
  gin.clear_config()
  config.parse([os.path.join(root_dir, CONFIG_NAME)], [])
  domain = config.configured_domain()
  learner = build_learner(domain)
  Trainer(learner=learner, domain=domain, root_dir=root_dir)  # restores the checkpoint
  return domain, learner


@gin.configurable
def run_experiment(root_dir: str, domain=gin.REQUIRED, eval_steps: Sequence[int] = (1, 2, 5),
                   num_eval_tasks: int = 600, export_steps=None, plot: bool = True):
  """Trains (resuming from root_dir if possible), then evaluates, exports and plots.

  Args:
    root_dir: the run directory (see DESIGN.md "Run layout").
    domain: the problem, e.g. ``@SinusoidRegression()``.
    eval_steps: inner-step counts at which the metric is reported.
    num_eval_tasks: evaluation tasks per distribution (the same tasks for every model).
    export_steps: inner steps baked into the SavedModel (default: the training setting).
    plot: save a figure of a few test tasks.

  Returns:
    The results dictionary written to results.json.
  """
  learner = build_learner(domain)
  step = Trainer(learner=learner, domain=domain, root_dir=root_dir).train()
  evaluations = {}
  for distribution in domain.eval_distributions:
    logging.info("Evaluating on %d %s tasks...", num_eval_tasks, distribution)
    evaluations[distribution] = evaluation.evaluate(learner, domain, distribution,
                                                    num_eval_tasks, eval_steps)
  results = {
      "method": learner_label(learner),
      "domain": domain.name,
      "meta_iterations": step,
      "metric": domain.metric_name,
      "error_bars": "ci95 = 1.96 * sample std / sqrt(n) over evaluation tasks",
      "evaluations": evaluations,
  }
  with open(os.path.join(root_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  write_eval_summaries(root_dir, step, evaluations)
  export_lib.export(learner, os.path.join(root_dir, "saved_model"), domain.export_signature(),
                    export_steps, config_path=os.path.join(root_dir, CONFIG_NAME))
  if plot and hasattr(domain, "plot"):
    domain.plot({results["method"]: learner}, os.path.join(root_dir, "test_tasks.png"),
                num_steps=max(eval_steps))
  for distribution, figures in evaluations.items():
    for name, value in figures.items():
      logging.info("%s %s: %.4f +- %.4f (n=%d)", distribution, name, value["mean"],
                   value["ci95"], value["n"])
  return results
