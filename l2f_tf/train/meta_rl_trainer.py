"""Meta-RL training (MAML-TRPO, MAML+L2F-TRPO): the meta-iteration and the evaluation.

The :class:`~l2f_tf.train.runner.Runner` runs the loop (checkpoints, progress, Ctrl-C); this
trainer supplies one meta-iteration (sample, adapt, sample again, one TRPO step), the
evaluation on held-out tasks, the export (`l2f_tf.export.policy`) and the figure (return vs
adaptation steps; for 2D navigation also paths before and after one step, with the goals).

Meta-iteration ``i`` draws its tasks and all its sampling noise from ``(seed, i)``, so a run
resumed from the checkpoint of iteration ``i`` continues exactly as an uninterrupted one.
Evaluation (:meth:`MetaRLTrainer.evaluate`) reports the average return on held-out tasks
before adaptation and after 1..k policy-gradient steps, each step on fresh trajectories of the
current adapted policy (L2F attenuates only before the first step).

A meta-iteration whose surrogate loss, policy gradient or TRPO step is not finite leaves the
weights alone (the counter still advances); the trainer's
:class:`~l2f_tf.train.guard.NonFiniteGuard` counts it and stops training per its policy.
"""

import functools
from typing import Dict, NamedTuple, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf import plots, smoke
from l2f_tf.domains.meta_rl import MetaRLDomain
from l2f_tf.export.policy import export_policy
from l2f_tf.meta import diagnostics
from l2f_tf.progress import Progress, rate_text_of
from l2f_tf.rl import maml_trpo, numpy_policy, trpo
from l2f_tf.run_folder import RunFolder
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import checkpoints
from l2f_tf.train.guard import NonFiniteGuard
from l2f_tf.train.runner import Chunk, write_per_tensor

RETURN_DEFINITION = "average undiscounted return per trajectory"
CURVATURES = ("hessian", "fisher")


class IterationBatch(NamedTuple):
  """What one TRPO step needs: support and query trajectories (``maml_trpo.TaskBatch``), the
  adapted policies' outputs on the query observations [T, M, 2 * action_dim] (pi_old), the
  L2F task embeddings and the attenuation gammas [T, L] (both None for MAML)."""
  support: maml_trpo.TaskBatch
  query: maml_trpo.TaskBatch
  old_outputs: tf.Tensor
  embeddings: Optional[tf.Tensor]
  gammas: Optional[tf.Tensor]


def later_steps_rate(rates) -> object:
  """What the steps after the trained ones take (``InnerLearningRates``): a number, or a
  phrase for learned per-step rates."""
  if rates.later_lr is not None:
    return rates.later_lr
  return "the last trained step's learned rates" if rates.learnable else rates.inner_lr


class HeldOutReturns(NamedTuple):
  """Per-task average returns on held-out tasks: ``after_steps[k]`` after k adaptation steps
  (step 0: the policy adaptation starts from, theta_bar for L2F), and for a learner with a
  task embedding (L2F) ``unattenuated``, theta's returns before attenuation: the trajectories
  the embedding is computed from. Their difference at 0 steps separates what attenuation does
  to the starting policy from what it does to adaptation."""
  after_steps: list
  unattenuated: Optional[np.ndarray]


@gin.configurable
class MetaRLTrainer:
  """MAML-TRPO (or MAML+L2F-TRPO when the learner attenuates) on a meta-RL environment.

  Args:
    learner: a MetaLearner over the domain's Gaussian policy with the domain's inner loss.
    domain: the `l2f_tf.domains.meta_rl.MetaRLDomain` (environment, meta-batch, sampler).
    root_dir: the run directory.
    num_iterations: meta-iterations in total (500 in the reference).
    seed: seed of the tasks and the sampling noise of every iteration.
    discount, gae_lambda: advantage estimation (0.99, 1.0).
    max_kl, cg_iterations, cg_damping, max_backtracks, backtrack_ratio: TRPO (0.01, 10, 1e-5,
      15, 0.8).
    first_order: drop the second-order terms of the inner step from the outer update.
    curvature: how conjugate gradient multiplies by the KL's curvature. "fisher" (default):
      the Gauss-Newton form J^T M J v (J: Jacobian of the adapted policies' outputs through
      the inner step, M: the Gaussian KL's Hessian in those outputs), which is the KL's
      Hessian at the old policy, where TRPO takes it, and cheaper; "hessian": differentiates
      the KL gradient through the inner step once more (third order). Timings of both:
      docs/meta_rl.md, "Curvature products".
    curvature_subsample: the fraction of each meta-batch's tasks (the first ones, at least one)
      whose trajectories the curvature products use: TRPO's products on a subsample of the
      data (Schulman et al. 2015). The gradient and the line search use every task. 1.0 (the
      reference): all of them. Its savings and its effect on learning: docs/meta_rl.md,
      "Curvature products on a subsample".
    conflict_every: every this many meta-iterations, log the degree of conflict per layer
      (``l2f_tf.meta.diagnostics``) between the tasks' meta-gradients of the TRPO surrogate, at
      theta before the step; 0 turns it off.
    guard: what to do with a meta-iteration whose surrogate loss, policy gradient or TRPO step
      is not finite (no line search runs for it, so the weights are never changed): a
      :class:`~l2f_tf.train.guard.NonFiniteGuard`; None: one configured in gin
      (``NonFiniteGuard.policy``, ``NonFiniteGuard.max_consecutive``; by default skip the
      iteration, stop after 10 in a row).
  """

  def __init__(self, learner, domain: MetaRLDomain, root_dir: str, num_iterations: int = 500,
               seed: int = 0, discount: float = 0.99, gae_lambda: float = 1.0,
               max_kl: float = 0.01, cg_iterations: int = 10, cg_damping: float = 1e-5,
               max_backtracks: int = 15, backtrack_ratio: float = 0.8,
               first_order: bool = False, curvature: str = "fisher",
               curvature_subsample: float = 1.0, conflict_every: int = 10,
               guard: Optional[NonFiniteGuard] = None):
    if curvature not in CURVATURES:
      raise ValueError(f"MetaRLTrainer.curvature = {curvature!r}; use one of {CURVATURES}.")
    if not 0.0 < curvature_subsample <= 1.0:
      raise ValueError(f"MetaRLTrainer.curvature_subsample must be in (0, 1] (the fraction of "
                       f"the meta-batch's tasks the curvature products use), got "
                       f"{curvature_subsample}.")
    if not isinstance(domain, MetaRLDomain):
      raise ValueError(f"MetaRLTrainer trains meta-RL domains; {type(domain).__name__} is not "
                       "one. For supervised domains bind run_experiment.trainer = @Trainer.")
    if tf.distribute.has_strategy():
      raise ValueError(
          f"MetaRLTrainer does not support strategy "
          f"{type(tf.distribute.get_strategy()).__name__}: its sampling runs in local worker "
          "processes and its TRPO step on one device. Use --strategy=default (the default).")
    if conflict_every < 0:
      raise ValueError(f"MetaRLTrainer.conflict_every must be >= 0, got {conflict_every}.")
    self.learner, self.domain, self.sampler = learner, domain, domain.sampler
    self.folder = RunFolder(root_dir)
    self.num_iterations, self.seed = smoke.iterations(num_iterations), seed
    self.discount, self.gae_lambda = discount, gae_lambda
    self.trpo_options = dict(max_kl=max_kl, cg_iterations=cg_iterations, damping=cg_damping,
                             max_backtracks=max_backtracks, backtrack_ratio=backtrack_ratio)
    self.first_order, self.curvature = first_order, curvature
    self.curvature_subsample = curvature_subsample
    self._warn_if_the_curvature_sees_too_little(learner, domain)
    self.conflict_every = conflict_every
    self.guard = NonFiniteGuard() if guard is None else guard
    from l2f_tf.rl import envs  # pylint: disable=g-import-not-at-top  (needs the rl extra)
    self.task_env = envs.make_env(self.sampler.env_name, horizon=self.sampler.horizon)
    self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
    self.checkpoint = checkpoints.make_checkpoint(learner, iteration=self.iteration,
                                                  **self.guard.checkpoint_parts())
    # TRPO differentiates and assigns the backend tf.Variables behind the Keras variables.
    self.tf_variables = [v.value for v in learner.meta_variables]
    self.policy = maml_trpo.stacked_policy_fn(learner)
    # The sampler's per-step calls in numpy when the network is the plain dense policy.
    self._numpy_policy = numpy_policy.dense_policy_of(learner, self.policy)
    # Compiled graphs; the TRPO step (gradient, conjugate gradient on curvature products
    # through the inner step, line search) is one of them.
    compiled = lambda fn: tf.function(fn, reduce_retracing=True)
    self._trpo_step = compiled(self._trpo_step_graph)
    self._adapt = compiled(lambda batch, embeddings: maml_trpo.adapt_tasks(learner, batch,
                                                                           embeddings))
    # The plain policy-gradient step of evaluation's later steps: (params, batch) -> params.
    # Its index is past the trained steps: MetaLearner.later_steps_lr when set.
    self.step_from = compiled(lambda params, batch: maml_trpo.adapt_tasks(
        learner, batch, num_steps=1, start=params, first_step=learner.num_inner_steps)[0])
    self._embed_and_attenuate = compiled(self._embed_and_attenuate_graph)
    self._conflict = compiled(lambda batch: diagnostics.degree_of_conflict(
        maml_trpo.per_task_meta_gradients(learner, batch.support, batch.query,
                                          batch.old_outputs, batch.embeddings,
                                          self.first_order)))
    self._forward = compiled(lambda params, x: maml_trpo.vectorized_forward(learner, params, x))

  @property
  def step(self) -> int:
    return int(self.iteration.numpy())

  # --- sampling --------------------------------------------------------------------------------
  def trajectories(self, tasks, stacked_params, seed):
    """The sampler's `Trajectories` of the tasks' policies (per-task parameters, stacked)."""
    if self._numpy_policy is not None:
      return self.sampler.sample(tasks, self._numpy_policy.bind(stacked_params), seed=seed)
    return self.sampler.sample(
        tasks, lambda obs: self.policy(stacked_params, tf.constant(obs)), seed=seed)

  def task_batch(self, trajectories) -> maml_trpo.TaskBatch:
    return maml_trpo.to_task_batch(trajectories, self.discount, self.gae_lambda,
                                   dtype=tf.as_dtype(self.learner.model.dtype),
                                   averaging=self.domain.averaging)

  def sample(self, tasks, stacked_params, seed) -> maml_trpo.TaskBatch:
    return self.task_batch(self.trajectories(tasks, stacked_params, seed))

  def start_policies(self, tasks, seed):
    """(embeddings or None, stacked theta_bar, the probe or None): L2F probes theta's
    trajectories first (the probe, a ``TaskBatch`` sampled with ``seed``)."""
    theta = maml_trpo.tile_params(self.learner.theta(), len(tasks))
    if not maml_trpo.uses_embedding(self.learner):
      return None, theta, None
    probe = self.sample(tasks, theta, seed=seed)
    return (*self._embed_and_attenuate(probe), probe)

  def _embed_and_attenuate_graph(self, probe):
    embeddings = maml_trpo.task_embeddings(self.learner, probe)
    return embeddings, maml_trpo.attenuated_starts(self.learner, probe.x.shape[0], embeddings)[0]

  # --- one meta-iteration ----------------------------------------------------------------------
  def sample_iteration(self, i: int) -> IterationBatch:
    """Meta-iteration i's data: its tasks' support trajectories (of theta, or theta_bar for
    L2F), the adapted policies' query trajectories and their outputs there."""
    tasks = self.task_env.sample_tasks(self.domain.meta_batch_size, seed=[self.seed, i])
    embeddings, start, _ = self.start_policies(tasks, seed=[self.seed, i, 2])
    support = self.sample(tasks, start, seed=[self.seed, i, 0])
    fast, gammas = self._adapt(support, embeddings)
    query = self.sample(tasks, fast, seed=[self.seed, i, 1])
    return IterationBatch(support, query, self._forward(fast, query.x), embeddings, gammas)

  def update(self, batch: IterationBatch) -> Dict[str, tf.Tensor]:
    """One compiled TRPO step of theta (and phi) on the batch; its diagnostics."""
    return self._trpo_step(batch)

  def degree_of_conflict(self, batch: IterationBatch) -> np.ndarray:
    """[num inner tensors] degree of conflict (degrees) of the batch's tasks at theta."""
    return self._conflict(batch).numpy()

  def train_iteration(self, i: int) -> Dict[str, float]:
    """Samples, adapts and takes one TRPO step; returns the iteration's diagnostics (with
    ``finite``: 1.0 when the step's loss, gradient and direction were finite, else 0.0 and
    the weights are unchanged)."""
    batch = self.sample_iteration(i)
    conflict = None
    if self.conflict_every and (i + 1) % self.conflict_every == 0:
      conflict = self.degree_of_conflict(batch)  # Before the step changes theta.
    metrics = self.update(batch)
    result = {"return_before_adaptation": float(batch.support.returns.mean()),
              "return_after_adaptation": float(batch.query.returns.mean()),
              "env_steps_per_second": self.sampler.last_steps_per_second}
    result.update({k: float(v) for k, v in metrics.items()})
    if batch.gammas is not None:
      result["gamma"] = np.mean(batch.gammas.numpy(), axis=0)
    if conflict is not None:
      result["degree_of_conflict"] = conflict
    return result

  def _warn_if_the_curvature_sees_too_little(self, learner, domain: MetaRLDomain) -> None:
    """A warning when the subsample's action means are fewer than the weights: its curvature
    is then singular, and TRPO's steps along what it does not see are rejected."""
    tasks = self.curvature_tasks(domain.meta_batch_size)
    if tasks == domain.meta_batch_size:
      return
    means = tasks * domain.trajectories_per_task * domain.horizon * (
        learner.model.outputs[0].shape[-1] // 2)
    weights = sum(int(np.prod(v.shape)) for v in learner.meta_variables)
    if means < weights:
      logging.warning(
          "MetaRLTrainer.curvature_subsample = %s: the curvature products see %d tasks x %d "
          "trajectories x %d steps, %d action means for %d weights, so their curvature is "
          "singular and TRPO will reject most steps; raise curvature_subsample (1.0: all "
          "tasks).", self.curvature_subsample, tasks, domain.trajectories_per_task,
          domain.horizon, means, weights)

  def curvature_tasks(self, num_tasks: int) -> int:
    """How many of a meta-batch's ``num_tasks`` tasks the curvature products use."""
    return max(1, int(round(self.curvature_subsample * num_tasks)))

  def _trpo_step_graph(self, batch: IterationBatch):
    data = tuple(batch[:4])  # support, query, old outputs, embeddings
    num_tasks = int(data[0].x.shape[0])
    tasks = self.curvature_tasks(num_tasks)
    subsample = maml_trpo.first_tasks(tasks, *data) if tasks < num_tasks else None
    if self.curvature == "hessian":  # (surrogate, KL) share every task's inner adaptation.
      objective = lambda d: functools.partial(maml_trpo.outer_objective, self.learner, *d,
                                              first_order=self.first_order)
      return trpo.trpo_step(
          objective(data), None, self.tf_variables, **self.trpo_options,
          curvature_objective=None if subsample is None else objective(subsample))
    loss = lambda d: functools.partial(maml_trpo.surrogate_and_outputs, self.learner, *d,
                                       first_order=self.first_order)
    kl = lambda d: functools.partial(maml_trpo.mean_kl, d[1], old_outputs=d[2])
    return trpo.trpo_step(
        loss(data), None, self.tf_variables, **self.trpo_options, output_kl=kl(data),
        curvature_objective=None if subsample is None else loss(subsample),
        curvature_output_kl=None if subsample is None else kl(subsample))

  def _write_summaries(self, step: int, result: Dict) -> None:
    for key, value in result.items():
      if key in ("gamma", "degree_of_conflict"):
        write_per_tensor(key, self.learner.inner_variable_names, value, step)
      else:
        tf.summary.scalar(key, value, step=step)

  def begin(self) -> None:
    """Nothing to prepare: every iteration draws its tasks and noise from (seed, iteration)."""

  def run(self, limit: int) -> Chunk:
    """One meta-iteration (the TRPO step is the unit of work; ``limit`` is at least 1)."""
    del limit
    i = self.step
    result = self.train_iteration(i)
    finite = result.pop("finite") == 1.0
    self.iteration.assign(i + 1)  # Also when the step was skipped: its tasks were drawn.
    self._write_summaries(i + 1, result)
    # Raises NonFiniteError when training must stop (the runner then saves no checkpoint).
    self.guard.after_step(i + 1, finite, summarize=True)
    message = (f"return {result['return_before_adaptation']:.2f} -> "
               f"{result['return_after_adaptation']:.2f}, kl {result['kl']:.4f}, "
               f"{rate_text_of(result['env_steps_per_second'], 'env step')}")
    if self.guard.total:
      message += f", {self.guard.total} non-finite iterations skipped"
    return Chunk(1, message)

  # --- evaluation ------------------------------------------------------------------------------
  def evaluate(self, num_tasks: int, steps: Sequence[int] = (1, 2, 3)):
    """({"test": figures}, extra results): the average return on ``num_tasks`` held-out tasks
    (the domain's ``eval_seed``) after 0 and each of ``steps`` adaptation steps; for L2F also
    theta's return before attenuation (``return_after_0_steps_without_attenuation``)."""
    returns = self.held_out_returns(num_tasks, max(steps), self.domain.eval_seed)
    figure = lambda values: {**mean_and_ci95(values), "per_task": [float(v) for v in values]}
    figures = {f"return_after_{k}_steps": figure(values)
               for k, values in enumerate(returns.after_steps) if k == 0 or k in steps}
    if returns.unattenuated is not None:
      figures["return_after_0_steps_without_attenuation"] = figure(returns.unattenuated)
    return {"test": figures}, {"metric_definition": RETURN_DEFINITION,
                               "inner_objective": self.domain.inner_objective,
                               "averaging": self.domain.averaging,
                               "later_steps_lr": later_steps_rate(self.learner.inner_lrs)}

  def held_out_returns(self, num_tasks: Optional[int] = None, num_steps: int = 3,
                       seed: int = 20200614) -> HeldOutReturns:
    """Per-task average returns after 0..num_steps adaptation steps (and L2F's before
    attenuation): :class:`HeldOutReturns`.

    Each step is on fresh trajectories of the current adapted policy; L2F attenuates only
    before the first. The first step is the trained one; later ones take
    ``MetaLearner.later_steps_lr`` when it is set. Tasks come ``meta_batch_size`` at a time, so
    ``num_tasks`` must be a multiple of it.
    """
    per_round = self.domain.meta_batch_size
    num_tasks = smoke.tasks(num_tasks or per_round, multiple=per_round)
    if num_tasks % per_round:
      raise ValueError(f"The number of evaluation tasks ({num_tasks}, "
                       f"run_experiment.num_eval_tasks) must be a multiple of "
                       f"MetaRLDomain.meta_batch_size ({per_round}).")
    returns, unattenuated = [[] for _ in range(num_steps + 1)], []
    progress = Progress(num_tasks, label="held-out task", unit="task")
    for r in range(num_tasks // per_round):
      tasks = self.task_env.sample_tasks(per_round, seed=[seed, r])
      # Step 0 is the policy the inner loop starts from: theta_bar for L2F, theta for MAML.
      embeddings, params, probe = self.start_policies(tasks, seed=[seed, r, num_steps + 1])
      if probe is not None:
        unattenuated.extend(probe.returns.mean(axis=1))
      for k in range(num_steps + 1):
        batch = self.sample(tasks, params, seed=[seed, r, k])
        returns[k].extend(batch.returns.mean(axis=1))
        if k == num_steps:
          break
        if k == 0:  # From theta_bar, exactly as in training.
          params, _ = self._adapt(batch, embeddings)
        else:  # Later steps: plain policy-gradient steps, no attenuation.
          params = self.step_from(params, batch)
      progress.update((r + 1) * per_round)
    return HeldOutReturns([np.asarray(values) for values in returns],
                          np.asarray(unattenuated) if unattenuated else None)

  def use_final_weights(self) -> None:
    """The final weights are the ones exported, and they are loaded already."""

  def export(self, path: str, num_steps: Optional[int], config_path: str,
             max_steps: Optional[int] = None) -> str:
    del max_steps  # A policy has no step-count signature.
    return export_policy(self.learner, path, self.sampler.observation_size,
                         self.sampler.action_size, num_steps=num_steps, discount=self.discount,
                         gae_lambda=self.gae_lambda, config_path=config_path,
                         averaging=self.domain.averaging, name=self.domain.name)

  def plot(self, folder: RunFolder, evaluations, num_steps: int) -> str:
    """returns.png: return vs adaptation steps; for 2D navigation also paths of a few
    held-out tasks before and after one step."""
    del num_steps  # The evaluation's steps.
    paths = self.navigation_paths() if self.sampler.env_name == "Navigation2D" else None
    return plots.plot_returns(folder.figure("returns.png"),
                              {self.learner.method_name: evaluations["test"]},
                              self.domain.name, paths)

  def navigation_paths(self, num_tasks: int = 3, seed: int = 7):
    """[(positions before adaptation, positions after one step, goal)] of the first
    trajectory of a few held-out tasks (2D navigation)."""
    per_round = self.domain.meta_batch_size
    tasks = self.task_env.sample_tasks(per_round, seed=[seed, 0])
    embeddings, start, _ = self.start_policies(tasks, seed=[seed, 0, 9])
    before = self.trajectories(tasks, start, seed=[seed, 0, 0])
    adapted, _ = self._adapt(self.task_batch(before), embeddings)
    after = self.trajectories(tasks, adapted, seed=[seed, 0, 1])
    first = lambda trajectories, i: trajectories.observations[i, 0][trajectories.mask[i, 0] > 0]
    return [(first(before, i), first(after, i), np.asarray(tasks[i]["goal"]))
            for i in range(min(num_tasks, per_round))]
