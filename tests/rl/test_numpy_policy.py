"""The sampler's numpy policy: the dense Gaussian policy recognised and equal to the network,
every other network left to the compiled call."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.gaussian_policy import LogStd, gaussian_policy
from l2f_tf.rl import maml_trpo, numpy_policy
from l2f_tf.rl import policy_gradient as pg


def learner_of(model):
  return MetaLearner(model, pg.reinforce_loss, num_inner_steps=1, inner_lr=0.1)


def per_task_params(learner, num_tasks, seed=1):
  """Distinct per-task parameters around theta (stacked), as after an inner step."""
  rng = np.random.default_rng(seed)
  return [np.asarray(t)[None] + 0.3 * rng.standard_normal((num_tasks,) + tuple(t.shape)).astype(
      np.asarray(t).dtype) for t in learner.theta()]


@pytest.mark.parametrize("activation,dtype", [("tanh", "float32"), ("relu", "float32"),
                                              ("tanh", "float64")])
def test_dense_policy_equals_the_network_per_task(activation, dtype):
  keras.utils.set_random_seed(0)
  learner = learner_of(gaussian_policy(3, 2, hidden_units=(6, 5), activation=activation,
                                       initial_log_std=-0.5, dtype=dtype))
  compiled = maml_trpo.stacked_policy_fn(learner)
  policy = numpy_policy.dense_policy_of(learner, compiled)
  assert policy is not None
  stacked = per_task_params(learner, 4)
  observations = np.random.default_rng(2).standard_normal((4, 7, 3)).astype(np.float32)
  mean, log_std = policy.bind(stacked)(observations)
  expected_mean, expected_log_std = compiled([tf.constant(p) for p in stacked],
                                             tf.constant(observations))
  assert mean.shape == (4, 7, 2) and log_std.shape == (4, 2)
  tolerance = 1e-5 if dtype == "float32" else 1e-12
  np.testing.assert_allclose(mean, expected_mean.numpy(), rtol=tolerance, atol=tolerance)
  np.testing.assert_allclose(log_std, expected_log_std.numpy(), rtol=tolerance, atol=tolerance)


def _skip_connection_policy():
  inputs = keras.Input((3,))
  hidden = keras.layers.Dense(4, activation="tanh")(inputs)
  mean = keras.layers.Dense(2)(keras.layers.Concatenate()([inputs, hidden]))
  log_std = LogStd(2)(mean)
  return keras.Model(inputs, keras.layers.Concatenate()([mean, log_std]))


def _layer_norm_policy():
  inputs = keras.Input((3,))
  hidden = keras.layers.LayerNormalization()(keras.layers.Dense(4, activation="tanh")(inputs))
  mean = keras.layers.Dense(2)(hidden)
  return keras.Model(inputs, keras.layers.Concatenate()([mean, LogStd(2)(mean)]))


def _swish_policy():
  return gaussian_policy(3, 2, hidden_units=(4,), activation="swish")


def _outer_only_log_std_policy():
  """The dense policy whose log-std the inner loop does not adapt."""
  model = gaussian_policy(3, 2, hidden_units=(4,))
  model.inner_loop_variables = model.trainable_variables[:-1]
  return model


@pytest.mark.parametrize("build", [_skip_connection_policy, _layer_norm_policy,
                                   _swish_policy, _outer_only_log_std_policy])
def test_other_networks_use_the_compiled_policy(build):
  keras.utils.set_random_seed(0)
  learner = learner_of(build())
  assert numpy_policy.dense_policy_of(learner, maml_trpo.stacked_policy_fn(learner)) is None


def test_a_mismatch_with_the_network_falls_back_to_the_compiled_policy():
  keras.utils.set_random_seed(0)
  learner = learner_of(gaussian_policy(3, 2, hidden_units=(4,)))
  compiled = maml_trpo.stacked_policy_fn(learner)
  wrong = lambda stacked, observations: [v + 1e-2 for v in compiled(stacked, observations)]
  assert numpy_policy.dense_policy_of(learner, compiled) is not None
  assert numpy_policy.dense_policy_of(learner, wrong) is None


def _shared_layer_policy():
  inputs = keras.Input((3,))
  shared = keras.layers.Dense(3, activation="tanh")
  mean = keras.layers.Dense(2)(shared(shared(inputs)))
  return keras.Model(inputs, keras.layers.Concatenate()([mean, LogStd(2)(mean)]))


def _log_std_first_policy():
  inputs = keras.Input((3,))
  mean = keras.layers.Dense(2)(keras.layers.Dense(4, activation="tanh")(inputs))
  return keras.Model(inputs, keras.layers.Concatenate()([LogStd(2)(mean), mean]))


@pytest.mark.parametrize("build", [_shared_layer_policy, _log_std_first_policy])
def test_other_wirings_of_the_same_layers_use_the_compiled_policy(build):
  keras.utils.set_random_seed(0)
  learner = learner_of(build())
  assert numpy_policy._structure(learner) is None  # pylint: disable=protected-access
