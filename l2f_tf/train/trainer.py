"""Supervised meta-training (sinusoid, few-shot classification): the step and the evaluation.

The :class:`~l2f_tf.train.runner.Runner` runs the loop (checkpoints, progress, Ctrl-C); this
trainer supplies the meta-iterations, the validation, the evaluation, the export and the figure.

The step computes the meta-loss over a meta-batch of tasks and applies one outer update of
theta, the attenuator phi and learnable inner learning rates. It runs under the current
``tf.distribute`` strategy with the tasks of a meta-batch split across replicas and the
meta-gradient all-reduced, so multi-device training is configuration, not a rewrite.

Two traces of the step exist, both applying the same update: the plain one, and one that also
returns diagnostics (query loss after each inner step, gamma, and the degree of conflict, from
per-task meta-gradients), used every ``summary_every`` steps. Between events (summaries,
checkpoints, validation, the first- to second-order switch) up to ``steps_per_call`` plain
steps run inside one compiled loop. A step whose meta-loss or meta-gradient is not finite
applies no update (``l2f_tf.train.guard``).
"""

import time
from typing import Dict, NamedTuple, Optional, Sequence

import gin
import keras
import tensorflow as tf
from absl import logging

from l2f_tf import export as export_lib
from l2f_tf import precision, smoke
from l2f_tf.domains.base import SupervisedDomain
from l2f_tf.meta import diagnostics, sequential
from l2f_tf.meta.contract import Learner
from l2f_tf.meta.learner import has_convolutions
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints, evaluation, validation
from l2f_tf.train.guard import NonFiniteGuard, all_finite
from l2f_tf.train.runner import Chunk, write_per_tensor


class LoopResult(NamedTuple):
  """What one call of the compiled multi-step loop (:meth:`Trainer.train_loop_fn`) did.

  Attributes:
    loss: the meta-loss of the last step run.
    steps: steps run (fewer than asked when the guard's limit of consecutive non-finite steps
      was reached: no step runs after that one).
    skipped: steps whose meta-loss or meta-gradient was non-finite (update not applied).
    consecutive: non-finite steps in a row at the end, counting the ones before the call.
    last_skipped: the position (1..steps) of the last skipped step in the call, 0 if none.
  """
  loss: tf.Tensor
  steps: tf.Tensor
  skipped: tf.Tensor
  consecutive: tf.Tensor
  last_skipped: tf.Tensor


@gin.configurable
class Trainer:
  """Meta-trains a learner on a supervised domain's stream of meta-batches.

  Args:
    learner: a :class:`~l2f_tf.meta.contract.Learner` (MetaLearner, LEO).
    domain: a `l2f_tf.domains.base.SupervisedDomain`.
    root_dir: the run directory (train/ summaries, best/ validated checkpoints, eval/).
    num_iterations: meta-iterations in total (a resumed run continues to this number).
    outer_lr: learning rate of the outer loop.
    outer_optimizer: "adam" (the paper's) or "sgd".
    cosine_decay: anneal the outer learning rate to 0 over the run (MAML++).
    first_order_until: use first-order meta-gradients for steps below this number, then
      second order (the reference's "first order for the first 10 epochs").
    always_first_order: first order for the whole run (FOMAML).
    network_grad_clip: element-wise clip of the network's meta-gradients to [-c, c] (the
      attenuator and inner learning rates are not clipped); None disables.
    network_grad_norm_clip: then clip each of those meta-gradient tensors to this l2 norm
      (``tf.clip_by_norm``; LEO's published setting, after an element-wise clip); None
      disables.
    summary_every: steps between TensorBoard summaries (gammas, per-step losses, conflict).
    seed: seed of the training task stream.
    jit_compile: compile the step with XLA (with several replicas, each replica's
      meta-gradient computation: the all-reduce and the update stay outside, since XLA has no
      collective ops on CPUs). Not with a learner that vectorizes its tasks
      (``MetaLearner.vectorize_tasks``, the default for models without convolutions): XLA
      would compile the step again at every call (docs/scaling.md, "Vectorized tasks"). Not
      with a convolutional network trained at second order either: XLA's second-order
      meta-gradients are NaN there (True raises a ValueError). None (the default) compiles
      whenever it can; True asks for it and says in a log line when it cannot; False never
      compiles.
    steps_per_call: meta-iterations run inside one call of a compiled loop (the episodes are
      read from the tf.data iterator inside the graph), which removes the per-step Python
      overhead; summaries, checkpoints and the first-/second-order switch still happen at
      their exact steps. 1 runs every step from Python.
    validator: ``validator(step) -> score`` (higher is better). None: a
      :class:`~l2f_tf.train.validation.Validator` on ``num_val_episodes`` episodes of the
      domain's validation split when it has one, else no validation.
    validate_every: steps between validations (an epoch in the reference: 500); the last step
      is always validated. The ``keep_best`` best states are kept in ``<root_dir>/best/``.
    keep_best: how many of the best validated checkpoints to keep (3 in the reference); the
      evaluation reports the best alone and the ``keep_best`` ensembled.
    num_val_episodes: validation episodes (600 in the reference); 0 disables validation.
    sequential_tasks: compute the meta-gradient task by task with recomputed inner steps
      (`l2f_tf.meta.sequential`): the same update in a fraction of the memory, for a little
      more CPU. Used for images; the sinusoid's tiny tasks are faster all at once.
    landscape: at summary steps, also log the inner loop's landscape measures
      (``l2f_tf.meta.diagnostics``: loss along the step, gradient change, beta-smoothness) on the
      step's tasks at theta before the step's update, under ``landscape/`` in TensorBoard; not
      XLA-compiled (its cost: docs/analysis.md). Every experiment's gin setup file turns it on;
      off here so that a Trainer built in Python does not pay its tracing unasked.
    landscape_multipliers: the multiples of the inner step at which the landscape is probed.
    guard: what to do with a step whose meta-loss or meta-gradient is not finite (its update
      is never applied): a :class:`~l2f_tf.train.guard.NonFiniteGuard`; None: one configured
      in gin (``NonFiniteGuard.policy``, ``NonFiniteGuard.max_consecutive``; by default skip
      the step, stop after 10 in a row). Under mixed_float16 only the meta-loss is checked:
      the loss-scaling optimizer skips non-finite (loss-scaled) meta-gradients by itself and
      halves the scale, which is its normal search for the scale, not divergence, so those
      steps are not counted.
  """

  def __init__(self, learner: Learner, domain: SupervisedDomain, root_dir: str,
               num_iterations: int = 70000, outer_lr: float = 1e-3, outer_optimizer: str = "adam",
               cosine_decay: bool = False, first_order_until: int = 0,
               always_first_order: bool = False, network_grad_clip: Optional[float] = None,
               network_grad_norm_clip: Optional[float] = None,
               summary_every: int = 100, seed: int = 0, jit_compile: Optional[bool] = None,
               steps_per_call: int = 1, validator=None, validate_every: int = 500,
               keep_best: int = 3, num_val_episodes: int = 600, sequential_tasks: bool = False,
               landscape: bool = False,
               landscape_multipliers: Sequence[float] = diagnostics.DEFAULT_STEP_MULTIPLIERS,
               guard: Optional[NonFiniteGuard] = None):
    if not isinstance(domain, SupervisedDomain):
      raise ValueError(f"Trainer trains supervised domains; {type(domain).__name__} is not one. "
                       "For meta-RL bind run_experiment.trainer = @MetaRLTrainer.")
    self.learner, self.domain = learner, domain
    self.folder = RunFolder(root_dir)
    num_iterations = smoke.iterations(num_iterations)
    num_val_episodes = smoke.tasks(num_val_episodes)
    self.num_iterations = num_iterations
    self.first_order_until, self.always_first_order = first_order_until, always_first_order
    self.network_grad_clip = network_grad_clip
    self.network_grad_norm_clip = network_grad_norm_clip
    self.summary_every = summary_every
    self.seed = seed
    self.outer_lr, self.outer_optimizer, self.cosine_decay = outer_lr, outer_optimizer, cosine_decay
    if steps_per_call < 1:
      raise ValueError(f"Trainer.steps_per_call must be >= 1, got {steps_per_call}.")
    self.steps_per_call = steps_per_call
    self.strategy = tf.distribute.get_strategy()  # The one whose scope builds the trainer.
    vectorized = learner.vectorize_tasks and not sequential_tasks
    # Measured: XLA's second-order meta-gradients through a convolutional network are NaN
    # (TensorFlow 2.21, float32 and float64; first order is right; the layers alone are
    # exact under XLA): tests/meta/test_gradients_xla_slow.py and
    # test_gradients_bn_modes_paths.py.
    xla_breaks = has_convolutions(learner.model) and not always_first_order
    if jit_compile and xla_breaks:
      raise ValueError("Trainer.jit_compile = True gives NaN second-order meta-gradients for "
                       f"a convolutional network ({learner.model.name!r}; an XLA problem): set "
                       "Trainer.jit_compile = False (or Trainer.always_first_order = True).")
    if jit_compile is None:
      jit_compile = not vectorized and not xla_breaks
    elif jit_compile and vectorized:
      logging.info("Trainer.jit_compile is ignored: the learner vectorizes its tasks "
                   "(MetaLearner.vectorize_tasks), which XLA would recompile at every step. "
                   "Set MetaLearner.vectorize_tasks = False to compile the step with XLA.")
      jit_compile = False
    self.jit_compile = jit_compile
    replicas = self.strategy.num_replicas_in_sync
    if domain.meta_batch_size % replicas:
      raise ValueError(
          f"The meta-batch of {domain.meta_batch_size} tasks does not split evenly across the "
          f"{replicas} replicas of the {type(self.strategy).__name__}: set the domain's "
          f"meta_batch_size to a multiple of {replicas} (or use fewer devices).")
    learning_rate = outer_lr
    if cosine_decay:
      learning_rate = keras.optimizers.schedules.CosineDecay(outer_lr, num_iterations)
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if outer_optimizer not in optimizers:
      raise ValueError(f"Trainer.outer_optimizer must be one of {sorted(optimizers)}, got "
                       f"{outer_optimizer!r}.")
    # mixed_float16 (l2f_tf.precision): wrapped in a dynamic loss-scaling optimizer.
    self.optimizer = precision.with_loss_scaling(optimizers[outer_optimizer](learning_rate),
                                                 learner.model)
    self.optimizer.build(learner.meta_variables)
    self.guard = NonFiniteGuard() if guard is None else guard
    self.checkpoint = checkpoints.make_checkpoint(learner, optimizer=self.optimizer,
                                                  **self.guard.checkpoint_parts())
    self.sequential_tasks = sequential_tasks
    self.landscape = landscape
    for option, value, supported in (
        ("sequential_tasks", sequential_tasks, learner.supports_sequential_tasks),
        ("landscape", landscape, learner.supports_landscape)):
      if value and not supported:
        raise ValueError(f"Trainer.{option} = True is not available for "
                         f"{learner.method_name}: set Trainer.{option} = False.")
    self.landscape_multipliers = tuple(float(m) for m in landscape_multipliers)
    if landscape and (not self.landscape_multipliers or min(self.landscape_multipliers) <= 0):
      raise ValueError("Trainer.landscape_multipliers must be positive multiples of the inner "
                       f"step, got {tuple(landscape_multipliers)}.")
    if validator is None and domain.validation_split and num_val_episodes > 0:
      validator = validation.Validator(learner, domain, num_val_episodes,
                                       domain.validation_split,
                                       summary_dir=self.folder.eval_summaries)
    self.validator, self.validate_every = validator, validate_every
    self.num_val_episodes = num_val_episodes
    self.best = None
    if validator is not None:
      if validate_every < 1:
        raise ValueError(f"Trainer.validate_every must be >= 1, got {validate_every}.")
      self.best = validation.BestCheckpoints(self.folder.best, keep_best)
    self._iterator = None
    self._compiled = set()
    self._steps: Dict = {}
    self._loops: Dict = {}

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def first_order_at(self, step: int) -> bool:
    return self.always_first_order or step < self.first_order_until

  # --- compiled functions ----------------------------------------------------------------------
  def _replica_gradients(self, episodes, first_order: bool, with_metrics: bool):
    """(loss, meta-gradients, metrics) of this replica's tasks; a gradient is None for a
    variable the loss does not reach. It has no collective op, so XLA (``jit_compile``) can
    compile it on any device."""
    learner = self.learner
    # Replicas hold T / R tasks each; their gradients are summed in _replica_step.
    scale = 1.0 / self.strategy.num_replicas_in_sync if learner.task_reduction == "mean" else 1.0
    # mixed_float16: gradients of the loss times the dynamic loss scale, unscaled (or the step
    # skipped) by the optimizer. None otherwise.
    loss_scale = precision.dynamic_loss_scale(self.optimizer)
    if self.sequential_tasks:
      loss, grads, metrics = sequential.meta_gradients(learner, episodes, first_order,
                                                       with_metrics, loss_scale=loss_scale)
      grads = [g * scale for g in grads] if scale != 1.0 else grads
    else:
      with tf.GradientTape() as tape:
        loss, metrics = learner.meta_loss(episodes, first_order=first_order,
                                          with_metrics=with_metrics)
        scaled = loss * scale if loss_scale is None else loss * scale * loss_scale
      grads = tape.gradient(scaled, learner.meta_variables)
      if with_metrics:  # The sequential path has the per-task gradients anyway.
        metrics["degree_of_conflict"] = diagnostics.degree_of_conflict(
            learner.per_task_meta_gradients(episodes, first_order=first_order))
    return loss, list(grads), metrics

  def _with_static_tasks(self, episodes):
    """The replica's episodes with their task axis static (T / R tasks): inside the compiled
    loop a multi-worker iterator yields them with that axis unknown, which the learners
    refuse (they unroll their loop over tasks)."""
    tasks = self.domain.meta_batch_size // self.strategy.num_replicas_in_sync

    def static(t):
      if t.shape.rank is None:
        return t
      return tf.ensure_shape(t, [tasks] + t.shape.as_list()[1:])

    return tf.nest.map_structure(static, episodes)

  def _replica_step(self, gradients_fn, episodes):
    """Sums the replicas' meta-gradients, checks them, clips the sum, applies the outer update
    if the meta-loss and the meta-gradient are finite; returns (loss, metrics, finite)."""
    learner = self.learner
    replicas = self.strategy.num_replicas_in_sync
    loss, grads, metrics = gradients_fn(self._with_static_tasks(episodes))
    loss_scale = precision.dynamic_loss_scale(self.optimizer)  # None unless mixed_float16
    pairs = [(g, v) for g, v in zip(grads, learner.meta_variables) if g is not None]
    # 1 where this replica's meta-loss is not finite; summed with the gradients, so that every
    # replica takes the same decision.
    bad_loss = tf.cast(tf.logical_not(tf.math.is_finite(loss)), loss.dtype)
    if replicas > 1:
      # Clipping applies to the meta-gradient of the whole meta-batch, so sum first. The Keras
      # optimizer sums the replicas' gradients again, hence the division by their number.
      summed = tf.distribute.get_replica_context().all_reduce(
          "sum", [g for g, _ in pairs] + [bad_loss])
      pairs, bad_loss = [(g, v) for g, (_, v) in zip(summed, pairs)], summed[-1]
    # Checked before the clip, which would turn an inf into a finite value. Under
    # mixed_float16 the loss-scaling optimizer skips non-finite (scaled) gradients itself.
    finite = tf.equal(bad_loss, 0)
    if loss_scale is None:
      finite = tf.logical_and(finite, all_finite([g for g, _ in pairs]))
    network = {id(v) for v in learner.network_variables}
    if self.network_grad_clip is not None:
      c = self.network_grad_clip
      pairs = [(precision.clip_gradient(g, c, loss_scale) if id(v) in network else g, v)
               for g, v in pairs]
    if self.network_grad_norm_clip is not None:
      c = self.network_grad_norm_clip
      if loss_scale is not None:
        c = c * loss_scale
      pairs = [(tf.clip_by_norm(g, c) if id(v) in network else g, v) for g, v in pairs]
    if replicas > 1:
      pairs = [(g / replicas, v) for g, v in pairs]
    self._apply_if(finite, pairs)
    return loss, metrics, finite

  def _apply_if(self, finite, pairs) -> None:
    """The outer update if ``finite``; else only the step counter's increment (the skipped
    step consumed its meta-batch, and the data stream is keyed on the counter)."""
    optimizer = self.optimizer
    grads, variables = [g for g, _ in pairs], [v for _, v in pairs]

    def apply(grads):
      optimizer.apply_gradients(zip(grads, variables))

    def skip():
      optimizer.iterations.assign_add(1)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
      tf.cond(finite, lambda: apply(grads), skip)
      return

    # A strategy that synchronises with merge_call (MirroredStrategy, MultiWorkerMirrored)
    # cannot have a cond whose branch calls merge_call (apply_gradients does) in a replica
    # context: the cond runs in the cross-replica context (as Keras' LossScaleOptimizer does).
    def cross_replica(distribution, finite, grads):
      finite = distribution.experimental_local_results(finite)[0]  # The same on every replica.
      tf.cond(finite, lambda: distribution.extended.call_for_each_replica(apply, args=(grads,)),
              skip)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))

  def _distributed_step(self, first_order: bool, with_metrics: bool):
    """One meta-iteration on every replica: (loss, metrics) reduced across replicas, and
    whether the meta-loss and meta-gradient were finite (else no update was applied; under
    mixed_float16 the loss-scaling optimizer may also skip a finite-loss step)."""
    # XLA compiles the whole replica step (gradients and update) on one replica, and only
    # the gradients on several: XLA has no collective ops on CPUs.
    whole = self.jit_compile and self.strategy.num_replicas_in_sync == 1
    gradients_fn = tf.function(
        lambda episodes: self._replica_gradients(episodes, first_order, with_metrics),
        jit_compile=self.jit_compile and not whole)
    replica_step = tf.function(lambda episodes: self._replica_step(gradients_fn, episodes),
                               jit_compile=whole)
    reduction = "sum" if self.learner.task_reduction == "sum" else "mean"

    def step(episodes):
      loss, metrics, finite = self.strategy.run(replica_step, args=(episodes,))
      loss = self.strategy.reduce(reduction, loss, axis=None)
      metrics = {key: self.strategy.reduce("mean", value, axis=None)
                 for key, value in metrics.items()}
      # Every replica took the same decision.
      return loss, metrics, self.strategy.experimental_local_results(finite)[0]

    return step

  def train_step_fn(self, first_order: bool, with_metrics: bool):
    """The compiled step for this (first_order, with_metrics) combination."""
    key = (first_order, with_metrics)
    if key not in self._steps:
      self._steps[key] = tf.function(self._distributed_step(first_order, with_metrics))
    return self._steps[key]

  def landscape_fn(self):
    """A compiled fn: the step's episodes -> the landscape measures at theta (before the
    step's update), averaged over the tasks of every replica. Not XLA-compiled: it is called
    once per summary step, and XLA would spend minutes on its many gradient graphs."""
    if "landscape" not in self._steps:
      replica_fn = lambda episodes: tf.reduce_mean(diagnostics.batch_landscape(
          self.learner, episodes, self.landscape_multipliers), axis=0)
      @tf.function
      def landscape(episodes):
        values = self.strategy.run(replica_fn, args=(episodes,))
        return self.strategy.reduce("mean", values, axis=None)
      self._steps["landscape"] = landscape
    return self._steps["landscape"]

  def train_loop_fn(self, first_order: bool):
    """A compiled loop: ``fn(iterator, n, consecutive, limit)`` runs up to n meta-iterations,
    returns a :class:`LoopResult`. ``consecutive`` is the number of non-finite steps in a row
    before the call; the loop stops after the step that brings it to ``limit`` (the guard's),
    so that no later step runs."""
    if first_order not in self._loops:
      step = self._distributed_step(first_order, with_metrics=False)

      @tf.function
      def loop(iterator, n, consecutive, limit):
        loss = tf.constant(0.0, self.learner.dtype)
        steps, skipped, last_skipped = tf.constant(0), tf.constant(0), tf.constant(0)
        while tf.logical_and(steps < n, consecutive < limit):
          loss, _, finite = step(next(iterator))
          steps += 1
          bad = 1 - tf.cast(finite, tf.int32)
          skipped += bad
          consecutive = (consecutive + 1) * bad
          last_skipped = tf.where(finite, last_skipped, steps)
        return LoopResult(loss, steps, skipped, consecutive, last_skipped)

      self._loops[first_order] = loop
    return self._loops[first_order]

  def _steps_until_event(self, step: int, limit: int) -> int:
    """Meta-iterations that can run in one loop call from ``step`` (at most ``limit``, the
    runner's next checkpoint or the end) with no summary, validation or first- to
    second-order switch in between."""
    limit = min(limit, self.steps_per_call)
    if self.summary_every > 0:
      # Stop before the next step s with (s + 1) % summary_every == 0: it writes summaries.
      next_summary = (step + self.summary_every) // self.summary_every * self.summary_every - 1
      limit = min(limit, next_summary - step)
    if self.validator is not None:
      limit = min(limit, (step // self.validate_every + 1) * self.validate_every - step)
    if not self.always_first_order and step < self.first_order_until:
      limit = min(limit, self.first_order_until - step)
    return max(limit, 1)

  def replica_dataset(self, context: tf.distribute.InputContext, start_step: int):
    """The training stream of one input pipeline (one per worker), as one element per local
    replica and meta-iteration: replica r of R holds tasks r*T/R .. (r+1)*T/R - 1 of each
    meta-batch of T tasks. The worker reads only its replicas' tasks."""
    replicas = context.num_replicas_in_sync
    local = replicas // context.num_input_pipelines
    per_replica = self.domain.meta_batch_size // replicas
    first = context.input_pipeline_id * local * per_replica
    share = None if replicas == 1 else (first, local * per_replica)
    dataset = self.domain.train_dataset(self.seed, start_step=start_step, tasks=share)
    if local > 1:  # Consecutive elements go to consecutive local replicas.
      dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
    return dataset

  # --- loop ------------------------------------------------------------------------------------
  def _write_summaries(self, step, loss, metrics):
    names = self.learner.inner_variable_names
    tf.summary.scalar("meta_loss", loss, step=step)
    for k, value in enumerate(tf.unstack(metrics["query_loss_per_step"])):
      tf.summary.scalar(f"query_loss_after_step/{k}", value, step=step)
    if "query_metric_per_step" in metrics:
      for k, value in enumerate(tf.unstack(metrics["query_metric_per_step"])):
        tf.summary.scalar(f"query_{self.domain.metric_name}_after_step/{k}", value, step=step)
    if "gamma" in metrics:
      # One gamma per inner-loop tensor (L2F), or per attenuated point (LEO+L2F).
      write_per_tensor("gamma", self.learner.gamma_names, tf.unstack(metrics["gamma"]), step)
    if "kl" in metrics:  # LEO: the KL of the sampled latent codes to N(0, I).
      tf.summary.scalar("latent_kl", metrics["kl"], step=step)
    # Conflict between the tasks of each replica's share of the meta-batch, averaged.
    write_per_tensor("degree_of_conflict", names, tf.unstack(metrics["degree_of_conflict"]),
                     step)
    if "landscape" in metrics:  # Before the step's update, on its tasks.
      for name, value in zip(diagnostics.LANDSCAPE_MEASURES, tf.unstack(metrics["landscape"])):
        tf.summary.scalar(f"landscape/{name}", value, step=step)
    learning_rate = self.optimizer.learning_rate
    tf.summary.scalar("outer_lr", learning_rate, step=step)
    if self.learner.inner_lr_variables:
      tf.summary.histogram("inner_lr", self.learner.inner_lr_variables[0], step=step)

  def _validate(self, step: int) -> None:
    score = self.validator(step)
    if self.best.record(step, score, checkpoints.make_checkpoint(self.learner)):
      logging.info("Step %d is among the %d best validated checkpoints (score %.4f).", step,
                   self.best.keep, score)

  def _due_for_validation(self, step: int) -> bool:
    return self.validator is not None and (step % self.validate_every == 0 or
                                           step >= self.num_iterations)

  def begin(self) -> None:
    """Drops damaged or unlisted best/ checkpoints, forgets validations newer than the restored
    step (a crash after validating, before the checkpoint) and repeats a validation that was
    interrupted."""
    if self.validator is None:
      return
    step = self.step
    self.best.tidy()
    self.best.forget_after(step)
    if step > 0 and step not in self.best.history() and self._due_for_validation(step):
      self._validate(step)

  def run(self, limit: int) -> Chunk:
    """Runs 1..limit meta-iterations: one compiled loop call between events, or one step that
    writes summaries; validates when an epoch ends."""
    step = self.step
    if self._iterator is None:
      self._iterator = iter(self.strategy.distribute_datasets_from_function(
          lambda context: self.replica_dataset(context, step)))
      self._compiled = set()
    first_order = self.first_order_at(step)
    with_metrics = self.summary_every > 0 and (step + 1) % self.summary_every == 0
    # With steps_per_call > 1 every step without summaries runs in the compiled loop (also a
    # single one), so a run compiles two functions: the loop and the step with summaries.
    # With 1, the plain step replaces the loop.
    chunk = 1 if with_metrics else self._steps_until_event(step, limit)
    use_loop = not with_metrics and self.steps_per_call > 1
    guard = self.guard
    compiled = ("loop", first_order) if use_loop else ("step", first_order, with_metrics)
    started = time.perf_counter()
    if use_loop:
      result = self.train_loop_fn(first_order)(
          self._iterator, tf.constant(chunk), tf.constant(guard.consecutive),
          tf.constant(guard.limit))
      loss, skipped = result.loss, int(result.skipped)
      consecutive, last_skipped = int(result.consecutive), step + int(result.last_skipped)
      ran = int(result.steps)  # Fewer than chunk when the guard's limit stopped the loop.
    else:
      episodes = next(self._iterator)
      landscape = self.landscape_fn()(episodes) if with_metrics and self.landscape else None
      loss, metrics, finite = self.train_step_fn(first_order, with_metrics)(episodes)
      if landscape is not None:
        metrics["landscape"] = landscape
      ran, skipped = 1, 0 if bool(finite) else 1
      consecutive, last_skipped = (guard.consecutive + 1) * skipped, step + 1
    step += ran
    restart_timing = False
    if compiled not in self._compiled:
      # The first call of a compiled function includes tracing (and XLA compilation).
      self._compiled.add(compiled)
      logging.info("Compiled the %s (%s order%s) in %.1f s, with the %d meta-iteration%s of its "
                   "first call.", compiled[0], "first" if first_order else "second",
                   ", with summaries" if with_metrics else "", time.perf_counter() - started,
                   ran, "" if ran == 1 else "s")
      restart_timing = True
    if with_metrics:
      self._write_summaries(step, loss, metrics)
    # Raises NonFiniteError when training must stop (the runner then saves no checkpoint).
    guard.record(step, skipped, consecutive, last_skipped, summarize=with_metrics)
    if self._due_for_validation(step):
      # Before the runner's checkpoint: a crash in between repeats this validation.
      self._validate(step)
      restart_timing = True
    message = f"meta-loss {float(loss):.4f}"
    if guard.total:
      message += f", {guard.total} non-finite steps skipped"
    return Chunk(ran, message, restart_timing)

  # --- after training --------------------------------------------------------------------------
  def evaluate(self, num_tasks: int, steps: Sequence[int]):
    """Figures on ``num_tasks`` fixed tasks of every evaluation distribution.

    With validation (few-shot classification, the reference protocol): the best validated
    checkpoint (which stays loaded, so it is the one exported) and the top ``keep_best``
    ensembled by averaging their logits. Otherwise the final weights.
    """
    evaluations, extra = {}, {}
    entries = self.best.entries() if self.best is not None else []
    for distribution in self.domain.eval_distributions:
      logging.info("Evaluating on %d %s tasks...", num_tasks, distribution)
      if entries:
        best, ensemble = evaluation.evaluate_checkpoints(
            self.learner, self.domain, distribution, num_tasks, steps, entries,
            lambda path: checkpoints.restore_weights(self.learner, path))
        evaluations[distribution] = best
        evaluations[f"{distribution}_ensemble"] = ensemble
        extra["validation"] = {
            "split": self.domain.validation_split, "episodes": self.num_val_episodes,
            "history": {str(k): v for k, v in sorted(self.best.history().items())},
            "ensembled_checkpoints": [{"step": e["step"], "score": e["score"]}
                                      for e in entries],
            "note": (f"'{distribution}' uses the best validated checkpoint (step "
                     f"{entries[0]['step']}, which is exported); '{distribution}_ensemble' "
                     f"averages the logits of the {len(entries)} best. sqrt_p_1_minus_p is the "
                     "reference code's +- figure."),
        }
      else:
        evaluations[distribution] = evaluation.evaluate(self.learner, self.domain, distribution,
                                                        num_tasks, steps)
    return evaluations, extra

  def use_final_weights(self) -> None:
    """Loads the best validated checkpoint when the run validates (what :meth:`evaluate`
    leaves loaded); otherwise the final weights are already loaded."""
    path = validation.exported_checkpoint(self.folder)
    if self.best is not None and path:
      checkpoints.restore_weights(self.learner, path)

  def export(self, path: str, num_steps: Optional[int], config_path: str,
             max_steps: Optional[int] = None) -> str:
    return export_lib.export_for_domain(self.learner, self.domain, path, num_steps, config_path,
                                        max_steps)

  def plot(self, folder: RunFolder, evaluations, num_steps: int) -> Optional[str]:
    # The loaded weights are the ones evaluated as "test" (the best checkpoint when the run
    # validates), so the figure draws results.json's numbers.
    # With validation, the top checkpoints' ensemble ("test_ensemble") is drawn beside it.
    label = self.learner.method_name
    drawn = {label: evaluations["test"]} if evaluations.get("test") else {}
    if drawn and evaluations.get("test_ensemble"):
      drawn[f"{label}, best checkpoints ensembled"] = evaluations["test_ensemble"]
    return self.domain.plot({label: self.learner}, folder.figure("test_tasks.png"),
                            num_steps=num_steps, evaluations=drawn or None)
