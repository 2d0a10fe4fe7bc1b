"""MAML-TRPO and MAML+L2F-TRPO: one meta-iteration of meta-reinforcement learning.

Per meta-iteration, for a meta-batch of T tasks (REFERENCE.md 6):
  1. L2F only: sample N trajectories per task with theta and compute each task's embedding
     (the mean of each tensor's gradient of the inner REINFORCE loss at theta, a constant);
     gamma_i = sigmoid(MLP(e_i)), theta_bar_i = gamma_i * theta. MAML: theta_bar_i = theta.
  2. sample N trajectories per task with theta_bar_i: the task's "support set"; advantages
     from a linear baseline refit per task, GAE and normalisation;
  3. adapt: one (or more) policy-gradient steps from theta_bar_i on the support set, with the
     REINFORCE loss (`l2f_tf.rl.policy_gradient.reinforce_loss`) - `MetaLearner.adapt` with
     the embedding of step 1, i.e. the same inner-loop code as the supervised domains;
  4. sample N trajectories per task with the adapted policy theta'_i (the "query set");
  5. one TRPO step on the post-adaptation surrogate w.r.t. theta and the attenuator phi: the
     surrogate and the KL constraint are recomputed through steps 1-3 (embeddings held
     constant), so their gradients and the KL's Hessian-vector products are second order
     (first order on request).

Step 1 exists because the embedding needs a gradient at theta, hence data from theta, while
the inner step should be on-policy for theta_bar, the policy it starts from.

The policy runs in TensorFlow with a different fast-weight set per task: `stacked_policy_fn`
maps [T, N, obs] observations to per-task Gaussian parameters in one compiled call per
environment step.
"""

from typing import Dict, List, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import returns as returns_lib
from l2f_tf.rl.sampler import Trajectories


class TaskBatch(NamedTuple):
  """Trajectories of T tasks flattened to the learner's (x, y) form.

  Attributes:
    x: observations [T, N*H, obs_dim].
    y: packed (action, advantage, mask) targets [T, N*H, act_dim + 2].
    returns: undiscounted return of every trajectory [T, N].
  """
  x: tf.Tensor
  y: tf.Tensor
  returns: np.ndarray


def to_task_batch(trajectories: Trajectories, discount: float = 0.99, gae_lambda: float = 1.0,
                  dtype=tf.float32) -> TaskBatch:
  """Advantages per task and the flattening into (x, y) for the inner / outer losses."""
  obs = tf.constant(trajectories.observations, dtype)
  rewards = tf.constant(trajectories.rewards, dtype)
  mask = tf.constant(trajectories.mask, dtype)
  actions = tf.constant(trajectories.actions, dtype)
  num_tasks, per_task, horizon = trajectories.mask.shape
  advantages = tf.stack([
      returns_lib.advantages_for_task(obs[i], rewards[i], mask[i], discount,
                                      gae_lambda).advantages for i in range(num_tasks)])
  y = pg.pack_targets(actions, advantages, mask)
  flat = lambda t: tf.reshape(t, [num_tasks, per_task * horizon, t.shape[-1]])
  episode_returns = np.sum(trajectories.rewards * trajectories.mask, axis=-1)
  return TaskBatch(flat(obs), flat(y), episode_returns)


def stack_params(params_per_task: Sequence[Sequence[tf.Tensor]]) -> List[tf.Tensor]:
  """[task][tensor] -> [tensor] with a leading task axis."""
  return [tf.stack(tensors) for tensors in zip(*params_per_task)]


def tile_params(params: Sequence[tf.Tensor], num_tasks: int) -> List[tf.Tensor]:
  """The same parameters for every task, with a leading task axis."""
  return [tf.repeat(p[None], num_tasks, axis=0) for p in params]


def stacked_policy_fn(learner):
  """A compiled fn: (stacked params, obs [T, N, obs]) -> (mean [T, N, act], log_std [T, act])."""

  @tf.function(reduce_retracing=True)
  def policy(stacked, observations):
    outputs = tf.vectorized_map(lambda args: learner.forward(args[0], args[1]),
                                (list(stacked), observations))
    mean, log_std = pg.split_output(outputs)
    return mean, log_std[:, 0]

  return policy


def uses_embedding(learner) -> bool:
  """Whether the learner's attenuation is task-conditioned (needs step 1)."""
  attenuation = learner.attenuation
  return attenuation is not None and (attenuation.needs_support_gradients or
                                      attenuation.needs_support_features)


def task_embeddings(learner, probe: TaskBatch):
  """[T, E] L2F task embeddings from trajectories of theta, or None if the learner needs none."""
  if not uses_embedding(learner):
    return None
  return tf.stack([learner.task_embedding(probe.x[i], probe.y[i])
                   for i in range(probe.x.shape[0])])


def start_params(learner, num_tasks: int, embeddings=None) -> List[tf.Tensor]:
  """Stacked theta_bar_i (theta for MAML): the policies that sample the support sets."""
  return stack_params([
      learner.attenuate(None, None, embedding=None if embeddings is None else embeddings[i])[0]
      for i in range(num_tasks)])


def adapt_tasks(learner, batch: TaskBatch, embeddings=None, num_steps=None,
                first_order: bool = False):
  """Per-task fast weights and gammas from the tasks' support trajectories."""
  adaptations = [learner.adapt(batch.x[i], batch.y[i], num_steps=num_steps,
                               first_order=first_order,
                               embedding=None if embeddings is None else embeddings[i])
                 for i in range(batch.x.shape[0])]
  gammas = [a.gamma for a in adaptations]
  return [a.fast_weights for a in adaptations], gammas


def outer_objective(learner, support: TaskBatch, query: TaskBatch, old_outputs,
                    embeddings=None, first_order: bool = False):
  """(surrogate, mean KL) of the adapted policies on the query trajectories, averaged over
  tasks; both are differentiable w.r.t. theta and phi through the inner step."""
  fast, _ = adapt_tasks(learner, support, embeddings, first_order=first_order)
  surrogates, kls = [], []
  for i, params in enumerate(fast):
    outputs = learner.forward(params, query.x[i])
    actions, _, mask = pg.unpack_targets(query.y[i])
    mean_old, log_std_old = pg.split_output(old_outputs[i])
    old_log_prob = pg.log_prob(actions, mean_old, log_std_old)
    surrogates.append(pg.surrogate_loss(query.y[i], outputs, old_log_prob))
    kls.append(pg.mean_kl(old_outputs[i], outputs, mask))
  return tf.reduce_mean(tf.stack(surrogates)), tf.reduce_mean(tf.stack(kls))


def summarize_returns(batch: TaskBatch) -> Dict[str, float]:
  """Mean undiscounted return per trajectory and its 95% CI over tasks."""
  per_task = batch.returns.mean(axis=1)
  n = len(per_task)
  std = per_task.std(ddof=1) if n > 1 else 0.0
  return {"mean": float(per_task.mean()), "ci95": float(1.96 * std / np.sqrt(n)), "n": n}
