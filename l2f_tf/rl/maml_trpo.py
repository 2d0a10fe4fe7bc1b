"""MAML-TRPO and MAML+L2F-TRPO, batched: the objective of every task of a meta-batch at once.

Per meta-iteration, for a meta-batch of T tasks (settings: docs/settings.md, section 5):
  1. L2F only: sample trajectories per task with theta and compute each task's embedding (the
     mean of each tensor's inner-loss gradient at theta, a constant); gamma_i = sigmoid(MLP(e_i)),
     theta_bar_i = gamma_i * theta. MAML: theta_bar_i = theta. The embedding needs data from
     theta, while the inner step should be on-policy for theta_bar, the policy it starts from.
  2. sample the support trajectories per task with theta_bar_i; advantages from a linear
     baseline refit per task, GAE and normalisation (`to_task_batch`);
  3. adapt: the learner's inner loss (`l2f_tf.rl.policy_gradient`), `learner.attenuate` and
     `inner_loop.inner_loop`, the supervised domains' code, batched over the tasks
     (`adapt_tasks`, equal to `MetaLearner.adapt` per task);
  4. sample the query trajectories per task with the adapted policy theta'_i;
  5. one TRPO step on the post-adaptation surrogate w.r.t. theta and the attenuator phi: the
     surrogate and the KL (`outer_objective`) are recomputed through steps 1-3 (embeddings held
     constant), so their gradients and the KL's curvature are second order (first order on
     request).

All tasks run as one batched graph: ``tf.vectorized_map`` turns the per-task matmuls of the
policy with per-task parameters (a leading task axis) into batched ones.
"""

from typing import TYPE_CHECKING, List, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from l2f_tf.meta import inner_loop as inner_loop_lib
from l2f_tf.meta.attenuation import gradient_mean_embedding
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import returns as returns_lib

if TYPE_CHECKING:  # The sampler needs the rl extra; this module (TensorFlow only) does not.
  from l2f_tf.rl.sampler import Trajectories


class TaskBatch(NamedTuple):
  """Trajectories of T tasks flattened to the learner's (x, y) form.

  Attributes:
    x: observations [T, N*H, obs_dim].
    y: packed (action, advantage, weight) targets [T, N*H, act_dim + 2].
    returns: undiscounted return of every trajectory [T, N] (None inside graphs).
  """
  x: tf.Tensor
  y: tf.Tensor
  returns: np.ndarray


def to_task_batch(trajectories: "Trajectories", discount: float = 0.99, gae_lambda: float = 1.0,
                  dtype=tf.float32, averaging: str = "trajectory") -> TaskBatch:
  """Advantages per task and the flattening into (x, y) for the inner / outer losses.

  ``averaging`` sets how the advantage normalisation and every loss average over the task's
  trajectories (`l2f_tf.rl.returns.step_weights`): "trajectory" (MAML-RL's) or "step".
  """
  obs, rewards, mask, actions = (tf.constant(a, dtype) for a in (
      trajectories.observations, trajectories.rewards, trajectories.mask, trajectories.actions))
  x, y = _flat_task_batch(obs, rewards, mask, actions, float(discount), float(gae_lambda),
                          averaging)
  episode_returns = np.sum(trajectories.rewards * trajectories.mask, axis=-1)
  return TaskBatch(x, y, episode_returns)


@tf.function
def _flat_task_batch(obs, rewards, mask, actions, discount: float, gae_lambda: float,
                     averaging: str):
  """(x, y) of `to_task_batch`, in one compiled graph: each task's chain of small ops
  (returns, baseline fit, GAE, normalisation) would otherwise be dispatched one by one."""
  num_tasks, per_task, horizon = mask.shape
  advantages = tf.map_fn(  # one traced chain, looped over the tasks
      lambda task: returns_lib.advantages_for_task(*task, discount, gae_lambda,
                                                   averaging=averaging).advantages,
      (obs, rewards, mask), fn_output_signature=obs.dtype)
  y = pg.pack_targets(actions, advantages, returns_lib.step_weights(mask, averaging))
  flat = lambda t: tf.reshape(t, [num_tasks, per_task * horizon, t.shape[-1]])
  return flat(obs), flat(y)


def stack_params(params_per_task: Sequence[Sequence[tf.Tensor]]) -> List[tf.Tensor]:
  """[task][tensor] -> [tensor] with a leading task axis."""
  return [tf.stack(tensors) for tensors in zip(*params_per_task)]


def tile_params(params: Sequence[tf.Tensor], num_tasks: int) -> List[tf.Tensor]:
  """The same parameters for every task, with a leading task axis."""
  return [tf.repeat(p[None], num_tasks, axis=0) for p in params]


def vectorized_forward(learner, stacked_params: Sequence[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
  """Policy outputs [T, M, out] of per-task parameters (leading task axis) on x [T, M, obs]."""
  return tf.vectorized_map(lambda args: learner.forward(args[0], args[1]),
                           (list(stacked_params), x))


def _per_task(fn, *stacked):
  """fn applied to every task's slice of the stacked tensors, batched."""
  return tf.vectorized_map(lambda args: fn(*args), stacked)


def stacked_policy_fn(learner):
  """A compiled fn: (stacked params, obs [T, N, obs]) -> (mean [T, N, act], log_std [T, act])."""

  @tf.function(reduce_retracing=True)
  def policy(stacked, observations):
    mean, log_std = pg.split_output(vectorized_forward(learner, stacked, observations))
    return mean, log_std[:, 0]

  return policy


def uses_embedding(learner) -> bool:
  """Whether the learner's attenuation is task-conditioned (needs step 1)."""
  attenuation = learner.attenuation
  return attenuation is not None and (attenuation.needs_support_gradients or
                                      attenuation.needs_support_features)


def task_embeddings(learner, probe: TaskBatch):
  """[T, E] L2F task embeddings from trajectories of theta, or None if the learner needs none.

  The gradient of the sum of the per-task inner losses w.r.t. theta tiled over tasks is every
  task's own gradient, so L2F's gradient-mean embedding takes one batched backward pass.
  """
  if not uses_embedding(learner):
    return None
  if learner.attenuation.needs_support_features:  # Table 5's prototype embedding.
    return tf.stack([learner.task_embedding(probe.x[i], probe.y[i])
                     for i in range(probe.x.shape[0])])
  theta = tile_params([tf.stop_gradient(t) for t in learner.theta()], probe.x.shape[0])
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(theta)
    outputs = vectorized_forward(learner, theta, probe.x)
    loss = tf.reduce_sum(_per_task(learner.loss_fn, probe.y, outputs))
  return tf.vectorized_map(gradient_mean_embedding, tape.gradient(loss, theta))


def attenuated_starts(learner, num_tasks: int, embeddings=None, copies=None):
  """(stacked theta_bar_i, gammas [T, L] or None): theta and None for MAML.

  With ``copies`` (per-task copies of theta, stacked), task i attenuates its own copy.
  """
  starts, gammas = zip(*[
      learner.attenuate(None, None, theta=None if copies is None else [c[i] for c in copies],
                        embedding=None if embeddings is None else embeddings[i])
      for i in range(num_tasks)])
  return stack_params(starts), None if gammas[0] is None else tf.stack(gammas)


def adapt_tasks(learner, batch: TaskBatch, embeddings=None, num_steps=None,
                first_order: bool = False, start=None, first_step: int = 0):
  """(stacked fast weights, gammas [T, L] or None) of every task from its support trajectories.

  ``MetaLearner.adapt`` for all tasks at once: the inner loss is the sum of the per-task
  losses, whose gradient w.r.t. the stacked parameters is every task's own gradient. With
  ``start`` (stacked parameters) the steps start there without attenuation (evaluation's later
  steps) and the gammas are None. ``first_step``: the index of the first step, whose learning
  rates it takes (``learner.num_inner_steps`` and beyond: ``MetaLearner.later_steps_lr``).
  """
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  gammas = None
  if start is None:
    start, gammas = attenuated_starts(learner, batch.x.shape[0], embeddings)

  def support_loss(params):
    outputs = vectorized_forward(learner, params, batch.x)
    return tf.reduce_sum(_per_task(learner.loss_fn, batch.y, outputs))

  iterates = inner_loop_lib.inner_loop(support_loss, start, num_steps, learner.inner_lrs,
                                       first_order=first_order, first_step=first_step)
  return iterates[-1], gammas


def adapted_outputs(learner, support: TaskBatch, query: TaskBatch, embeddings=None,
                    first_order: bool = False) -> tf.Tensor:
  """Outputs [T, M, 2 * action_dim] of every task's adapted policy on its query observations,
  differentiable w.r.t. theta and phi through the inner step."""
  fast, _ = adapt_tasks(learner, support, embeddings, first_order=first_order)
  return vectorized_forward(learner, fast, query.x)


def task_surrogates(query: TaskBatch, outputs: tf.Tensor, old_outputs: tf.Tensor) -> tf.Tensor:
  """[T] TRPO's surrogate loss of each task's adapted policy (``outputs``)."""
  def task_surrogate(y, output, old):
    actions = pg.unpack_targets(y)[0]
    return pg.surrogate_loss(y, output, pg.distribution(old).log_prob(actions))

  return _per_task(task_surrogate, query.y, outputs, old_outputs)


def surrogate(query: TaskBatch, outputs: tf.Tensor, old_outputs: tf.Tensor) -> tf.Tensor:
  """TRPO's surrogate loss of the adapted policies (``outputs``), averaged over tasks."""
  return tf.reduce_mean(task_surrogates(query, outputs, old_outputs))


def mean_kl(query: TaskBatch, outputs: tf.Tensor, old_outputs: tf.Tensor) -> tf.Tensor:
  """KL(pi_old || pi) of the adapted policies, step-weighted within tasks, averaged over tasks."""
  task_kl = lambda y, output, old: pg.mean_kl(old, output, pg.unpack_targets(y)[2])
  return tf.reduce_mean(_per_task(task_kl, query.y, outputs, old_outputs))


def surrogate_and_outputs(learner, support: TaskBatch, query: TaskBatch, old_outputs,
                          embeddings=None, first_order: bool = False):
  """(surrogate, outputs [T, M, 2 * action_dim]) of the adapted policies on the query
  trajectories; both are differentiable w.r.t. theta and phi through the inner step."""
  outputs = adapted_outputs(learner, support, query, embeddings, first_order)
  return surrogate(query, outputs, old_outputs), outputs


def outer_objective(learner, support: TaskBatch, query: TaskBatch, old_outputs,
                    embeddings=None, first_order: bool = False):
  """(surrogate, mean KL) of the adapted policies on the query trajectories, averaged over
  tasks; both are differentiable w.r.t. theta and phi through the inner step."""
  loss, outputs = surrogate_and_outputs(learner, support, query, old_outputs, embeddings,
                                        first_order)
  return loss, mean_kl(query, outputs, old_outputs)


def first_tasks(num_tasks: int, support: TaskBatch, query: TaskBatch, old_outputs,
                embeddings=None):
  """(support, query, old_outputs, embeddings) of the first ``num_tasks`` tasks."""
  first = lambda batch: TaskBatch(batch.x[:num_tasks], batch.y[:num_tasks], None)
  return (first(support), first(query), old_outputs[:num_tasks],
          None if embeddings is None else embeddings[:num_tasks])


def per_task_meta_gradients(learner, support: TaskBatch, query: TaskBatch, old_outputs,
                            embeddings=None, first_order: bool = False):
  """d surrogate_t / d theta for every task t (the degree of conflict's u_t, up to sign):
  [T][num inner tensors]. Each task adapts from its own copy of theta, so the gradient of the
  sum of the task surrogates w.r.t. copy t is task t's own: one batched backward pass."""
  num_tasks = support.x.shape[0]
  copies = tile_params([tf.stop_gradient(t) for t in learner.theta()], num_tasks)
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(copies)
    starts, _ = attenuated_starts(learner, num_tasks, embeddings, copies)
    fast, _ = adapt_tasks(learner, support, first_order=first_order, start=starts)
    loss = tf.reduce_sum(task_surrogates(query, vectorized_forward(learner, fast, query.x),
                                         old_outputs))
  gradients = tape.gradient(loss, copies)
  return [[g[i] for g in gradients] for i in range(num_tasks)]
