"""Both learners meet the written Learner contract, and what it promises holds for each."""

import keras
import numpy as np
import tensorflow as tf

import l2f_tf
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.contract import Adaptation, Learner
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.mlp import mlp
from tests.meta.test_leo import N, make_batch, make_leo


def metalearner(attenuation=None):
  keras.utils.set_random_seed(0)
  return MetaLearner(mlp(), lambda y, p: tf.reduce_mean(tf.square(y - p)), num_inner_steps=2,
                     attenuation=attenuation)


def test_both_learners_meet_the_contract_and_it_is_public():
  assert l2f_tf.Learner is Learner
  for learner in (metalearner(), metalearner(TaskConditionedAttenuation()), make_leo(),
                  make_leo({})):
    assert isinstance(learner, Learner), type(learner).__name__
  assert not isinstance(object(), Learner)


def test_names_variables_and_checkpoint_parts():
  maml, l2f = metalearner(), metalearner(TaskConditionedAttenuation())
  assert (maml.method_name, l2f.method_name) == ("MAML", "MAML+L2F")
  assert maml.gamma_names == [] and l2f.gamma_names == l2f.inner_variable_names
  assert maml.num_outputs == 1 and set(maml.checkpoint_parts()) == {"model", "inner_lrs"}
  assert set(l2f.checkpoint_parts()) == {"model", "inner_lrs", "attenuation"}
  assert len(l2f.meta_variables) == (len(l2f.network_variables) + len(l2f.attenuator_variables)
                                     + len(l2f.inner_lr_variables))
  leo, leo_l2f = make_leo(), make_leo({})
  assert (leo.method_name, leo_l2f.method_name) == ("LEO", "LEO+L2F")
  assert leo.gamma_names == [] and leo_l2f.gamma_names == ["latents", "weights"]
  assert leo.num_outputs == N
  assert set(leo_l2f.checkpoint_parts()) == {"model", "inner_lrs", "attenuation", "rng"}
  # LEO clips every meta-gradient (its published setting); MAML the network's only.
  assert leo.network_variables == leo.meta_variables
  assert not leo.supports_sequential_tasks and not leo.supports_landscape
  assert maml.supports_sequential_tasks and maml.supports_landscape


def test_adapt_attenuate_and_predict_follow_the_contract():
  batch = make_batch()
  leo = make_leo({})
  adaptation = leo.adapt(batch.support_x[0], batch.support_y[0], num_steps=3)
  assert isinstance(adaptation, Adaptation) and len(adaptation.iterates) == 4
  start, gamma = leo.attenuate(batch.support_x[0], batch.support_y[0])
  np.testing.assert_allclose(start[0], leo.adapt(batch.support_x[0],
                                                 batch.support_y[0]).iterates[0][0])
  assert gamma.shape == [len(leo.gamma_names)]
  logits = leo.predict(batch.support_x[0], batch.support_y[0], batch.query_x[0])
  np.testing.assert_allclose(logits, leo.forward(leo.adapt(batch.support_x[0],
                                                           batch.support_y[0],
                                                           first_order=True).fast_weights,
                                                 batch.query_x[0]))
  maml = metalearner(TaskConditionedAttenuation())
  x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
  theta_bar, gamma = maml.attenuate(x, np.sin(x))
  assert len(theta_bar) == len(maml.inner_variables) and gamma.shape == [len(maml.gamma_names)]
  assert maml.predict(x, np.sin(x), x).shape == [10, 1]
