"""One experiment end to end, as configured in gin: train (or resume), evaluate, write results,
export, plot.

``run_experiment.domain`` picks the problem and ``run_experiment.trainer`` the kind of training
(`l2f_tf.train.trainer.Trainer` for supervised domains, the default;
`l2f_tf.train.meta_rl_trainer.MetaRLTrainer` for meta-RL); the
:class:`~l2f_tf.train.runner.Runner` does the rest the same way for both.
"""

from typing import Dict, Optional, Sequence

import gin
from absl import logging

from l2f_tf import precision as precision_lib
from l2f_tf.data import episodic
from l2f_tf.domains.base import Domain, SupervisedDomain
from l2f_tf.export.supervised import check_max_steps
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints, distribution, interrupts
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer


@gin.configurable
def build_learner(domain: Domain, seed: int = 0, learner_cls=MetaLearner,
                  precision: Optional[str] = None) -> MetaLearner:
  """The domain's network wrapped in a (gin-configured) meta-learner, initialised from seed.

  The network and the attenuator are built under the Keras dtype policy ``precision`` (None:
  gin's ``precision.name``, float32 by default; see `l2f_tf.precision`), and the global policy
  is restored afterwards.
  """
  precision = precision_lib.configured() if precision is None else precision_lib.check(precision)
  if precision != "float32" and not isinstance(domain, SupervisedDomain):
    raise ValueError(f"Precision {precision!r} is implemented for supervised domains only; "
                     f"{type(domain).__name__} trains in float32.")
  metric_fn = domain.task_metric if domain.log_metric_per_step else None
  with precision_lib.policy_scope(precision):
    model = precision_lib.convert(domain.build_model(seed), precision)
    return learner_cls(model=model, loss_fn=domain.loss_fn, metric_fn=metric_fn)


@gin.configurable(denylist=["resume"])
def run_experiment(root_dir: str, domain: Domain = gin.REQUIRED, trainer=Trainer,
                   eval_steps: Optional[Sequence[int]] = None, num_eval_tasks: int = 600,
                   export_steps: Optional[int] = None, plot: bool = True,
                   strategy: str = "default", export_max_steps: Optional[int] = None,
                   resume: bool = False):
  """Trains (resuming from root_dir if possible), then evaluates, exports and plots.

  Args:
    root_dir: the run directory (its layout: README, "What a run writes").
    domain: the problem, e.g. ``@SinusoidRegression()``.
    trainer: the trainer class, called as ``trainer(learner=, domain=, root_dir=)``:
      ``@Trainer`` (supervised) or ``@MetaRLTrainer``.
    eval_steps: adaptation-step counts at which the metric is reported besides 0 (default
      1..the training number of inner steps).
    num_eval_tasks: held-out evaluation tasks per distribution (the same tasks for every model).
    export_steps: inner steps baked into the SavedModel (default: the training setting).
    plot: save the run's figure.
    strategy: the ``tf.distribute`` strategy that trains, by name (see
      `l2f_tf.train.distribution`; ``--strategy`` on the command line). In a multi-worker run
      only the chief evaluates and writes the run folder; the other workers train, then wait
      for the chief to finish.
    export_max_steps: the most inner steps the SavedModel's ``adapt_and_predict_steps``
      signatures can run (what ``python -m l2f_tf.evaluate --num_steps`` can ask for);
      default max(2 * export steps, 10). Supervised domains only.
    resume: continue a trained folder whose settings differ (``--resume``; see
      :class:`~l2f_tf.train.runner.Runner`).

  Returns:
    The results dictionary written to results.json (empty on a non-chief worker).
  """
  def build_runner():
    return _build_runner(root_dir, domain, trainer, export_steps, export_max_steps, resume,
                         strategy)

  def run(runner: Runner) -> Dict:
    return runner.run(eval_steps, num_eval_tasks, export_steps, plot, export_max_steps)

  if strategy != "multi_worker":
    runner = build_runner()[1]
    with episodic.raise_data_errors():
      return run(runner)
  distribution.hold_scratch_lock(root_dir, strategy)  # Before joining the cluster.
  try:
    return _run_worker(build_runner, run, root_dir)
  finally:
    distribution.remove_scratch(root_dir, strategy)


def _build_runner(root_dir: str, domain: Domain, trainer, export_steps: Optional[int],
                  export_max_steps: Optional[int], resume: bool, strategy: str):
  """(strategy, runner): the strategy (joining the cluster under ``multi_worker``), the
  learner and the trainer in its scope, and their Runner (restored from the last checkpoint,
  the chief's on every worker)."""
  distributed = distribution.make_strategy(strategy)
  chief = distribution.is_chief(distributed)
  domain.check_data()  # A bad dataset fails now, not at the first validation or the end.
  with distributed.scope():
    learner = build_learner(domain)
    if export_max_steps is not None:  # Checked now, not after training.
      check_max_steps(export_max_steps, learner.num_inner_steps
                      if export_steps is None else export_steps)
    trained = trainer(learner=learner, domain=domain,
                      root_dir=distribution.write_root(root_dir, distributed))
    runner = Runner(trained, restore_from=None if chief else RunFolder(root_dir).checkpoints,
                    resume=resume)
  if distribution.is_multi_worker(distributed):
    if runner.max_seconds is not None:
      raise ValueError("Runner.max_seconds cannot be used with strategy 'multi_worker': "
                       "workers would stop at different steps. Set Trainer.num_iterations "
                       "instead.")
    runner.interrupts = distribution.SharedInterrupts(  # naming the chief's checkpoints
        distributed, lambda: checkpoints.latest(RunFolder(root_dir).checkpoints))
  return distributed, runner


QUIT_MESSAGE = ("Ctrl-C: quitting now, keeping the last checkpoint; start every worker again "
                "with the same command to go on.")


def _run_worker(build_runner, run, root_dir: str) -> Dict:
  """One worker of a multi-worker run, from joining the cluster to the end: the chief runs the
  experiment (``run``), the others train; then all wait for each other (the others wait for
  the chief's evaluation). A lost worker, or a Ctrl-C on any worker, ends every worker in
  bounded time with one line: ClusterError (status 1), Interrupted (status 130). Ctrl-C
  outside training quits at once: Python would only see it once the all-reduce the main
  thread waits in ends."""
  runner, results = None, None
  try:
    with interrupts.InterruptWatcher().active(graceful=False, quit_message=QUIT_MESSAGE):
      distributed, runner = build_runner()
      chief = distribution.is_chief(distributed)
      with episodic.raise_data_errors():
        if chief:
          results = run(runner)
        else:
          step = runner.train()
      distribution.barrier(distributed)
  except interrupts.Interrupted:  # From the Runner, on every worker at the same step.
    raise interrupts.Interrupted(distribution.interrupted_message(
        runner.interrupts.here, runner.trainer.step, root_dir)) from None
  except distribution.WORKER_LOST as error:
    if results is not None:  # The chief finished everything; only the final wait failed.
      logging.warning("%s", distribution.finished_without_worker_message(error))
      return results
    raise distribution.ClusterError(distribution.worker_lost_message(error, root_dir)) from error
  if not chief:
    logging.info("Trained to meta-iteration %d; the chief wrote %s.", step, root_dir)
  return results or {}
