"""The pieces of MAML-TRPO / MAML+L2F-TRPO: batched adaptation, task embeddings, the outer
objective and its gradients, the exported policy (the trainer: tests/train/)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.gaussian_policy import gaussian_policy
from l2f_tf.rl import maml_trpo
from l2f_tf.rl import policy_gradient as pg
from l2f_tf.rl import trpo


def policy_learner(l2f=True):
  keras.utils.set_random_seed(0)
  return MetaLearner(gaussian_policy(2, 2, hidden_units=(8, 8)), pg.reinforce_loss,
                     num_inner_steps=1, inner_lr=0.1,
                     attenuation=TaskConditionedAttenuation() if l2f else None)


def test_task_batch_flattens_trajectories_and_packs_targets():
  from l2f_tf.rl.sampler import Trajectories
  obs = np.random.default_rng(0).normal(size=(2, 3, 4, 2)).astype(np.float32)
  actions = np.ones((2, 3, 4, 2), np.float32)
  rewards = np.ones((2, 3, 4), np.float32)
  mask = np.ones((2, 3, 4), np.float32)
  mask[:, :, 3] = 0
  batch = maml_trpo.to_task_batch(Trajectories(obs, actions, rewards, mask, int(mask.sum())))
  assert batch.x.shape == (2, 12, 2) and batch.y.shape == (2, 12, 4)
  np.testing.assert_array_equal(batch.returns, np.full((2, 3), 3.0))
  _, advantages, weights = pg.unpack_targets(batch.y[0])
  # Per-trajectory averaging: each trajectory's 3 valid steps weigh 1/3 each.
  np.testing.assert_allclose(weights.numpy(), mask[0].reshape(-1) / 3.0, rtol=1e-6)
  assert float(tf.reduce_sum(advantages * weights)) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("averaging", ["trajectory", "step"])
def test_task_batch_graph_equals_each_task_chain_run_eagerly(averaging):
  """`to_task_batch` runs every task's advantage chain in one compiled graph; it equals
  `advantages_for_task` called task by task (float64), for batches of two shapes."""
  from l2f_tf.rl import returns as returns_lib
  from l2f_tf.rl.sampler import Trajectories
  rng = np.random.default_rng(1)
  for num_tasks, per_task, horizon in ((3, 4, 9), (2, 5, 7)):
    lengths = rng.integers(2, horizon + 1, size=(num_tasks, per_task))
    mask = (np.arange(horizon) < lengths[..., None]).astype(np.float64)
    obs = rng.normal(size=mask.shape + (2,)) * mask[..., None]
    actions = rng.normal(size=mask.shape + (2,)) * mask[..., None]
    rewards = rng.normal(size=mask.shape) * mask
    batch = maml_trpo.to_task_batch(Trajectories(obs, actions, rewards, mask, int(mask.sum())),
                                    discount=0.9, gae_lambda=0.95, dtype=tf.float64,
                                    averaging=averaging)
    for i in range(num_tasks):
      advantages = returns_lib.advantages_for_task(
          tf.constant(obs[i]), tf.constant(rewards[i]), tf.constant(mask[i]), 0.9, 0.95,
          averaging=averaging).advantages
      expected = pg.pack_targets(tf.constant(actions[i]), advantages,
                                 returns_lib.step_weights(tf.constant(mask[i]), averaging))
      np.testing.assert_allclose(batch.y[i].numpy(),
                                 tf.reshape(expected, [per_task * horizon, -1]).numpy(),
                                 rtol=1e-7, atol=1e-9)  # graph rewrites: float64 rounding
      np.testing.assert_array_equal(batch.x[i].numpy(), obs[i].reshape(-1, 2))


@pytest.mark.parametrize("l2f", [False, True])
def test_exported_policy_acts_and_adapts_like_the_learner(l2f, tmp_path):
  from l2f_tf.export import export_policy
  from l2f_tf.rl import returns as returns_lib
  learner = policy_learner(l2f)
  path = export_policy(learner, str(tmp_path / "saved_model"), 2, 2)
  loaded = tf.saved_model.load(path)
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(3, 5, 2)).astype(np.float32)
  actions = rng.normal(size=(3, 5, 2)).astype(np.float32)
  rewards = rng.normal(size=(3, 5)).astype(np.float32)
  mask = np.ones((3, 5), np.float32)
  mask[0, 3:] = 0
  query = rng.normal(size=(4, 2)).astype(np.float32)
  acted = loaded.signatures["act"](observations=tf.constant(query))
  mean, log_std = pg.split_output(learner.forward(learner.theta(), query))
  np.testing.assert_allclose(acted["mean"].numpy(), mean.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(acted["log_std"].numpy(), log_std.numpy()[0], atol=1e-7)
  adapted = loaded.adapt_and_act(obs, actions, rewards, mask, query)
  advantages = returns_lib.advantages_for_task(obs, rewards, mask).advantages
  weights = returns_lib.step_weights(tf.constant(mask))  # trajectory 0 ended after 3 steps
  y = tf.reshape(pg.pack_targets(actions, advantages, weights), [15, 4])
  fast = learner.adapt(tf.reshape(obs, [15, 2]), y).fast_weights
  expected, _ = pg.split_output(learner.forward(fast, query))
  np.testing.assert_allclose(adapted["mean"].numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
  assert not np.allclose(adapted["mean"].numpy(), acted["mean"].numpy())


def test_an_export_with_more_steps_takes_later_steps_lr_after_the_trained_one(tmp_path):
  from l2f_tf.export import export_policy, load
  from l2f_tf.rl import returns as returns_lib
  keras.utils.set_random_seed(0)
  learner = MetaLearner(gaussian_policy(2, 2, hidden_units=(8, 8)), pg.reinforce_loss,
                        num_inner_steps=1, inner_lr=0.1, later_steps_lr=0.03,
                        attenuation=TaskConditionedAttenuation())
  loaded = load(export_policy(learner, str(tmp_path / "saved_model"), 2, 2, num_steps=2))
  assert "adapts 2 steps, those after the trained 1 at lr 0.03" in loaded.description
  rng = np.random.default_rng(1)
  obs, actions = (rng.normal(size=(3, 5, 2)).astype(np.float32) for _ in range(2))
  rewards, mask = rng.normal(size=(3, 5)).astype(np.float32), np.ones((3, 5), np.float32)
  query = rng.normal(size=(4, 2)).astype(np.float32)
  advantages = returns_lib.advantages_for_task(obs, rewards, mask).advantages
  y = tf.reshape(pg.pack_targets(actions, advantages, returns_lib.step_weights(
      tf.constant(mask))), [15, 4])
  x = tf.reshape(obs, [15, 2])
  # By hand: the trained step (from theta_bar at 0.1), then one plain step at 0.03.
  first = learner.adapt(x, y, num_steps=1).fast_weights
  with tf.GradientTape() as tape:
    tape.watch(first)
    loss = learner.loss_fn(y, learner.forward(first, x))
  second = [w - 0.03 * g for w, g in zip(first, tape.gradient(loss, first))]
  expected, _ = pg.split_output(learner.forward(second, query))
  adapted = loaded.adapt_and_act(obs, actions, rewards, mask, query)
  np.testing.assert_allclose(adapted["mean"], expected.numpy(), rtol=1e-4, atol=1e-5)


def random_task_batch(rng, num_tasks=2, steps=10):
  obs = tf.constant(rng.normal(size=(num_tasks, steps, 2)))
  y = pg.pack_targets(tf.constant(rng.normal(size=(num_tasks, steps, 2))),
                      tf.constant(rng.normal(size=(num_tasks, steps))),
                      tf.ones((num_tasks, steps), tf.float64))
  return maml_trpo.TaskBatch(obs, y, None)


def float64_learner(l2f, num_inner_steps=1):
  keras.utils.set_random_seed(1)
  return MetaLearner(gaussian_policy(2, 2, hidden_units=(5, 4), dtype="float64"),
                     pg.reinforce_loss, num_inner_steps=num_inner_steps, inner_lr=0.5,
                     attenuation=TaskConditionedAttenuation(dtype="float64") if l2f else None)


def float64_tasks(l2f, rng, num_tasks=2):
  """(learner, support, query, embeddings): a float64 learner and random tasks of ``rng``."""
  learner = float64_learner(l2f)
  support = random_task_batch(rng, num_tasks=num_tasks)
  query = random_task_batch(rng, num_tasks=num_tasks)
  return learner, support, query, maml_trpo.task_embeddings(learner, support)


def shifted_old_outputs(learner, support, query, embeddings):
  """The adapted policy's outputs on the query, shifted: an old policy near the current one."""
  fast, _ = maml_trpo.adapt_tasks(learner, support, embeddings)
  return maml_trpo.vectorized_forward(learner, fast, query.x) + 0.1


@pytest.mark.parametrize("l2f", [False, True])
def test_batched_adaptation_equals_per_task_adaptation(l2f):
  learner = float64_learner(l2f, num_inner_steps=2)
  support = random_task_batch(np.random.default_rng(0), num_tasks=3)
  embeddings = maml_trpo.task_embeddings(learner, support)
  fast, gammas = maml_trpo.adapt_tasks(learner, support, embeddings)
  assert (gammas is not None) == l2f
  for t in range(3):
    adaptation = learner.adapt(support.x[t], support.y[t],
                               embedding=None if embeddings is None else embeddings[t])
    for stacked, single in zip(fast, adaptation.fast_weights):
      np.testing.assert_allclose(stacked[t].numpy(), single.numpy(), rtol=1e-12, atol=1e-15)
    if l2f:
      np.testing.assert_allclose(gammas[t].numpy(), adaptation.gamma.numpy(), rtol=1e-12)


@pytest.mark.parametrize("l2f", [False, True])
def test_outer_surrogate_gradient_through_the_inner_step_matches_finite_differences(l2f):
  # Second order: d surrogate(theta'(theta, phi)) / d (theta, phi) in float64, embeddings held
  # constant as in training; the first-order gradient differs.
  learner, support, query, embeddings = float64_tasks(l2f, np.random.default_rng(0))
  old = shifted_old_outputs(learner, support, query, embeddings)
  variables = trpo.tf_variables(learner.meta_variables)
  surrogate = lambda first_order=False: maml_trpo.outer_objective(
      learner, support, query, old, embeddings, first_order)[0]

  # One compiled function for the gradients and the perturbed values: it reads the variables
  # at every call (an eager call would trace every vectorized_map again, per perturbation).
  @tf.function
  def value_and_gradients():
    with tf.GradientTape(persistent=True) as tape:
      second, first = surrogate(), surrogate(first_order=True)
    return second, tape.gradient(second, variables), tape.gradient(first, variables)

  value = lambda: value_and_gradients()[0]
  _, grads, first_grads = value_and_gradients()
  eps, differs = 1e-6, []
  for variable, grad, first_grad in zip(variables, grads, first_grads):
    base = variable.numpy().copy()
    for i in range(min(base.size, 3)):
      values = []
      for sign in (1.0, -1.0):
        shifted = base.copy().reshape(-1)
        shifted[i] += sign * eps
        variable.assign(shifted.reshape(base.shape))
        values.append(float(value()))
      variable.assign(base)
      fd = (values[0] - values[1]) / (2 * eps)
      assert grad.numpy().reshape(-1)[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)
      differs.append(abs(first_grad.numpy().reshape(-1)[i] - fd) > 1e-6)
  assert any(differs)


@pytest.mark.parametrize("l2f", [False, True])
def test_per_task_meta_gradients_match_finite_differences_of_each_tasks_surrogate(l2f):
  # The degree of conflict's u_t for meta-RL: d surrogate_t(theta'_t(theta)) / d theta in
  # float64, second order through the inner step (and gamma_t * theta for L2F).
  learner, support, query, embeddings = float64_tasks(l2f, np.random.default_rng(3),
                                                      num_tasks=3)
  old = shifted_old_outputs(learner, support, query, embeddings)
  gradients = maml_trpo.per_task_meta_gradients(learner, support, query, old, embeddings)
  # Every task's surrogate at once (compiled; it reads the variables at each call).
  values_fn = tf.function(lambda: maml_trpo.task_surrogates(
      query, maml_trpo.adapted_outputs(learner, support, query, embeddings), old))
  eps = 1e-6
  for j, variable in enumerate(learner.inner_variables):
    base = variable.numpy().copy()
    for i in range(min(base.size, 2)):
      values = []
      for sign in (1.0, -1.0):
        shifted = base.copy().reshape(-1)
        shifted[i] += sign * eps
        variable.assign(shifted.reshape(base.shape))
        values.append(values_fn().numpy())
      variable.assign(base)
      fd = (values[0] - values[1]) / (2 * eps)
      for t in range(3):
        assert gradients[t][j].numpy().reshape(-1)[i] == pytest.approx(fd[t], rel=1e-5,
                                                                       abs=1e-9)


def test_batched_task_embeddings_equal_the_learners():
  learner = float64_learner(l2f=True)
  probe = random_task_batch(np.random.default_rng(2), num_tasks=3)
  embeddings = maml_trpo.task_embeddings(learner, probe)
  assert embeddings.shape == (3, 7)
  for t in range(3):
    np.testing.assert_allclose(embeddings[t].numpy(),
                               learner.task_embedding(probe.x[t], probe.y[t]).numpy(),
                               rtol=1e-12, atol=1e-15)
  assert maml_trpo.task_embeddings(float64_learner(l2f=False), probe) is None


def test_lvc_takes_the_reinforce_inner_step_but_changes_the_meta_gradient():
  rng = np.random.default_rng(4)
  support, query = random_task_batch(rng), random_task_batch(rng)
  learners = {}
  for name, loss in (("reinforce", pg.reinforce_loss), ("lvc", pg.lvc_loss)):
    keras.utils.set_random_seed(1)
    learners[name] = MetaLearner(gaussian_policy(2, 2, hidden_units=(5, 4), dtype="float64"),
                                 loss, num_inner_steps=1, inner_lr=0.5)
  fast = {name: maml_trpo.adapt_tasks(learner, support)[0] for name, learner in learners.items()}
  for a, b in zip(fast["reinforce"], fast["lvc"]):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
  old = maml_trpo.vectorized_forward(learners["lvc"], fast["lvc"], query.x)
  grads = {}
  for name, learner in learners.items():
    variables = trpo.tf_variables(learner.meta_variables)
    with tf.GradientTape() as tape:
      surrogate, _ = maml_trpo.outer_objective(learner, support, query, old)
    grads[name] = trpo.flatten(tape.gradient(surrogate, variables)).numpy()
  assert not np.allclose(grads["reinforce"], grads["lvc"], rtol=1e-3)


@pytest.mark.parametrize("l2f, num_tasks", [(False, 2), (True, 2), (True, 1)])
def test_fisher_products_of_the_adapted_policies_equal_finite_differences(l2f, num_tasks):
  # The Gauss-Newton products TRPO can use (MetaRLTrainer.curvature = "fisher") equal the
  # KL's Hessian through the inner step at the old policy: central differences of the KL
  # gradient along random directions, float64, for theta and (with L2F) phi. One task: the
  # vectorized KL's gradient comes back as IndexedSlices there (a meta-batch of one, or a
  # curvature subsample of one task, failed before).
  rng = np.random.default_rng(0)
  learner = float64_learner(l2f)
  support, query = random_task_batch(rng, num_tasks), random_task_batch(rng, num_tasks)
  query = maml_trpo.TaskBatch(query.x, pg.pack_targets(
      *pg.unpack_targets(query.y)[:2], tf.constant(rng.uniform(0.1, 1.0, size=(num_tasks, 10)))), None)
  embeddings = maml_trpo.task_embeddings(learner, support)
  old = maml_trpo.adapted_outputs(learner, support, query, embeddings)
  variables = trpo.tf_variables(learner.meta_variables)

  def objective():
    outputs = maml_trpo.adapted_outputs(learner, support, query, embeddings)
    return maml_trpo.surrogate(query, outputs, old), outputs

  # One compiled function, called with tensors, reading the variables at each call: eagerly,
  # every product and gradient would trace each vectorized_map again.
  @tf.function
  def product_and_kl_gradient(direction):
    """(the Fisher product with direction, d KL / d variables) at the current variables."""
    _, _, hvp = trpo.fisher_curvature(objective, lambda o: maml_trpo.mean_kl(query, o, old),
                                      variables, damping=0.0)
    with tf.GradientTape() as tape:
      kl = maml_trpo.mean_kl(
          query, maml_trpo.adapted_outputs(learner, support, query, embeddings), old)
    return hvp(direction), trpo.flatten(tape.gradient(
        kl, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO))

  base = [v.numpy().copy() for v in variables]
  eps = 1e-5
  for _ in range(2):
    direction = tf.constant(rng.normal(size=int(trpo.flatten(variables).shape[0])))
    gradients = []
    for sign in (1.0, -1.0):
      for variable, start, delta in zip(variables, base, trpo.unflatten(
          sign * eps * direction, variables)):
        variable.assign(start + delta.numpy())
      gradients.append(product_and_kl_gradient(direction)[1].numpy())
    for variable, start in zip(variables, base):
      variable.assign(start)
    expected = (gradients[0] - gradients[1]) / (2 * eps)
    got = product_and_kl_gradient(direction)[0].numpy()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max())


@pytest.mark.parametrize("l2f", [False, True])
def test_first_order_fisher_products_equal_the_exact_first_order_products(l2f):
  rng = np.random.default_rng(1)
  learner, support, query, embeddings = float64_tasks(l2f, rng)
  old = maml_trpo.adapted_outputs(learner, support, query, embeddings, first_order=True)
  variables = trpo.tf_variables(learner.meta_variables)

  def objective():
    outputs = maml_trpo.adapted_outputs(learner, support, query, embeddings, first_order=True)
    return maml_trpo.surrogate(query, outputs, old), outputs

  @tf.function
  def fisher_and_exact(v):
    """(loss, gradients, product with v) of the Fisher form and of the exact one; compiled,
    since eagerly every vectorized_map and its gradients are traced anyway, then run op by op."""
    loss, grads, fisher = trpo.fisher_curvature(
        objective, lambda o: maml_trpo.mean_kl(query, o, old), variables, damping=1e-4)
    exact_loss, exact_grads, exact = trpo.recorded_curvature(
        lambda: maml_trpo.outer_objective(learner, support, query, old, embeddings, True),
        variables, damping=1e-4)
    return (loss, grads, fisher(v)), (exact_loss, exact_grads, exact(v))

  v = tf.constant(rng.normal(size=int(trpo.flatten(variables).shape[0])))
  (loss, grads, fisher_v), (exact_loss, exact_grads, exact_v) = fisher_and_exact(v)
  np.testing.assert_allclose(loss.numpy(), exact_loss.numpy(), rtol=1e-12)
  np.testing.assert_allclose(trpo.flatten(grads).numpy(), trpo.flatten(exact_grads).numpy(),
                             rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(fisher_v.numpy(), exact_v.numpy(), rtol=1e-8, atol=1e-12)
