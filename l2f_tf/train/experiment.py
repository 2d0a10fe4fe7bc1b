"""One experiment end to end: train (or resume), evaluate, write results, export, plot."""

import os
from typing import Optional, Sequence

import gin
from absl import logging

from l2f_tf import export as export_lib
from l2f_tf.meta.attenuation import TaskConditionedAttenuation, TaskIndependentAttenuation
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints, evaluation, validation
from l2f_tf.train.trainer import Trainer, build_learner


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


def restore_learner(root_dir: str):
  """(domain, learner) of a finished or running experiment.

  The weights are those the run exports: its best validated checkpoint when it validates
  (few-shot classification), else its latest checkpoint. Parses the run's
  operative_config.gin (replacing the current gin config).
  """
  from l2f_tf import config  # Local import: config imports this module.
  gin.clear_config()
  folder = RunFolder(root_dir)
  config.parse([folder.config], [])
  domain = config.configured_domain()
  learner = build_learner(domain)
  Trainer(learner=learner, domain=domain, root_dir=root_dir)  # restores the latest checkpoint
  if os.path.isdir(folder.best):
    entries = validation.BestCheckpoints(folder.best).entries()
    if entries:
      _restore(learner, entries[0]["path"])
  return domain, learner


def _restore(learner, path: str) -> None:
  """Loads the weights of a best-validated checkpoint into ``learner``."""
  checkpoints.make_weights_checkpoint(learner).read(path).assert_existing_objects_matched()


def evaluate_best(trainer, domain, distribution: str, num_tasks: int, steps: Sequence[int]):
  """Few-shot protocol: the best validated checkpoint alone, and the top-k ensembled.

  Restores each kept checkpoint (worst first, so the best stays loaded), collects its test
  predictions after 0..max(steps) steps, and averages the logits over checkpoints.

  Returns:
    (figures of the best checkpoint, figures of the ensemble, the entries used).
  """
  entries = trainer.best.entries()
  total, single, labels = None, None, None
  for entry in reversed(entries):
    _restore(trainer.learner, entry["path"])
    outputs, labels = evaluation.predictions(
        trainer.learner, domain.eval_batches(distribution, num_tasks), max(steps),
        vectorized=getattr(domain, "eval_vectorized", True), num_tasks=num_tasks,
        label=f"{distribution} episode (checkpoint {entry['step']})")
    total = outputs if total is None else total + outputs
    single = outputs
  figures = {}
  for key, outputs in (("best", single), ("ensemble", total / len(entries))):
    values = evaluation.metric_values(outputs, labels, domain.task_metric)
    figures[key] = evaluation.summarize(values, steps, domain.metric_name)
    if domain.metric_name == "accuracy":
      for k in sorted(set([0, *steps])):
        figures[key][f"accuracy_after_{k}_steps"]["sqrt_p_1_minus_p"] = \
            evaluation.prediction_std(outputs[:, k], labels)
  return figures["best"], figures["ensemble"], entries


@gin.configurable
def run_experiment(root_dir: str, domain=gin.REQUIRED, eval_steps: Optional[Sequence[int]] = None,
                   num_eval_tasks: int = 600, num_val_episodes: int = 600, export_steps=None,
                   plot: bool = True):
  """Trains (resuming from root_dir if possible), then evaluates, exports and plots.

  Domains with a validation split (few-shot classification) follow the reference protocol:
  validation on ``num_val_episodes`` fixed episodes every ``Trainer.validate_every`` steps,
  then the test figures of the best validated checkpoint and of the top ``Trainer.keep_best``
  ensembled (averaged logits); the best checkpoint is exported. Other domains (sinusoid) are
  evaluated and exported at the final step.

  Args:
    root_dir: the run directory (its layout: README, "What a run writes").
    domain: the problem, e.g. ``@SinusoidRegression()``.
    eval_steps: inner-step counts at which the metric is reported (default 1..training steps).
    num_eval_tasks: evaluation tasks per distribution (the same tasks for every model).
    num_val_episodes: validation episodes (domains with a validation split).
    export_steps: inner steps baked into the SavedModel (default: the training setting).
    plot: save a figure of a few test tasks.

  Returns:
    The results dictionary written to results.json.
  """
  if getattr(domain, "is_rl", False):
    from l2f_tf.rl import experiment as rl_experiment  # Local: RL pulls in tf-agents/MuJoCo.
    return rl_experiment.run_meta_rl(root_dir, domain)
  folder = RunFolder(root_dir)
  learner = build_learner(domain)
  eval_steps = list(eval_steps or range(1, max(learner.num_inner_steps, 1) + 1))
  validator = None
  if getattr(domain, "validation_split", None):
    validator = validation.Validator(learner, domain, num_val_episodes, domain.validation_split,
                                     summary_dir=folder.eval_summaries)
  trainer = Trainer(learner=learner, domain=domain, root_dir=root_dir, validator=validator)
  step = trainer.train()
  results = {
      "method": learner_label(learner),
      "domain": domain.name,
      "meta_iterations": step,
      "metric": domain.metric_name,
      "error_bars": "ci95 = 1.96 * sample std / sqrt(n) over evaluation tasks",
  }
  evaluations = {}
  for distribution in domain.eval_distributions:
    logging.info("Evaluating on %d %s tasks...", num_eval_tasks, distribution)
    if validator is not None:
      best, ensemble, entries = evaluate_best(trainer, domain, distribution, num_eval_tasks,
                                              eval_steps)
      evaluations[distribution] = best
      evaluations[f"{distribution}_ensemble"] = ensemble
      results["validation"] = {
          "split": domain.validation_split, "episodes": num_val_episodes,
          "history": {str(k): v for k, v in sorted(trainer.best.history().items())},
          "ensembled_checkpoints": [{"step": e["step"], "score": e["score"]} for e in entries],
          "note": (f"'{distribution}' uses the best validated checkpoint (step "
                   f"{entries[0]['step']}, which is exported); '{distribution}_ensemble' "
                   f"averages the logits of the {len(entries)} best. sqrt_p_1_minus_p is the "
                   "reference code's +- figure."),
      }
    else:
      evaluations[distribution] = evaluation.evaluate(learner, domain, distribution,
                                                      num_eval_tasks, eval_steps)
  results["evaluations"] = evaluations
  folder.write_results(results)
  evaluation.write_eval_summaries(folder.eval_summaries, step, evaluations)
  export_lib.export(learner, folder.saved_model, domain.export_signature(),
                    export_steps, config_path=folder.config,
                    preprocess=getattr(domain, "export_preprocess", None),
                    description=domain.export_description())
  if plot and hasattr(domain, "plot"):
    domain.plot({results["method"]: learner}, folder.figure("test_tasks.png"),
                num_steps=max(eval_steps))
  for distribution, figures in evaluations.items():
    for name, value in figures.items():
      logging.info("%s %s: %.4f +- %.4f (n=%d)", distribution, name, value["mean"],
                   value["ci95"], value["n"])
  return results
