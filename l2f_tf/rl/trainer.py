"""The meta-RL training loop: sample, adapt, sample again, one TRPO step; checkpoints, logs.

Meta-iteration ``i`` draws its tasks and all its sampling noise from ``(seed, i)``, so a run
resumed from the checkpoint of iteration ``i`` continues exactly as an uninterrupted one.
Evaluation (:meth:`MetaRLTrainer.evaluate`) reports the average return on held-out tasks
before adaptation and after 1..k policy-gradient steps, each step on fresh trajectories of the
current adapted policy (L2F attenuates only before the first step).
"""

import time
from typing import Dict, Optional

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf.rl import envs
from l2f_tf.rl import meta_rl, trpo
from l2f_tf.rl.sampler import Sampler
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints
from l2f_tf.train.progress import Progress
from l2f_tf.stats import mean_and_ci95


@gin.configurable
class MetaRLTrainer:
  """MAML-TRPO (or MAML+L2F-TRPO when the learner attenuates) on a meta-RL environment.

  Args:
    learner: a MetaLearner over a Gaussian policy with ``loss_fn=reinforce_loss``.
    sampler: the :class:`~l2f_tf.rl.sampler.Sampler` (its num_tasks is the meta-batch).
    root_dir: run directory (checkpoints/, train/).
    num_iterations: meta-iterations in total (500 in the reference).
    seed: seed of the tasks and the sampling noise of every iteration.
    discount, gae_lambda: advantage estimation (0.99, 1.0).
    max_kl, cg_iterations, cg_damping, max_backtracks, backtrack_ratio: TRPO (0.01, 10, 1e-5,
      15, 0.8).
    first_order: drop the second-order terms of the inner step from the outer update.
    checkpoint_every: iterations between checkpoints (also at the end and on Ctrl-C).
    max_checkpoints: checkpoints kept.
    log_every_seconds: seconds between progress lines.
    max_seconds: stop (with a checkpoint) once this much training time has passed in this
      call, even before num_iterations (for time-boxed benchmarks); None: no limit.
  """

  def __init__(self, learner, sampler: Sampler, root_dir: str, num_iterations: int = 500,
               seed: int = 0, discount: float = 0.99, gae_lambda: float = 1.0,
               max_kl: float = 0.01, cg_iterations: int = 10, cg_damping: float = 1e-5,
               max_backtracks: int = 15, backtrack_ratio: float = 0.8, first_order: bool = False,
               checkpoint_every: int = 10, max_checkpoints: int = 3,
               log_every_seconds: float = 10.0, max_seconds: Optional[float] = None):
    self.learner, self.sampler, self.root_dir = learner, sampler, root_dir
    self.folder = RunFolder(root_dir)
    self.num_iterations, self.seed = num_iterations, seed
    self.discount, self.gae_lambda = discount, gae_lambda
    self.trpo_options = dict(max_kl=max_kl, cg_iterations=cg_iterations, damping=cg_damping,
                             max_backtracks=max_backtracks, backtrack_ratio=backtrack_ratio)
    self.first_order, self.checkpoint_every = first_order, checkpoint_every
    self.log_every_seconds = log_every_seconds
    self.max_seconds = max_seconds
    self.task_env = envs.make_env(sampler.env_name, horizon=sampler.horizon)
    self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
    parts = {"model": learner.model, "inner_lrs": learner.inner_lrs, "iteration": self.iteration}
    if learner.attenuation is not None:
      parts["attenuation"] = learner.attenuation
    self.checkpoint = tf.train.Checkpoint(**parts)
    self.manager = checkpoints.restore_or_initialize(
        self.checkpoint, self.folder.checkpoints, max_checkpoints)
    # TRPO differentiates and assigns the backend tf.Variables behind the Keras variables.
    self.tf_variables = [v.value for v in learner.meta_variables]
    self.policy = meta_rl.stacked_policy_fn(learner)
    # The whole TRPO step (gradient, conjugate gradient on KL Hessian-vector products through
    # the inner step, line search) is one compiled graph: ~10x faster than eager.
    self._trpo_step = tf.function(self._trpo_step_graph, reduce_retracing=True)
    self._adapt = tf.function(
        lambda x, y, embeddings: meta_rl.adapt_tasks(learner, meta_rl.TaskBatch(x, y, None),
                                                     embeddings), reduce_retracing=True)
    self._step_from = tf.function(
        lambda params, x, y: meta_rl.adapt_tasks(learner, meta_rl.TaskBatch(x, y, None),
                                                 num_steps=1, start=params)[0],
        reduce_retracing=True)
    self._embed_and_attenuate = tf.function(self._embed_and_attenuate_graph,
                                            reduce_retracing=True)
    self._forward = tf.function(lambda params, x: meta_rl.vectorized_forward(learner, params, x),
                                reduce_retracing=True)

  @property
  def step(self) -> int:
    return int(self.iteration.numpy())

  # --- sampling --------------------------------------------------------------------------------
  def sample(self, tasks, stacked_params, seed) -> meta_rl.TaskBatch:
    trajectories = self.sampler.sample(
        tasks, lambda obs: self.policy(stacked_params, tf.constant(obs)), seed=seed)
    return meta_rl.to_task_batch(trajectories, self.discount, self.gae_lambda,
                                 dtype=tf.as_dtype(self.learner.model.dtype))

  def _theta_for_all_tasks(self):
    return meta_rl.tile_params(self.learner.theta(), self.sampler.num_tasks)

  # --- one meta-iteration ----------------------------------------------------------------------
  def _start(self, tasks, seed):
    """(embeddings or None, stacked theta_bar): L2F probes theta's trajectories first."""
    if not meta_rl.uses_embedding(self.learner):
      return None, self._theta_for_all_tasks()
    probe = self.sample(tasks, self._theta_for_all_tasks(), seed=seed)
    return self._embed_and_attenuate(probe.x, probe.y)

  def _embed_and_attenuate_graph(self, probe_x, probe_y):
    embeddings = meta_rl.task_embeddings(self.learner, meta_rl.TaskBatch(probe_x, probe_y, None))
    return embeddings, meta_rl.start_params(self.learner, probe_x.shape[0], embeddings)

  def train_iteration(self, i: int) -> Dict[str, float]:
    """Samples, adapts and takes one TRPO step; returns the iteration's diagnostics."""
    tasks = self.task_env.sample_tasks(self.sampler.num_tasks, seed=[self.seed, i])
    embeddings, start = self._start(tasks, seed=[self.seed, i, 2])
    support = self.sample(tasks, start, seed=[self.seed, i, 0])
    fast, gammas = self._adapt(support.x, support.y, embeddings)
    query = self.sample(tasks, fast, seed=[self.seed, i, 1])
    old = self._forward(fast, query.x)
    diagnostics = self._trpo_step(support.x, support.y, query.x, query.y, old, embeddings)
    result = {"return_before_adaptation": meta_rl.summarize_returns(support)["mean"],
              "return_after_adaptation": meta_rl.summarize_returns(query)["mean"],
              "env_steps_per_second": self.sampler.last_steps_per_second}
    result.update({k: float(v) for k, v in diagnostics.items()})
    if gammas is not None:
      result["gamma"] = np.mean(gammas.numpy(), axis=0)
    return result

  def _trpo_step_graph(self, support_x, support_y, query_x, query_y, old, embeddings):
    support = meta_rl.TaskBatch(support_x, support_y, None)
    query = meta_rl.TaskBatch(query_x, query_y, None)
    # One callable for (surrogate, KL): they share the inner adaptation of every task.
    objective = lambda: meta_rl.outer_objective(self.learner, support, query, old, embeddings,
                                                self.first_order)
    return trpo.trpo_step(objective, None, self.tf_variables, **self.trpo_options)

  def _write_summaries(self, step: int, result: Dict) -> None:
    names = [n.replace(":", "_") for n in self.learner.inner_variable_names]
    for key, value in result.items():
      if key == "gamma":
        for name, g in zip(names, value):
          tf.summary.scalar(f"gamma/{name}", g, step=step)
      else:
        tf.summary.scalar(key, value, step=step)

  def train(self) -> int:
    """Trains from the restored iteration to ``num_iterations``; returns the final one."""
    start = self.step
    writer = tf.summary.create_file_writer(self.folder.train_summaries)
    progress = Progress(self.num_iterations, start, self.log_every_seconds,
                        label="meta-iteration")
    started = time.perf_counter()
    try:
      with writer.as_default():
        for i in range(start, self.num_iterations):
          result = self.train_iteration(i)
          self.iteration.assign(i + 1)
          self._write_summaries(i + 1, result)
          if (i + 1) % self.checkpoint_every == 0:
            self.manager.save(checkpoint_number=i + 1)
          progress.update(i + 1, f"return {result['return_before_adaptation']:.2f} -> "
                          f"{result['return_after_adaptation']:.2f}, kl {result['kl']:.4f}, "
                          f"{result['env_steps_per_second']:.0f} env steps/s")
          if i == start:  # The first iteration traced and compiled the TRPO step.
            progress.restart(i + 1)
          if self.max_seconds is not None and time.perf_counter() - started > self.max_seconds:
            logging.info("Stopping after %d meta-iterations: MetaRLTrainer.max_seconds = %s.",
                         i + 1, self.max_seconds)
            break
    except KeyboardInterrupt:
      self.manager.save(checkpoint_number=self.step)
      logging.warning("Interrupted: saved a checkpoint at iteration %d.", self.step)
      raise
    if self.step and (self.manager.latest_checkpoint is None or
                      not self.manager.latest_checkpoint.endswith(f"-{self.step}")):
      self.manager.save(checkpoint_number=self.step)
    writer.flush()
    return self.step

  # --- evaluation ------------------------------------------------------------------------------
  def evaluate(self, num_tasks: Optional[int] = None, num_steps: int = 3,
               seed: int = 20200614) -> Dict[str, Dict]:
    """Average return on held-out tasks after 0..num_steps adaptation steps (95% CI over tasks).

    Uses the sampler's meta-batch size per round; ``num_tasks`` (a multiple of it) tasks in
    total.
    """
    per_round = self.sampler.num_tasks
    num_tasks = num_tasks or per_round
    if num_tasks % per_round:
      raise ValueError(f"num_tasks ({num_tasks}) must be a multiple of the sampler's "
                       f"num_tasks ({per_round}).")
    returns = [[] for _ in range(num_steps + 1)]
    for r in range(num_tasks // per_round):
      tasks = self.task_env.sample_tasks(per_round, seed=[seed, r])
      # Step 0 is the policy the inner loop starts from: theta_bar for L2F, theta for MAML.
      embeddings, params = self._start(tasks, seed=[seed, r, num_steps + 1])
      for k in range(num_steps + 1):
        batch = self.sample(tasks, params, seed=[seed, r, k])
        returns[k].extend(batch.returns.mean(axis=1))
        if k == num_steps:
          break
        if k == 0:  # From theta_bar, exactly as in training.
          params, _ = self._adapt(batch.x, batch.y, embeddings)
        else:  # Later steps: plain policy-gradient steps, no attenuation.
          params = self._step_from(params, batch.x, batch.y)
    return {f"return_after_{k}_steps": {**mean_and_ci95(values),
                                        "per_task": [float(v) for v in values]}
            for k, values in enumerate(returns)}
