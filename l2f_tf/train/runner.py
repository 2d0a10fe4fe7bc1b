"""The experiment runner: one training loop and one experiment flow for every kind of trainer.

A trainer (:class:`MetaTrainer`: the supervised `l2f_tf.train.trainer.Trainer` or the meta-RL
`l2f_tf.train.meta_rl_trainer.MetaRLTrainer`, chosen in gin with ``run_experiment.trainer``)
supplies what differs: its meta-iterations, its evaluation, its export and its figure. The
:class:`Runner` owns everything else, once:

* the run folder (`l2f_tf.run_folder.RunFolder`) and its checkpoints, restored on
  construction, so the same command resumes an interrupted run exactly;
* the loop skeleton: TensorBoard writer for train/, progress lines (meta-iterations/s, ETA),
  a checkpoint every ``checkpoint_every`` meta-iterations, one on Ctrl-C
  (`l2f_tf.train.interrupts`) and one at the end, and an optional time limit;
* the experiment flow (:meth:`Runner.run`): train -> evaluate -> results.json and eval/
  summaries -> SavedModel -> figure. Each stage after training writes its outputs atomically
  and is then recorded in stages.json with what it depended on (the step and its settings),
  so that a run killed at any point finishes, when its command runs again, exactly the stages
  it had not finished, without training again and without trusting a half-written file.
"""

import hashlib
import json
import os
import time
from typing import Dict, NamedTuple, Optional, Protocol, Sequence, Tuple

import gin
import tensorflow as tf
from absl import logging

from l2f_tf import atomic, console, run_folder, smoke
from l2f_tf.meta.contract import Learner
from l2f_tf.progress import Progress
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints, disk_full, event_files, guard, interrupts, settings
from l2f_tf.train.evaluation import write_eval_summaries

ERROR_BARS = "ci95 = 1.96 * sample std / sqrt(n) over evaluation tasks"


def write_per_tensor(prefix: str, names: Sequence[str], values, step: int) -> None:
  """TensorBoard scalars ``<prefix>/<tensor path>``, one per inner-loop tensor (gamma, degree of
  conflict), in the default writer."""
  for name, value in zip(names, values):
    tf.summary.scalar(f"{prefix}/{name.replace(':', '_')}", value, step=step)


class Chunk(NamedTuple):
  """What one call of :meth:`MetaTrainer.run` did.

  Attributes:
    steps: meta-iterations run (at least 1).
    message: a short status for the progress line (e.g. the meta-loss).
    restart_timing: the call included one-off work (tracing, compilation, validation) that
      must stay out of the meta-iterations/s and ETA estimates.
  """
  steps: int
  message: str = ""
  restart_timing: bool = False


class MetaTrainer(Protocol):
  """What a trainer supplies to the :class:`Runner`.

  Attributes:
    learner: the learner being trained (`l2f_tf.meta.contract.Learner`).
    domain: the problem (`l2f_tf.domains.base.Domain`).
    folder: the run folder.
    num_iterations: meta-iterations in total (a resumed run continues to this number).
    checkpoint: every piece of state needed to resume exactly (weights, optimizer, counter).
    step: meta-iterations done so far (restored with the checkpoint).
  """
  learner: Learner
  domain: object
  folder: RunFolder
  num_iterations: int
  checkpoint: tf.train.Checkpoint

  @property
  def step(self) -> int:
    ...

  def begin(self) -> None:
    """Called once after the checkpoint is restored, before the first meta-iteration."""

  def run(self, limit: int) -> Chunk:
    """Runs between 1 and ``limit`` meta-iterations from ``step``; writes its own
    TensorBoard summaries (the train/ writer is the default writer)."""

  def evaluate(self, num_tasks: int, steps: Sequence[int]) -> Tuple[Dict, Dict]:
    """(evaluations {distribution: {figure: {mean, ci95, n}}}, extra results.json entries)."""

  def use_final_weights(self) -> None:
    """Loads the weights the run exports and plots (the best validated checkpoint when the
    trainer validates) into the learner, also when the evaluation that selects them was
    finished by an earlier call."""

  def export(self, path: str, num_steps: Optional[int], config_path: str,
             max_steps: Optional[int]) -> str:
    """Writes the SavedModel of the trained learner to ``path`` (``max_steps``: see
    :meth:`run`)."""

  def plot(self, folder: RunFolder, evaluations: Dict, num_steps: int) -> Optional[str]:
    """Saves the run's figure into ``folder``; returns its path (None: no figure)."""


def written_line(folder: RunFolder) -> str:
  """The last line of a run: where its results, model and figures are."""
  outputs = [name for name in ("results.json", "saved_model/")
             if os.path.exists(os.path.join(folder.root, name))]
  outputs += sorted(n for n in os.listdir(folder.root) if n.endswith(".png"))
  return (f"Done: {folder.root} holds {', '.join(outputs)}; "
          f"TensorBoard: tensorboard --logdir {folder.root}")


@gin.configurable
class Runner:
  """Trains a :class:`MetaTrainer` with checkpoints and progress, then runs the experiment flow.

  Args:
    trainer: the trainer; its folder is the run folder.
    checkpoint_every: meta-iterations between checkpoints (also saved at the end and on
      Ctrl-C, so an interruption loses at most this many).
    max_checkpoints: checkpoints kept.
    log_every_seconds: seconds between progress lines.
    max_seconds: stop training (with a checkpoint) once this much time has passed in this call,
      even before ``num_iterations`` (time-boxed benchmarks); None: no limit.
    restore_from: the checkpoint directory to resume from, when it is not the trainer's own
      (a non-chief worker resumes from the chief's checkpoints).
    resume: continue a trained run folder even if the trainer's settings differ from those it
      was trained with (`l2f_tf.train.settings`); False refuses it with a ConfigMismatchError
      naming the differences, as the command line does without --resume.

  The runner holds the run folder's lock (one run per folder) from its construction to the end
  of the process, and records the trainer's settings in the folder's settings.json.
  """

  def __init__(self, trainer: MetaTrainer, checkpoint_every: int = 1000,
               max_checkpoints: int = 3, log_every_seconds: float = 10.0,
               max_seconds: Optional[float] = None, restore_from: Optional[str] = None,
               resume: bool = False):
    if checkpoint_every < 1:
      raise ValueError(f"Runner.checkpoint_every must be >= 1, got {checkpoint_every}.")
    console.show_progress_in_library()  # a script or notebook sees the progress lines too
    self.trainer, self.folder = trainer, trainer.folder
    own_folder = restore_from is None  # A non-chief worker's folder is its scratch space.
    if own_folder:
      self.folder.prepare()
      run_folder.hold_lock(self.folder.root)
      described = settings.describe(trainer)
      settings.check(self.folder, described, checkpoints.latest_step(self.folder.checkpoints),
                     resume)
    self.checkpoint_every, self.log_every_seconds = checkpoint_every, log_every_seconds
    self.max_seconds = max_seconds
    self._clock = None  # updates train_seconds while train() runs
    self.interrupts = interrupts.InterruptWatcher(lambda: self.manager.latest_checkpoint)
    # Training time summed over every call that trained this run (a resumed run counts its
    # earlier parts too), saved with each checkpoint.
    self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                     name="train_seconds")
    trainer.checkpoint.train_seconds = self.train_seconds
    self.manager = checkpoints.restore_or_initialize(
        trainer.checkpoint, self.folder.checkpoints, max_checkpoints, restore_from)
    if own_folder:
      settings.record(self.folder, described)  # once restored: the folder is this run's
      # What the lost meta-iterations wrote to TensorBoard is written again as they are redone.
      for directory in (self.folder.train_summaries, self.folder.eval_summaries):
        event_files.drop_after(directory, trainer.step)

  def save(self) -> None:
    """A checkpoint of the current step, unless the latest one already is of this step."""
    if self._clock is not None:
      self._clock()
    step = self.trainer.step
    latest = self.manager.latest_checkpoint
    if latest is None or not latest.endswith(f"-{step}"):
      self.manager.save(checkpoint_number=step)

  @disk_full.in_run_folder  # A full disk: a DiskFullError naming what to free.
  def train(self) -> int:
    """Trains from the restored step to ``trainer.num_iterations``; returns the final step."""
    trainer = self.trainer
    trainer.begin()
    start, total = trainer.step, trainer.num_iterations
    if start >= total:
      logging.info("Training already finished at meta-iteration %d.", start)
      return start
    writer = tf.summary.create_file_writer(self.folder.train_summaries)
    progress = Progress(total, start, self.log_every_seconds, label="meta-iteration")
    started = time.perf_counter()
    before = float(self.train_seconds.numpy())
    self._clock = lambda: self.train_seconds.assign(before + time.perf_counter() - started)
    step, chunk = start, None
    try:
      with writer.as_default(), self.interrupts.active(graceful=True):
        while step < total:
          next_checkpoint = (step // self.checkpoint_every + 1) * self.checkpoint_every
          chunk = trainer.run(min(total, next_checkpoint) - step)
          step = trainer.step
          if chunk.restart_timing or step == start + chunk.steps:
            progress.restart(step)  # The first call traces and compiles.
          if step % self.checkpoint_every == 0:
            self.save()
          if progress.update(step, chunk.message) and progress.steps_per_second:
            tf.summary.scalar("meta_iterations_per_second", progress.steps_per_second, step)
          if self.interrupts.requested:
            self.save()
            raise interrupts.Interrupted(
                f"Interrupted: saved a checkpoint at meta-iteration {step}; run the same "
                "command to resume.")
          if self.max_seconds is not None and time.perf_counter() - started > self.max_seconds:
            logging.info("Stopping after meta-iteration %d: Runner.max_seconds = %s.", step,
                         self.max_seconds)
            break
    except guard.NonFiniteError as error:  # No checkpoint: the last one on disk is good.
      raise error.with_checkpoint(self.manager.latest_checkpoint) from None
    except KeyboardInterrupt:  # Outside the main thread, where Ctrl-C is not watched.
      self.save()
      logging.warning("Interrupted: saved a checkpoint at meta-iteration %d; run the same "
                      "command to resume.", trainer.step)
      raise
    self.save()
    progress.update(step, chunk.message, force=True)
    writer.flush()
    return step

  @disk_full.in_run_folder
  def run(self, eval_steps: Optional[Sequence[int]] = None, num_eval_tasks: int = 600,
          export_steps: Optional[int] = None, plot: bool = True,
          export_max_steps: Optional[int] = None) -> Dict:
    """Trains (or resumes), evaluates, writes results.json and eval/ summaries, exports the
    SavedModel and saves the figure; returns the results.

    Args:
      eval_steps: adaptation-step counts at which the metric is reported, besides 0 (default
        1..the training number of inner steps).
      num_eval_tasks: held-out evaluation tasks per distribution (the same for every model).
      export_steps: inner steps baked into the SavedModel (default: the training setting).
      plot: save the trainer's figure.
      export_max_steps: the most inner steps the SavedModel's ``adapt_and_predict_steps`` can
        run (default: max(2 * export steps, 10)); supervised exports only (meta-RL exports
        have no such signature).
    """
    trainer, folder = self.trainer, self.folder
    num_eval_tasks = smoke.tasks(num_eval_tasks)
    step = self.train()
    eval_steps = sorted(set(eval_steps or range(1, max(trainer.learner.num_inner_steps, 1) + 1)))
    with self.interrupts.active(graceful=False):
      results = self._evaluate_stage(step, eval_steps, num_eval_tasks)
      evaluations = results["evaluations"]
      export_key = {"step": step, "export_steps": export_steps,
                    "export_max_steps": export_max_steps}
      if folder.stage_done("export", export_key) and os.path.isdir(folder.saved_model):
        logging.info("The SavedModel of meta-iteration %d is already in %s.", step,
                     folder.saved_model)
      else:
        trainer.use_final_weights()
        with atomic.folder_for(folder.saved_model) as tmp:
          trainer.export(tmp, export_steps, folder.config, export_max_steps)
        folder.finish_stage("export", export_key)
      plot_key = {"step": step, "num_steps": max(eval_steps),  # and the numbers it draws:
                  "evaluations": hashlib.sha256(json.dumps(evaluations, sort_keys=True).encode()
                                                ).hexdigest()}
      if plot and not folder.stage_done("plot", plot_key):
        trainer.use_final_weights()
        trainer.plot(folder, evaluations, max(eval_steps))
        folder.finish_stage("plot", plot_key)
    for distribution, figures in evaluations.items():
      for name, value in figures.items():
        logging.info("%s %s: %.4f +- %.4f (n=%d)", distribution, name, value["mean"],
                     value["ci95"], value["n"])
    logging.info("%s", written_line(folder))
    return results

  def _evaluate_stage(self, step: int, eval_steps: Sequence[int], num_eval_tasks: int) -> Dict:
    """results.json (and the eval/ summaries) of meta-iteration ``step``: read back when an
    earlier call finished them with the same settings, else evaluated and written."""
    trainer, folder = self.trainer, self.folder
    key = {"step": step, "eval_steps": list(eval_steps), "num_eval_tasks": num_eval_tasks}
    if folder.stage_done("evaluate", key) and os.path.exists(folder.results):
      logging.info("results.json of meta-iteration %d is already written; not evaluating "
                   "again.", step)
      return folder.read_results()
    logging.info("Evaluating on %d tasks per distribution...", num_eval_tasks)
    evaluations, extra = trainer.evaluate(num_eval_tasks, eval_steps)
    results = {
        "method": trainer.learner.method_name,
        "batch_norm": trainer.learner.batch_norm,
        "domain": trainer.domain.name,
        "meta_iterations": step,
        "train_seconds": float(self.train_seconds.numpy()),  # all calls that trained it
        "metric": trainer.domain.metric_name,
        "error_bars": ERROR_BARS,
        **extra,
        "evaluations": evaluations,
    }
    if smoke.active():
      results["smoke"] = True  # tiny loops (l2f_tf.smoke): the numbers mean nothing
    folder.write_results(results)
    write_eval_summaries(folder.eval_summaries, step, evaluations)
    folder.finish_stage("evaluate", key)
    return results
