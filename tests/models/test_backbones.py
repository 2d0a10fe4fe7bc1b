"""conv4 and ResNet12: output shapes, inner-loop tensor counts, batch statistics, adaptation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner, default_inner_loop_variables
from l2f_tf.models.conv4 import conv4
from l2f_tf.models.pooling import MaxPool
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


@pytest.mark.parametrize("l2f", [False, True])
def test_learner_can_overfit_one_episode(l2f):
  """conv4 here; ResNet12 in tests/models/test_backbones_slow.py."""
  check_learner_can_overfit_one_episode("conv4", l2f)


def check_learner_can_overfit_one_episode(backbone, l2f):
  """The learner contract: the meta-loss on one fixed episode goes down under training.

  The cost is tracing the second-order step, so it is traced once (the optimizer's slots are
  built first: creating them in the first call would trace the step twice) and runs 11 steps
  at a strong learning rate (the loss falls to <= 0.1 of the first one)."""
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
  optimizer = keras.optimizers.Adam(3e-2)
  optimizer.build(learner.meta_variables)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss, _ = learner.meta_loss(episode)
    grads = tape.gradient(loss, learner.meta_variables)
    optimizer.apply_gradients(zip(grads, learner.meta_variables))
    return loss

  first = float(step())
  for _ in range(10):
    last = float(step())
  assert last < 0.5 * first
  assert step.experimental_get_tracing_count() == 1
  # Overfit: after adaptation every query of the episode is classified correctly.
  adapted = learner.adapt(images[0], labels[0]).fast_weights
  predicted = np.argmax(learner.forward(adapted, images[0]).numpy(), axis=-1)
  np.testing.assert_array_equal(predicted, labels[0])


def activate_then_pool_reference(model: keras.Model, negative_slope: float) -> keras.Model:
  """The same network with each 'leaky ReLU -> max-pool' in the textbook order, sharing the
  weights: rebuilt layer by layer from ``model``'s functional graph."""
  tensors = {id(model.inputs[0]): model.inputs[0]}
  for layer in model.layers[1:]:
    node = layer._inbound_nodes[0]  # pylint: disable=protected-access
    args = [tensors[id(t)] for t in node.input_tensors]
    if isinstance(layer, MaxPool):  # in the library: pool, then relu; here relu, then pool
      out = MaxPool(2)(keras.layers.LeakyReLU(negative_slope=negative_slope)(args[0]))
    elif isinstance(layer, keras.layers.LeakyReLU) and isinstance(
        node.input_tensors[0]._keras_history.operation, MaxPool):  # pylint: disable=protected-access
      out = args[0]  # already applied before the pool
    else:
      out = layer(args if len(args) > 1 else args[0])
    tensors[id(node.output_tensors[0])] = out
  return keras.Model(model.inputs, tensors[id(model.outputs[0])])


@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
def test_pooling_before_the_activation_is_the_same_function_and_gradient(backbone):
  """The backbones pool before the leaky ReLU (a quarter of the activation work); with a
  strictly increasing activation that is exactly the textbook 'activation, then pool'."""
  keras.utils.set_random_seed(0)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("float64")
  try:
    if backbone == "conv4":
      model, slope = conv4(num_classes=3, image_shape=(16, 16, 2), filters=4), 0.01
    else:
      model, slope = resnet12(num_classes=3, image_shape=(16, 16, 2), channels=(2, 3, 2, 3)), 0.1
    reference = activate_then_pool_reference(model, slope)
  finally:
    keras.config.set_dtype_policy(previous)
  for net, before_pool in ((model, ("BatchNorm", "Add")), (reference, ("LeakyReLU",))):
    kinds = [type(layer).__name__ for layer in net.layers]
    pools = [i for i, kind in enumerate(kinds) if kind == "MaxPool"]
    assert pools and all(kinds[i - 1] in before_pool for i in pools), kinds
  x = tf.constant(np.random.default_rng(1).normal(size=(6, 16, 16, 2)))
  weights = model.trainable_variables
  assert [id(v) for v in reference.trainable_variables] == [id(v) for v in weights]

  def second_order(net):
    with tf.GradientTape() as outer:
      with tf.GradientTape() as inner:
        loss = tf.reduce_sum(tf.sin(net(x)))
      grads = inner.gradient(loss, weights)
      directional = sum(tf.reduce_sum(g * g) for g in grads)
    return loss, grads, outer.gradient(directional, weights)

  ours, theirs = second_order(model), second_order(reference)
  np.testing.assert_allclose(ours[0].numpy(), theirs[0].numpy(), rtol=1e-12)
  for a, b in zip(ours[1] + ours[2], theirs[1] + theirs[2]):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
