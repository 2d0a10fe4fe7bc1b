"""Table 5's task embedding: the mean of the class prototypes of the support set."""

import keras
import numpy as np
import tensorflow as tf

from l2f_tf.meta.attenuation import TaskConditionedAttenuation, prototype_mean_embedding
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv4
def test_prototype_mean_embedding_is_the_mean_of_class_means():
  features = tf.constant([[1.0, 0.0], [3.0, 2.0], [10.0, 4.0]])
  labels = tf.constant([0, 0, 1])
  # class 0: (2, 1); class 1: (10, 4); mean: (6, 2.5). Not the mean of all rows (4.67, 2).
  np.testing.assert_allclose(prototype_mean_embedding(features, labels, 2).numpy(), [6.0, 2.5])


def test_prototype_embedding_learner_uses_the_penultimate_features():
  keras.utils.set_random_seed(0)
  model = conv4(num_classes=3, image_shape=(16, 16, 1), filters=4)
  loss = lambda y, logits: tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
  learner = MetaLearner(model, loss, num_inner_steps=1,
                        attenuation=TaskConditionedAttenuation(embedding="prototype_mean"))
  assert learner.attenuation.hidden.kernel.shape == (4, 6)  # 1x1x4 features -> L = 6 tensors
  x = tf.random.normal([6, 16, 16, 1], seed=1)
  y = tf.constant([0, 0, 1, 1, 2, 2])
  reference = keras.Model(model.inputs, model.get_layer("flatten").output)(x, training=True)
  np.testing.assert_allclose(learner.features(learner.theta(), x).numpy(), reference.numpy(),
                             rtol=1e-5, atol=1e-6)
  theta_bar, gamma = learner.attenuate(x, y)
  assert gamma.shape == (6,)
  for t, tb, g in zip(learner.theta(), theta_bar, gamma.numpy()):
    np.testing.assert_allclose(tb.numpy(), g * t.numpy(), rtol=1e-6)
  # The query loss trains the attenuator through gamma.
  with tf.GradientTape() as tape:
    loss_value, _ = learner.task_query_loss(x, y, x, y)
  grads = tape.gradient(loss_value, learner.attenuator_variables)
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
