"""The inductive batch-norm modes ("support", TaskNorm-I): values against numpy written from
the definitions, a query's prediction independent of the other queries, and bad settings."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.learner import MetaLearner
from l2f_tf.support_set import current_support_rows, mode_of, support_rows
from l2f_tf.models import support_statistics as ss
from l2f_tf.models.batch_norm import BatchNorm, batch_norm
from l2f_tf.models.conv4 import conv4
from l2f_tf.models.resnet12 import resnet12

EPSILON = 1e-5


def activations(shape=(7, 4, 5, 3), seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(1.0, 2.0, size=shape), rng.normal(1.0, 0.5, size=shape[-1]),
          rng.normal(0.0, 0.5, size=shape[-1]))


@pytest.mark.parametrize("count", [3, 7])
def test_support_batch_norm_uses_the_first_rows_statistics(count):
  x, gamma, beta = activations()
  support = x[:count]
  mean, var = support.mean(axis=(0, 1, 2)), support.var(axis=(0, 1, 2))
  expected = (x - mean) / np.sqrt(var + EPSILON) * gamma + beta
  got = ss.support_batch_norm(tf.constant(x), gamma, beta, EPSILON, count)
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_support_batch_norm_of_the_whole_batch_is_batch_norm():
  x, gamma, beta = activations()
  np.testing.assert_allclose(ss.support_batch_norm(tf.constant(x), gamma, beta, EPSILON, None),
                             batch_norm(tf.constant(x), gamma, beta, EPSILON), atol=1e-12)


@pytest.mark.parametrize("count", [2, None])
def test_task_norm_i_blends_support_and_instance_moments(count):
  x, gamma, beta = activations()
  scale, offset = 0.3, -0.4
  context = x if count is None else x[:count]
  alpha = 1.0 / (1.0 + np.exp(-(scale * len(context) + offset)))
  batch_mean, batch_var = context.mean(axis=(0, 1, 2)), context.var(axis=(0, 1, 2))
  inst_mean = x.mean(axis=(1, 2), keepdims=True)
  inst_var = x.var(axis=(1, 2), keepdims=True)
  mean = alpha * batch_mean + (1 - alpha) * inst_mean
  var = (alpha * (batch_var + (batch_mean - mean) ** 2)
         + (1 - alpha) * (inst_var + (inst_mean - mean) ** 2))
  expected = (x - mean) / np.sqrt(var + EPSILON) * gamma + beta
  got = ss.task_norm_i(tf.constant(x), gamma, beta, tf.constant(scale, tf.float64),
                       tf.constant(offset, tf.float64), EPSILON, count)
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_layer_modes_follow_the_support_rows():
  x, _, _ = activations()
  x = tf.constant(x, tf.float32)
  transductive, support = BatchNorm(), BatchNorm(mode="support")
  with support_rows(3):
    inside = (transductive(x), support(x))
  np.testing.assert_allclose(inside[0], transductive(x), atol=1e-6)  # ignores the rows
  np.testing.assert_allclose(support(x), transductive(x), atol=1e-5)  # whole batch outside
  np.testing.assert_allclose(inside[1], ss.support_batch_norm(x, 1.0, 0.0, EPSILON, 3),
                             atol=1e-5)
  assert current_support_rows() is None


def test_bad_modes_are_refused_with_the_fix():
  with pytest.raises(ValueError, match="BatchNorm.mode must be one of"):
    BatchNorm(mode="inductive")
  inputs = keras.Input((4,))
  with pytest.raises(ValueError, match="use mode 'support' after a dense layer"):
    BatchNorm(mode="task_norm_i")(inputs)


def test_mode_survives_keras_serialisation_and_is_reported():
  model = conv4(num_classes=2, image_shape=(16, 16, 1), filters=2)
  assert mode_of(model) == "transductive"
  layer = BatchNorm(mode="task_norm_i", name="bn")
  clone = BatchNorm.from_config(layer.get_config())
  assert clone.mode == "task_norm_i"


def cross_entropy(y, logits):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
@pytest.mark.parametrize("mode", ["transductive", "support", "task_norm_i"])
def test_a_query_alone_gets_the_prediction_it_gets_in_a_batch(mode, backbone):
  gin.parse_config(f"BatchNorm.mode = '{mode}'")  # (conftest clears gin after each test)
  keras.utils.set_random_seed(0)
  model = (conv4(num_classes=3, image_shape=(16, 16, 1), filters=4) if backbone == "conv4"
           else resnet12(num_classes=3, image_shape=(16, 16, 1), channels=(2, 3, 2, 3)))
  learner = MetaLearner(model, cross_entropy, num_inner_steps=2, inner_lr=0.1)
  assert learner.batch_norm == mode
  rng = np.random.default_rng(1)
  support_x = rng.normal(size=(6, 16, 16, 1)).astype(np.float32)
  support_y = np.repeat(np.arange(3), 2)
  queries = rng.normal(size=(5, 16, 16, 1)).astype(np.float32)
  batch = learner.predict(support_x, support_y, queries).numpy()
  alone = np.concatenate([learner.predict(support_x, support_y, queries[i:i + 1]).numpy()
                          for i in range(5)])
  if mode == "transductive":  # the papers' protocol: the other queries enter every logit
    assert np.abs(alone - batch).max() > 1e-2
  else:
    np.testing.assert_allclose(alone, batch, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["transductive", "support"])
def test_evaluation_with_queries_alone_predicts_each_query_in_its_own_call(mode):
  """``per_task_metrics(queries_alone=True)``: a transductive model's accuracy when queries
  arrive one at a time (each query's logits from a call of its own); in support mode it is the
  batched accuracy."""
  from l2f_tf.data.episode import Episode  # pylint: disable=import-outside-toplevel
  from l2f_tf.meta import predictions  # pylint: disable=import-outside-toplevel
  gin.parse_config(f"BatchNorm.mode = '{mode}'")
  keras.utils.set_random_seed(0)
  learner = MetaLearner(conv4(num_classes=3, image_shape=(16, 16, 1), filters=4), cross_entropy,
                        num_inner_steps=1, inner_lr=0.1)
  rng = np.random.default_rng(2)
  episodes = Episode(rng.normal(size=(2, 6, 16, 16, 1)).astype(np.float32),
                     np.tile(np.repeat(np.arange(3), 2), (2, 1)),
                     rng.normal(size=(2, 4, 16, 16, 1)).astype(np.float32),
                     rng.integers(0, 3, size=(2, 4)))
  outputs, _ = predictions.predictions(learner, episodes, 1, vectorized=False,
                                       prediction_fn=predictions.make_prediction_fn(
                                           learner, 1, False, queries_alone=True))
  for t in range(2):
    for q in range(4):
      one = learner.predict(episodes.support_x[t], episodes.support_y[t],
                            episodes.query_x[t, q:q + 1], num_steps=1).numpy()[0]
      np.testing.assert_allclose(outputs[t, 1, q], one, rtol=1e-5, atol=1e-5)
  batched, _ = predictions.predictions(learner, episodes, 1, vectorized=False)
  differ = np.abs(batched - outputs).max() > 1e-3
  assert differ == (mode == "transductive")


def test_leo_pretraining_refuses_task_norm_i():
  """The pretrained embedding replaces each batch norm by its population statistics, which a
  TaskNorm-I layer (per-image statistics) does not have: one line names the binding."""
  from l2f_tf.train import pretrain  # pylint: disable=import-outside-toplevel
  gin.parse_config("BatchNorm.mode = 'task_norm_i'")
  model = conv4(num_classes=2, image_shape=(16, 16, 1), filters=2)
  with pytest.raises(ValueError, match="drop the binding BatchNorm.mode = 'task_norm_i'"):
    pretrain._fixed_features(model, {})  # pylint: disable=protected-access


def plain_task_norm_i(x, gamma, beta, scale, offset, count):
  """TaskNorm-I written as its definition with ordinary ops (autodiff's derivatives)."""
  instance_mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
  instance_var = tf.reduce_mean(tf.square(x - instance_mean), axis=[1, 2], keepdims=True)
  context = x[:count]
  batch_mean = tf.reduce_mean(context, axis=[0, 1, 2])
  batch_var = tf.reduce_mean(tf.square(context - batch_mean), axis=[0, 1, 2])
  alpha = tf.sigmoid(scale * count + offset)
  mean = alpha * batch_mean + (1 - alpha) * instance_mean
  var = (alpha * (batch_var + tf.square(batch_mean - mean))
         + (1 - alpha) * (instance_var + tf.square(instance_mean - mean)))
  return (x - mean) / tf.sqrt(var + EPSILON) * gamma + beta


def plain_support_batch_norm(x, gamma, beta, scale, offset, count):
  del scale, offset
  context = x[:count]
  mean = tf.reduce_mean(context, axis=[0, 1, 2])
  var = tf.reduce_mean(tf.square(context - mean), axis=[0, 1, 2])
  return (x - mean) / tf.sqrt(var + EPSILON) * gamma + beta


@pytest.mark.parametrize("name", ["task_norm_i", "support_batch_norm"])
def test_second_derivatives_equal_those_of_the_plain_formulas_float64(name):
  """The closed-form gradient of ``moments`` has an exact derivative: the second derivatives
  (of a gradient taken w.r.t. every input, as MAML's meta-gradient differentiates it) equal
  autodiff's through the definition written with ordinary ops."""
  rng = np.random.default_rng(3)
  x, gamma, beta = (tf.constant(v) for v in activations((6, 4, 5, 3)))
  scale, offset = tf.constant(0.2, tf.float64), tf.constant(-0.3, tf.float64)
  weights = tf.constant(rng.normal(size=(6, 4, 5, 3)))
  inputs = [x, gamma, beta, scale, offset]
  directions = [tf.constant(rng.normal(size=t.shape)) for t in inputs]
  ours = (lambda *a: ss.task_norm_i(*a, EPSILON, 2)) if name == "task_norm_i" else (
      lambda x, g, b, s, o: ss.support_batch_norm(x, g, b, EPSILON, 2))
  plain = plain_task_norm_i if name == "task_norm_i" else plain_support_batch_norm

  def second(fn):
    with tf.GradientTape(persistent=True) as outer:
      outer.watch(inputs)
      with tf.GradientTape() as inner:
        inner.watch(inputs)
        value = tf.reduce_sum(weights * tf.sin(fn(*inputs)))
      grads = inner.gradient(value, inputs, unconnected_gradients="zero")
      projected = sum(tf.reduce_sum(g * d) for g, d in zip(grads, directions))
    return [g.numpy() for g in grads], [
        g.numpy() for g in outer.gradient(projected, inputs, unconnected_gradients="zero")]

  (first_a, second_a), (first_b, second_b) = second(ours), second(lambda *a: plain(*a, 2))
  for a, b in zip(first_a + second_a, first_b + second_b):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
  assert max(np.abs(v).max() for v in second_a) > 1e-2
