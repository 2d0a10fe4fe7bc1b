"""The meta-training loop: one compiled train step, summaries, checkpoints, progress.

The step computes the meta-loss over a meta-batch of tasks and applies one outer update of
theta, the attenuator phi and learnable inner learning rates. It runs under the current
``tf.distribute`` strategy with the tasks of a meta-batch split across replicas and the
meta-gradient all-reduced, so multi-device training is configuration, not a rewrite.

Two traces of the step exist, both applying the same update: the plain one, and one that also
returns diagnostics (query loss after each inner step, gamma), used every ``summary_every``
steps. The degree of conflict needs per-task meta-gradients, so it has its own function, run
only at summary steps. Between events (summaries, checkpoints, the first- to second-order
switch) up to ``steps_per_call`` plain steps run inside one compiled loop.
"""

from typing import Dict, Optional

import gin
import keras
import tensorflow as tf
from absl import logging

from l2f_tf.meta import analysis, sequential
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints, validation
from l2f_tf.train.progress import Progress


@gin.configurable
def build_learner(domain, seed: int = 0, learner_cls=MetaLearner) -> MetaLearner:
  """The domain's network wrapped in a (gin-configured) meta-learner, initialised from seed."""
  keras.utils.set_random_seed(seed)
  # The metric is logged after each inner step unless it is the loss itself (sinusoid MSE).
  metric_fn = domain.task_metric if getattr(domain, "metric_differs_from_loss", True) else None
  return learner_cls(model=domain.build_model(), loss_fn=domain.loss_fn, metric_fn=metric_fn)


def tensor_summary_name(path: str) -> str:
  """A TensorBoard-friendly name for a variable path like 'mlp/dense1/kernel'."""
  return path.replace(":", "_")


@gin.configurable
class Trainer:
  """Meta-trains a learner on a domain's stream of meta-batches.

  Args:
    learner: the MetaLearner.
    domain: provides ``train_dataset(seed, start_step)``.
    root_dir: run directory (checkpoints/ and train/ are written there).
    num_iterations: meta-iterations in total (a resumed run continues to this number).
    outer_lr: learning rate of the outer loop.
    outer_optimizer: "adam" (the paper's) or "sgd".
    cosine_decay: anneal the outer learning rate to 0 over the run (MAML++).
    first_order_until: use first-order meta-gradients for steps below this number, then
      second order (the reference's "first order for the first 10 epochs").
    always_first_order: first order for the whole run (FOMAML).
    network_grad_clip: element-wise clip of the network's meta-gradients to [-c, c] (the
      attenuator and inner learning rates are not clipped); None disables.
    checkpoint_every: steps between checkpoints (also saved at the end and on Ctrl-C).
    summary_every: steps between TensorBoard summaries (gammas, per-step losses, conflict).
    max_checkpoints: checkpoints kept.
    seed: seed of the training task stream.
    jit_compile: compile the train step with XLA.
    log_every_seconds: seconds between progress lines.
    steps_per_call: meta-iterations run inside one call of a compiled loop (the episodes are
      read from the tf.data iterator inside the graph), which removes the per-step Python
      overhead; summaries, checkpoints and the first-/second-order switch still happen at
      their exact steps. 1 runs every step from Python.
    validator: ``validator(step) -> score`` (higher is better), e.g. a
      :class:`~l2f_tf.train.validation.Validator`; None disables validation.
    validate_every: steps between validations (an epoch in the reference: 500); the last step
      is always validated. The ``keep_best`` best states are kept in ``<root_dir>/best/``.
    keep_best: how many of the best validated checkpoints to keep (3 in the reference).
    sequential_tasks: compute the meta-gradient task by task with recomputed inner steps
      (`l2f_tf.meta.sequential`): the same update in a fraction of the memory, ~25% more CPU.
      Used for images; the sinusoid's tiny tasks are faster all at once.
  """

  def __init__(self, learner: MetaLearner, domain, root_dir: str, num_iterations: int = 70000,
               outer_lr: float = 1e-3, outer_optimizer: str = "adam", cosine_decay: bool = False,
               first_order_until: int = 0,
               always_first_order: bool = False, network_grad_clip: Optional[float] = None,
               checkpoint_every: int = 1000, summary_every: int = 100, max_checkpoints: int = 3,
               seed: int = 0, jit_compile: bool = True, log_every_seconds: float = 10.0,
               steps_per_call: int = 1, validator=None, validate_every: int = 500,
               keep_best: int = 3, sequential_tasks: bool = False):
    self.learner, self.domain, self.root_dir = learner, domain, root_dir
    self.folder = RunFolder(root_dir)
    self.num_iterations = num_iterations
    self.first_order_until, self.always_first_order = first_order_until, always_first_order
    self.network_grad_clip = network_grad_clip
    self.checkpoint_every, self.summary_every = checkpoint_every, summary_every
    self.seed, self.jit_compile, self.log_every_seconds = seed, jit_compile, log_every_seconds
    if steps_per_call < 1:
      raise ValueError(f"Trainer.steps_per_call must be >= 1, got {steps_per_call}.")
    self.steps_per_call = steps_per_call
    self.strategy = tf.distribute.get_strategy()
    learning_rate = outer_lr
    if cosine_decay:
      learning_rate = keras.optimizers.schedules.CosineDecay(outer_lr, num_iterations)
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if outer_optimizer not in optimizers:
      raise ValueError(f"Trainer.outer_optimizer must be one of {sorted(optimizers)}, got "
                       f"{outer_optimizer!r}.")
    self.optimizer = optimizers[outer_optimizer](learning_rate)
    self.optimizer.build(learner.meta_variables)
    self.checkpoint = checkpoints.make_checkpoint(learner, self.optimizer)
    self.manager = checkpoints.restore_or_initialize(
        self.checkpoint, self.folder.checkpoints, max_checkpoints)
    self.sequential_tasks = sequential_tasks
    self.validator, self.validate_every = validator, validate_every
    self.best = None
    if validator is not None:
      if validate_every < 1:
        raise ValueError(f"Trainer.validate_every must be >= 1, got {validate_every}.")
      self.best = validation.BestCheckpoints(self.folder.best, keep_best)
      self.weights_checkpoint = checkpoints.make_weights_checkpoint(learner)
      self.best.forget_after(self.step)
    self._steps: Dict = {}
    self._loops: Dict = {}
    self._conflict_fns: Dict = {}

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def first_order_at(self, step: int) -> bool:
    return self.always_first_order or step < self.first_order_until

  # --- compiled functions ----------------------------------------------------------------------
  def _replica_step(self, episodes, first_order: bool, with_metrics: bool):
    learner = self.learner
    variables = learner.meta_variables
    replicas = self.strategy.num_replicas_in_sync
    # Replicas hold T / R tasks each; their gradients are summed below.
    scale = 1.0 / replicas if learner.task_reduction == "mean" else 1.0
    if self.sequential_tasks:
      loss, grads, metrics = sequential.meta_gradients(learner, episodes, first_order,
                                                       with_metrics)
      grads = [g * scale for g in grads] if scale != 1.0 else grads
    else:
      with tf.GradientTape() as tape:
        loss, metrics = learner.meta_loss(episodes, first_order=first_order,
                                          with_metrics=with_metrics)
        scaled = loss * scale
      grads = tape.gradient(scaled, variables)
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if replicas > 1:
      # Clipping applies to the meta-gradient of the whole meta-batch, so sum first. The Keras
      # optimizer sums the replicas' gradients again, hence the division by their number.
      summed = tf.distribute.get_replica_context().all_reduce("sum", [g for g, _ in pairs])
      pairs = [(g, v) for g, (_, v) in zip(summed, pairs)]
    network = {id(v) for v in learner.network_variables}
    if self.network_grad_clip is not None:
      c = self.network_grad_clip
      pairs = [(tf.clip_by_value(g, -c, c) if id(v) in network else g, v) for g, v in pairs]
    if replicas > 1:
      pairs = [(g / replicas, v) for g, v in pairs]
    self.optimizer.apply_gradients(pairs)
    return loss, metrics

  def _distributed_step(self, first_order: bool, with_metrics: bool):
    """One meta-iteration on every replica, with loss and metrics reduced across replicas."""
    replica_step = tf.function(
        lambda episodes: self._replica_step(episodes, first_order, with_metrics),
        jit_compile=self.jit_compile)
    reduction = "sum" if self.learner.task_reduction == "sum" else "mean"

    def step(episodes):
      loss, metrics = self.strategy.run(replica_step, args=(episodes,))
      loss = self.strategy.reduce(reduction, loss, axis=None)
      metrics = {key: self.strategy.reduce("mean", value, axis=None)
                 for key, value in metrics.items()}
      return loss, metrics

    return step

  def train_step_fn(self, first_order: bool, with_metrics: bool):
    """The compiled step for this (first_order, with_metrics) combination."""
    key = (first_order, with_metrics)
    if key not in self._steps:
      self._steps[key] = tf.function(self._distributed_step(first_order, with_metrics))
    return self._steps[key]

  def train_loop_fn(self, first_order: bool):
    """A compiled loop: ``fn(iterator, n)`` runs n meta-iterations, returns the last loss."""
    if first_order not in self._loops:
      step = self._distributed_step(first_order, with_metrics=False)

      @tf.function
      def loop(iterator, n):
        loss = tf.constant(0.0, self.learner.model.dtype)
        for _ in tf.range(n):
          loss, _ = step(next(iterator))
        return loss

      self._loops[first_order] = loop
    return self._loops[first_order]

  def _steps_until_event(self, step: int) -> int:
    """Meta-iterations that can run in one loop call from ``step`` (no event in between)."""
    limit = min(self.steps_per_call, self.num_iterations - step)
    if self.summary_every > 0:
      # Stop before the next step s with (s + 1) % summary_every == 0: it writes summaries.
      next_summary = (step + self.summary_every) // self.summary_every * self.summary_every - 1
      limit = min(limit, next_summary - step)
    if self.checkpoint_every > 0:
      # Stop right after the step that completes a multiple of checkpoint_every.
      limit = min(limit, (step // self.checkpoint_every + 1) * self.checkpoint_every - step)
    if self.validator is not None:
      limit = min(limit, (step // self.validate_every + 1) * self.validate_every - step)
    if not self.always_first_order and step < self.first_order_until:
      limit = min(limit, self.first_order_until - step)
    return max(limit, 1)

  def conflict_fn(self, first_order: bool):
    if first_order not in self._conflict_fns:
      self._conflict_fns[first_order] = tf.function(
          lambda episodes: analysis.degree_of_conflict(
              self.learner.per_task_meta_gradients(episodes, first_order=first_order)))
    return self._conflict_fns[first_order]

  # --- loop ------------------------------------------------------------------------------------
  def _write_summaries(self, step, loss, metrics, episodes, first_order):
    names = [tensor_summary_name(n) for n in self.learner.inner_variable_names]
    tf.summary.scalar("meta_loss", loss, step=step)
    for k, value in enumerate(tf.unstack(metrics["query_loss_per_step"])):
      tf.summary.scalar(f"query_loss_after_step/{k}", value, step=step)
    if "query_metric_per_step" in metrics:
      for k, value in enumerate(tf.unstack(metrics["query_metric_per_step"])):
        tf.summary.scalar(f"query_{self.domain.metric_name}_after_step/{k}", value, step=step)
    if "gamma" in metrics:
      for name, value in zip(names, tf.unstack(metrics["gamma"])):
        tf.summary.scalar(f"gamma/{name}", value, step=step)
    # Conflict between the tasks of one replica's share of the meta-batch.
    if "degree_of_conflict" in metrics:  # computed by the sequential step
      conflict = metrics["degree_of_conflict"]
    else:
      local_episodes = self.strategy.experimental_local_results(episodes)[0]
      conflict = self.conflict_fn(first_order)(local_episodes)
    for name, value in zip(names, tf.unstack(conflict)):
      tf.summary.scalar(f"degree_of_conflict/{name}", value, step=step)
    learning_rate = self.optimizer.learning_rate
    tf.summary.scalar("outer_lr", learning_rate, step=step)
    if self.learner.inner_lr_variables:
      tf.summary.histogram("inner_lr", self.learner.inner_lr_variables[0], step=step)

  def _validate(self, step: int) -> None:
    score = self.validator(step)
    if self.best.record(step, score, self.weights_checkpoint):
      logging.info("Step %d is among the %d best validated checkpoints (score %.4f).", step,
                   self.best.keep, score)

  def train(self) -> int:
    """Trains from the restored step to ``num_iterations``; returns the final step."""
    start = self.step
    if (self.validator is not None and start > 0 and start not in self.best.history() and
        (start % self.validate_every == 0 or start >= self.num_iterations)):
      self._validate(start)  # Interrupted during this validation: it was not recorded.
    if start >= self.num_iterations:
      logging.info("Training already finished at step %d.", start)
      return start
    dataset = self.domain.train_dataset(self.seed, start_step=start)
    iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(self.folder.train_summaries)
    progress = Progress(self.num_iterations, start, self.log_every_seconds, label="meta-iteration")
    step, loss = start, None
    compiled_before = set()
    try:
      with writer.as_default():
        while step < self.num_iterations:
          first_order = self.first_order_at(step)
          with_metrics = self.summary_every > 0 and (step + 1) % self.summary_every == 0
          chunk = 1 if (with_metrics or step == start) else self._steps_until_event(step)
          if chunk > 1:
            loss = self.train_loop_fn(first_order)(iterator, tf.constant(chunk))
          else:
            episodes = next(iterator)
            loss, metrics = self.train_step_fn(first_order, with_metrics)(episodes)
          step += chunk
          compiled = ("loop", first_order) if chunk > 1 else ("step", first_order, with_metrics)
          if compiled not in compiled_before:
            # The first call of a compiled function includes tracing and XLA compilation: keep
            # it out of the steps/s and ETA estimates.
            compiled_before.add(compiled)
            logging.info("Compiled the %s (%s order%s) by meta-iteration %d.", compiled[0],
                         "first" if first_order else "second",
                         ", with summaries" if with_metrics else "", step)
            progress.restart(step)
          if with_metrics:
            self._write_summaries(step, loss, metrics, episodes, first_order)
            if progress.steps_per_second:
              tf.summary.scalar("meta_iterations_per_second", progress.steps_per_second, step)
          if self.validator is not None and (step % self.validate_every == 0 or
                                             step == self.num_iterations):
            # Before the regular checkpoint: a crash in between repeats this validation.
            self._validate(step)
            progress.restart(step)  # Keep validation time out of steps/s and the ETA.
          if step % self.checkpoint_every == 0:
            self.manager.save(checkpoint_number=step)
          progress.update(step, f"meta-loss {float(loss):.4f}")
    except KeyboardInterrupt:
      self.manager.save(checkpoint_number=self.step)
      logging.warning("Interrupted: saved a checkpoint at step %d; run the same command to "
                      "resume.", self.step)
      raise
    if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(
        f"-{step}"):
      self.manager.save(checkpoint_number=step)
    progress.update(step, f"meta-loss {float(loss):.4f}", force=True)
    writer.flush()
    return step
