"""conv4 and ResNet12: output shapes, inner-loop tensor counts, batch statistics, adaptation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner, default_inner_loop_variables
from l2f_tf.models.conv4 import conv4
from l2f_tf.models.resnet12 import resnet12


def cross_entropy(y, logits):
  return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))


def test_conv4_shapes_and_six_inner_tensors():
  model = conv4(num_classes=5, image_shape=(84, 84, 3), filters=48)
  assert model(np.zeros((2, 84, 84, 3), np.float32)).shape == (2, 5)
  inner = default_inner_loop_variables(model)
  assert [tuple(v.shape) for v in inner] == [
      (3, 3, 3, 48), (3, 3, 48, 48), (3, 3, 48, 48), (3, 3, 48, 48), (5 * 5 * 48, 5), (5,)]
  assert len(model.trainable_variables) == 6 + 8  # + BN scale/offset of the 4 blocks


def test_resnet12_shapes_and_eighteen_inner_tensors():
  model = resnet12(num_classes=5, image_shape=(32, 32, 3), channels=(4, 8, 8, 16))
  assert model(np.zeros((3, 32, 32, 3), np.float32)).shape == (3, 5)
  inner = default_inner_loop_variables(model)
  assert len(inner) == 18
  assert sum(len(v.shape) == 4 for v in inner) == 16
  with pytest.raises(ValueError, match="4 block widths"):
    resnet12(channels=(4, 8))


def test_batch_norm_uses_the_current_batch():
  model = conv4(num_classes=2, image_shape=(16, 16, 1), filters=4)
  learner = MetaLearner(model, cross_entropy)
  x = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype(np.float32)
  # With batch statistics, each example's output depends on the rest of the batch.
  alone = learner.forward(learner.theta(), x[:2]).numpy()
  together = learner.forward(learner.theta(), x).numpy()[:2]
  assert not np.allclose(alone, together)


@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
@pytest.mark.parametrize("l2f", [False, True])
def test_learner_can_overfit_one_episode(backbone, l2f):
  """The learner contract: the meta-loss on one fixed episode goes down under training."""
  keras.utils.set_random_seed(0)
  if backbone == "conv4":
    model = conv4(num_classes=3, image_shape=(16, 16, 1), filters=8)
  else:
    model = resnet12(num_classes=3, image_shape=(16, 16, 1), channels=(4, 4, 8, 8))
  learner = MetaLearner(model, cross_entropy, num_inner_steps=2, inner_lr=0.1,
                        attenuation=TaskConditionedAttenuation() if l2f else None,
                        task_reduction="sum")
  assert len(learner.inner_variables) == (6 if backbone == "conv4" else 18)
  rng = np.random.default_rng(1)
  from l2f_tf.data.episode import Episode
  images = rng.normal(size=(1, 6, 16, 16, 1)).astype(np.float32)
  labels = np.array([[0, 1, 2, 0, 1, 2]])
  episode = Episode(images, labels, images, labels)
  optimizer = keras.optimizers.Adam(1e-2)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss, _ = learner.meta_loss(episode)
    grads = tape.gradient(loss, learner.meta_variables)
    optimizer.apply_gradients(zip(grads, learner.meta_variables))
    return loss

  first = float(step())
  for _ in range(30):
    last = float(step())
  assert last < 0.5 * first
  # Overfit: after adaptation every query of the episode is classified correctly.
  adapted = learner.adapt(images[0], labels[0]).fast_weights
  predicted = np.argmax(learner.forward(adapted, images[0]).numpy(), axis=-1)
  np.testing.assert_array_equal(predicted, labels[0])
