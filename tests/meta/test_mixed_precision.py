"""Mixed precision (`l2f_tf.precision`): low-precision compute, float32 everything else.

Under "mixed_bfloat16" and "mixed_float16" the network computes in bfloat16 / float16 while
the variables, the inner loop's fast weights, gamma, the losses and the metrics stay float32;
the meta-loss and the second-order meta-gradient stay close to float32's, the trainer's step
runs (eager and XLA), and float16's dynamic loss scale skips non-finite steps.

Tolerances (relative: the meta-loss as a number, gradients per tensor in the Euclidean norm).
bfloat16 keeps 8 significant bits (rounding of up to 2^-9 ~ 2e-3 per value), float16 11 (2^-12
~ 2.4e-4); two inner steps, their second-order terms and L2F's gamma (a function of the mean of
each support gradient, a sum that cancels) amplify that 3-30 times. Measured over 10 seeds
(weights and tasks), the tests use seed 0:
  * MLP (sinusoid, tanh): meta-loss within 2.7e-3 (bfloat16) / 6e-4 (float16), network
    gradients within 3.7e-2 / 4.9e-3, attenuator gradients (tiny, norm ~1e-2) within 8.1e-2 /
    1.1e-2; checked at 5e-3 / 1e-3, 6e-2 / 1e-2 and 0.15 / 3e-2. tanh rather than the sinusoid
    model's ReLU: a ReLU whose input is within rounding of 0 switches its derivative between 0
    and 1, so the meta-gradient jumps (by up to 12% on 1 seed in 10 with bfloat16); the trainer
    tests below run the ReLU model.
  * conv4: its meta-gradient jumps likewise where max pooling switches between two nearly equal
    values of a window. At 8 bits ~0.4% of the windows pick another maximum (or tie) than in
    float32, and in a 16x16 network each window weighs a lot: rounding only the max-pool
    inputs of a float32 conv4 to bfloat16 already moves its meta-gradient by 5-20%. So conv4 is
    checked on the meta-loss (measured within 3.1e-2 / 2.3e-3; checked at 5e-2 / 5e-3) and on
    the direction of the whole meta-gradient (cosine measured >= 0.81 / 0.978; checked at 0.7
    / 0.95).
"""

import functools

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf import precision
from l2f_tf.data import sinusoid_tasks
from l2f_tf.data.episode import Episode
from l2f_tf.domains.base import SupervisedDomain
from l2f_tf.domains.few_shot import cross_entropy
from l2f_tf.domains.sinusoid import SinusoidRegression, mse
from l2f_tf.meta import inner_loop, predictions, sequential
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.batch_norm import BatchNorm
from l2f_tf.models.conv4 import conv4
from l2f_tf.models.mlp import mlp
from l2f_tf.train.experiment import build_learner
from l2f_tf.train.trainer import Trainer

MIXED = ("mixed_bfloat16", "mixed_float16", "bfloat16_conv")
LOW = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16", "bfloat16_conv": "bfloat16"}
IMAGE_SHAPE, WAYS, SHOTS, QUERIES, TASKS = (16, 16, 1), 2, 1, 3, 2  # conv4 needs >= 16x16.
OUTER_LOSS_SCALE = 2.0 ** 12  # float16: the meta-loss is scaled as the trainer does.
LOSS_TOLERANCE = {("mlp", "mixed_bfloat16"): 5e-3, ("mlp", "mixed_float16"): 1e-3,
                  ("conv4", "mixed_bfloat16"): 5e-2, ("conv4", "mixed_float16"): 5e-3,
                  ("mlp", "bfloat16_conv"): 5e-3, ("conv4", "bfloat16_conv"): 5e-2}
MLP_NETWORK_TOLERANCE = {"mixed_bfloat16": 6e-2, "mixed_float16": 1e-2, "bfloat16_conv": 6e-2}
MLP_ATTENUATOR_TOLERANCE = {"mixed_bfloat16": 0.15, "mixed_float16": 3e-2,
                            "bfloat16_conv": 0.15}
CONV4_MIN_COSINE = {"mixed_bfloat16": 0.7, "mixed_float16": 0.95, "bfloat16_conv": 0.7}


@pytest.fixture(autouse=True)
def restore_dtype_policy():
  """Other tests of the process build models under the global policy: restore it."""
  previous = keras.config.dtype_policy()
  yield
  keras.config.set_dtype_policy(previous)


def make_learner(kind: str, l2f: bool, name: str, seed: int = 0, num_inner_steps: int = 2,
                 **kwargs) -> MetaLearner:
  """A MAML(+L2F) learner of a sinusoid MLP or a tiny conv4, built under ``name``."""
  with precision.policy_scope(name):
    keras.utils.set_random_seed(seed)
    if kind == "mlp":
      model, loss_fn, inner_lr = mlp(activation="tanh"), mse, 0.01
    else:
      model = conv4(num_classes=WAYS, image_shape=IMAGE_SHAPE, filters=4)
      loss_fn, inner_lr = cross_entropy, 0.01
    model = precision.convert(model, name)
    attenuation = TaskConditionedAttenuation() if l2f else None
    return MetaLearner(model, loss_fn, num_inner_steps=num_inner_steps, inner_lr=inner_lr,
                       attenuation=attenuation, **kwargs)


def make_episodes(kind: str, seed: int = 0) -> Episode:
  """A meta-batch of 2 tasks: 5-shot sinusoids, or 2-way 1-shot 16x16 images with a class
  pattern (pure noise would make the gradients cancel almost completely)."""
  if kind == "mlp":
    return sinusoid_tasks.training_tasks().sample(TASKS, 5, 5, [seed, 7])[0]
  rng = np.random.default_rng(seed)
  patterns = rng.normal(size=(TASKS, WAYS, *IMAGE_SHAPE))
  labels = lambda k: np.tile(np.repeat(np.arange(WAYS), k), (TASKS, 1)).astype(np.int32)
  images = lambda k: (rng.normal(size=(TASKS, WAYS * k, *IMAGE_SHAPE))
                      + 2 * patterns[np.arange(TASKS)[:, None], labels(k)]).astype(np.float32)
  return Episode(tf.constant(images(SHOTS)), tf.constant(labels(SHOTS)),
                 tf.constant(images(QUERIES)), tf.constant(labels(QUERIES)))


def copy_weights(target: MetaLearner, source: MetaLearner) -> None:
  for t, s in zip(target.meta_variables, source.meta_variables):
    t.assign(s)


def meta_gradients(learner: MetaLearner, episodes, loss_scale: float = 1.0):
  """(meta-loss, second-order meta-gradients) from a tape around ``meta_loss``."""
  with tf.GradientTape() as tape:
    loss, _ = learner.meta_loss(episodes)
    scaled = loss * loss_scale
  grads = tape.gradient(scaled, learner.meta_variables)
  return loss, [g / loss_scale for g in grads]


@functools.lru_cache(maxsize=None)
def float32_reference(kind: str, l2f: bool):
  """The float32 learner's meta-variables, meta-loss and meta-gradients on ``make_episodes(kind)``
  (computed once for the three low precisions)."""
  reference = make_learner(kind, l2f, "float32")
  loss, grads = meta_gradients(reference, make_episodes(kind))
  return [v.numpy() for v in reference.meta_variables], loss, grads


def relative_error(a, b) -> float:
  return float(tf.norm(a - b) / tf.norm(b))


def cosine(a_list, b_list) -> float:
  a = tf.concat([tf.reshape(g, [-1]) for g in a_list], 0)
  b = tf.concat([tf.reshape(g, [-1]) for g in b_list], 0)
  return float(tf.reduce_sum(a * b) / (tf.norm(a) * tf.norm(b)))


# --- configuration -------------------------------------------------------------------------------
def test_unknown_precision_is_a_value_error_naming_the_choices():
  with pytest.raises(ValueError, match="float32, mixed_bfloat16, mixed_float16"):
    precision.check("bfloat16")
  with pytest.raises(ValueError, match="mixed_bfloat16"):
    build_learner(SinusoidRegression(), precision="float16")
  gin.bind_parameter("precision.name", "half")
  with pytest.raises(ValueError, match="mixed_float16"):
    build_learner(SinusoidRegression())


def test_build_learner_builds_under_the_configured_policy_and_restores_it():
  gin.bind_parameter("precision.name", "mixed_bfloat16")
  learner_cls = functools.partial(MetaLearner, attenuation=TaskConditionedAttenuation())
  learner = build_learner(SinusoidRegression(), learner_cls=learner_cls)
  assert keras.config.dtype_policy().name == "float32"
  assert {layer.compute_dtype for layer in learner.model.layers[1:]} == {"bfloat16"}
  assert {v.dtype for v in learner.meta_variables} == {"float32"}
  assert learner.dtype == tf.float32 and learner.inner_loss_scale == 1.0
  # The attenuator's MLP computes in float32 (its input and gamma are float32).
  assert learner.attenuation.hidden.compute_dtype == "float32"
  assert build_learner(SinusoidRegression()).model.layers[1].compute_dtype == "bfloat16"
  assert build_learner(SinusoidRegression(), precision="float32").model.layers[1].compute_dtype \
      == "float32"


def test_bfloat16_conv_switches_only_convolutions_and_dense_layers():
  """Under "bfloat16_conv" the matrix layers compute in bfloat16 and everything else (batch
  norm, pooling, activations, the attenuator) in float32; variables stay float32."""
  learner = make_learner("conv4", True, "bfloat16_conv")
  kinds = {type(layer).__name__: layer.compute_dtype for layer in learner.model.layers[1:]}
  assert kinds == {"Conv2D": "bfloat16", "BatchNorm": "float32", "MaxPool": "float32",
                   "LeakyReLU": "float32", "Flatten": "float32", "Dense": "bfloat16"}
  assert learner.attenuation.hidden.compute_dtype == "float32"
  assert {v.dtype for v in learner.meta_variables} == {"float32"}
  assert learner.inner_loss_scale == 1.0 and keras.config.dtype_policy().name == "float32"
  gin.bind_parameter("precision.name", "bfloat16_conv")
  model = build_learner(SinusoidRegression()).model
  assert {layer.compute_dtype for layer in model.layers[1:]} == {"bfloat16"}  # all Dense


def test_learner_dtype_is_the_variables_dtype():
  """A functional model's own policy need not be its layers' (mlp(dtype="float64") is a
  "float32" model of float64 layers): losses and predictions follow the variables."""
  learner = MetaLearner(mlp(dtype="float64"), mse)
  assert learner.dtype == tf.float64
  assert learner.forward(learner.theta(), tf.zeros((3, 1), tf.float64)).dtype == tf.float64


# --- mixed precision against float32 ------------------------------------------------------------
@pytest.mark.parametrize("name", MIXED)
@pytest.mark.parametrize("l2f", [False, True], ids=["maml", "l2f"])
@pytest.mark.parametrize("kind", ["mlp", "conv4"])
def test_meta_loss_and_second_order_meta_gradient_match_float32(kind, l2f, name):
  weights, expected_loss, expected = float32_reference(kind, l2f)
  learner = make_learner(kind, l2f, name)
  for v, w in zip(learner.meta_variables, weights):
    v.assign(w)
  episodes = make_episodes(kind)
  loss_scale = OUTER_LOSS_SCALE if name == "mixed_float16" else 1.0
  loss, grads = meta_gradients(learner, episodes, loss_scale)

  # The network computes in the low precision; everything the learner keeps is float32.
  assert learner.model.get_layer(index=1).compute_dtype == LOW[name]
  assert loss.dtype == tf.float32
  assert {v.dtype for v in learner.meta_variables} == {"float32"}
  assert {g.dtype for g in grads} == {tf.float32}
  support_x, support_y, query_x, _ = (field[0] for field in episodes)
  adaptation = learner.adapt(support_x, support_y)
  assert {p.dtype for iterate in adaptation.iterates for p in iterate} == {tf.float32}
  assert learner.forward(adaptation.fast_weights, query_x).dtype == tf.float32
  if l2f:
    assert adaptation.gamma.dtype == tf.float32

  assert abs(float(loss) / float(expected_loss) - 1) < LOSS_TOLERANCE[(kind, name)]
  if kind == "mlp":
    network = {id(v) for v in learner.network_variables}
    for g, e, v in zip(grads, expected, learner.meta_variables):
      tolerance = (MLP_NETWORK_TOLERANCE if id(v) in network else MLP_ATTENUATOR_TOLERANCE)[name]
      assert relative_error(g, e) < tolerance, v.path
  else:
    assert cosine(grads, expected) > CONV4_MIN_COSINE[name]


def test_sequential_meta_gradients_equal_the_plain_ones():
  """The trainer's task-by-task path, with float16's loss scale, computes the same figures.

  Both in graphs: eager low-precision kernels round differently from graph ones (bfloat16:
  3e-4 on the loss), while the two paths in graphs agree to 1e-7."""
  learner = make_learner("conv4", True, "mixed_float16", num_inner_steps=1)
  # Compared with the unrolled task loop, which it replicates op by op; the vectorized loop's
  # batched float16 kernels round differently (1.7e-3 on a gradient).
  learner.vectorize_tasks = False
  episodes = make_episodes("conv4")
  loss_scale = OUTER_LOSS_SCALE
  expected_loss, expected = tf.function(lambda e: meta_gradients(learner, e, loss_scale))(
      episodes)
  fn = tf.function(lambda e: sequential.meta_gradients(learner, e,
                                                       loss_scale=tf.constant(loss_scale)))
  loss, grads, _ = fn(episodes)
  assert loss.dtype == tf.float32
  np.testing.assert_allclose(float(loss), float(expected_loss), rtol=1e-5)
  for g, e, v in zip(grads, expected, learner.meta_variables):
    assert g.dtype == tf.float32
    assert relative_error(g / loss_scale, e) < 1e-5, v.path


@pytest.mark.parametrize("vectorized", [True, False])
def test_evaluation_predictions_are_float32(vectorized):
  learner = make_learner("mlp", True, "mixed_bfloat16")
  outputs, _ = predictions.predictions(learner, make_episodes("mlp"), max_steps=1,
                                      vectorized=vectorized)
  assert outputs.dtype == np.float32 and outputs.shape == (TASKS, 2, 5, 1)
  assert np.isfinite(outputs).all()


# --- custom layers --------------------------------------------------------------------------------
def test_batch_norm_statistics_are_float32_under_bfloat16():
  """Normalising bfloat16 activations with a large mean: float32 statistics leave only the
  output's rounding (2^-9); bfloat16 statistics would be off by percents."""
  layer = BatchNorm(dtype="mixed_bfloat16")
  rng = np.random.default_rng(0)
  x = tf.cast(50.0 + rng.normal(size=(8, 6, 6, 3)), tf.bfloat16)
  y = layer(x)
  assert y.dtype == tf.bfloat16 and layer.gamma.dtype == "float32"
  x64 = tf.cast(x, tf.float64)
  mean = tf.reduce_mean(x64, axis=(0, 1, 2))
  variance = tf.reduce_mean(tf.square(x64 - mean), axis=(0, 1, 2))
  expected = (x64 - mean) / tf.sqrt(variance + 1e-5)
  np.testing.assert_allclose(tf.cast(y, tf.float64).numpy(), expected.numpy(), rtol=2 ** -8,
                             atol=2 ** -8)


# --- float16 loss scaling -------------------------------------------------------------------------
def test_float16_inner_loss_scale_keeps_small_support_gradients():
  """A support loss with tiny gradients (x 2^-20): float16 backprop flushes them to zero or
  subnormals unless the inner loop scales the loss."""
  tiny_mse = lambda y, p: mse(y, p) * 2.0 ** -20
  reference = make_learner("mlp", False, "float32")
  scaled = make_learner("mlp", False, "mixed_float16")
  unscaled = make_learner("mlp", False, "mixed_float16", inner_loss_scale=1.0)
  assert scaled.inner_loss_scale == precision.FLOAT16_INNER_LOSS_SCALE
  support_x, support_y = (field[0] for field in make_episodes("mlp")[:2])
  errors = {}
  for label, learner in [("scaled", scaled), ("unscaled", unscaled)]:
    copy_weights(learner, reference)
    learner.loss_fn = reference.loss_fn = tiny_mse
    _, expected = inner_loop.gradients(lambda p: reference.loss_at(p, support_x, support_y),
                                       reference.theta())
    _, grads = inner_loop.gradients(lambda p: learner.loss_at(p, support_x, support_y),
                                    learner.theta(), learner.inner_loss_scale)
    errors[label] = max(relative_error(g, e) for g, e in zip(grads, expected))
  assert errors["scaled"] < 1e-2 < errors["unscaled"], errors


def test_clip_of_a_loss_scaled_gradient_scales_the_limit_and_keeps_overflows():
  """Clipping must not turn an overflowed (infinite) gradient into a finite one, or the
  loss-scaling optimizer would apply it instead of skipping the step."""
  gradient = tf.constant([3.0, -40.0, np.inf, -np.inf])
  scale = tf.constant(2.0 ** 10)
  clipped = precision.clip_gradient(gradient * scale, 10.0, scale) / scale
  np.testing.assert_array_equal(clipped.numpy(), [3.0, -10.0, np.inf, -np.inf])
  assert np.isnan(precision.clip_gradient(tf.constant([np.nan]), 10.0, scale).numpy()).all()
  np.testing.assert_array_equal(precision.clip_gradient(gradient, 10.0).numpy(),
                                [3.0, -10.0, 10.0, -10.0])  # Without loss scaling: as before.


class RandomImages(SupervisedDomain):
  """The tiny conv4 problem above as a domain: the same meta-batch at every step."""

  meta_batch_size = TASKS

  def make_network(self):
    return conv4(num_classes=WAYS, image_shape=IMAGE_SHAPE, filters=4)

  @staticmethod
  def loss_fn(labels, logits):
    return cross_entropy(labels, logits)

  def train_dataset(self, seed, start_step=0, tasks=None):
    assert tasks is None  # One device: the whole meta-batch.
    return tf.data.Dataset.from_tensors(make_episodes("conv4", seed)).repeat()

  def eval_batches(self, distribution, num_tasks, preprocessed=True):
    raise NotImplementedError

  def export_signature(self):
    raise NotImplementedError


def make_trainer(tmp_path, domain, name, num_inner_steps=2, **kwargs) -> Trainer:
  learner_cls = functools.partial(MetaLearner, attenuation=TaskConditionedAttenuation(),
                                  num_inner_steps=num_inner_steps)
  learner = build_learner(domain, precision=name, learner_cls=learner_cls)
  return Trainer(learner, domain, str(tmp_path), num_iterations=10, summary_every=0,
                 num_val_episodes=0, network_grad_clip=10.0, **kwargs)


@pytest.mark.parametrize("case,name", [("sinusoid-loop", "mixed_bfloat16"),
                                       ("sinusoid-xla", "mixed_bfloat16"),
                                       ("sinusoid-xla", "mixed_float16")])
def test_trainer_steps_run_and_move_the_weights(tmp_path, case, name):
  """The sinusoid here; conv4 on the sequential path in tests/meta/test_mixed_precision_slow.py."""
  check_trainer_steps_run_and_move_the_weights(tmp_path, case, name)


def check_trainer_steps_run_and_move_the_weights(tmp_path, case, name):
  """L2F steps of the trainer (the compiled multi-step loop, XLA, the sequential path)."""
  domain = RandomImages() if case.startswith("conv4") else SinusoidRegression(
      num_shots=3, meta_batch_size=1)
  trainer = make_trainer(tmp_path, domain, name, num_inner_steps=1,
                         jit_compile=case.endswith("xla"),
                         sequential_tasks=case.endswith("sequential"), steps_per_call=2)
  before = [v.numpy() for v in trainer.learner.meta_variables]
  if name == "mixed_float16":  # Start from a scale that cannot overflow: no skipped step.
    trainer.optimizer.dynamic_scale.assign(2.0 ** 8)
  trainer.run(1)
  trainer.run(2 if case.endswith("loop") else 1)  # 2: one call of the compiled loop.
  assert trainer.step == (3 if case.endswith("loop") else 2)
  after = trainer.learner.meta_variables
  assert {v.dtype for v in after} == {"float32"}
  assert all(np.isfinite(v.numpy()).all() for v in after)
  assert max(np.abs(v.numpy() - b).max() for v, b in zip(after, before)) > 1e-4


def test_float16_dynamic_loss_scale_skips_an_overflowing_step(tmp_path):
  """On the plain path here; the sequential one in tests/meta/test_mixed_precision_slow.py."""
  check_float16_dynamic_loss_scale_skips_an_overflowing_step(tmp_path, sequential_tasks=False)


def check_float16_dynamic_loss_scale_skips_an_overflowing_step(tmp_path, sequential_tasks):
  """A loss scale of 2^40 overflows float16's backprop (inf gradients, not hidden by the
  gradient clip): the step leaves the weights alone, halves the scale and still counts, so
  the step stays the number of meta-batches read. A finite step then updates."""
  trainer = make_trainer(tmp_path, SinusoidRegression(num_shots=3, meta_batch_size=1),
                         "mixed_float16", num_inner_steps=1, jit_compile=False,
                         sequential_tasks=sequential_tasks)
  assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
  variables = trainer.learner.meta_variables
  before = [v.numpy() for v in variables]
  trainer.optimizer.dynamic_scale.assign(2.0 ** 40)
  trainer.run(1)
  assert float(trainer.optimizer.dynamic_scale.numpy()) == 2.0 ** 39
  assert trainer.step == 1
  for v, b in zip(variables, before):
    np.testing.assert_array_equal(v.numpy(), b, err_msg=v.path)
  trainer.optimizer.dynamic_scale.assign(2.0 ** 8)
  trainer.run(1)
  assert float(trainer.optimizer.dynamic_scale.numpy()) == 2.0 ** 8
  assert trainer.step == 2
  assert max(np.abs(v.numpy() - b).max() for v, b in zip(variables, before)) > 1e-4


def test_float32_and_bfloat16_use_no_loss_scaling(tmp_path):
  for name in ("float32", "mixed_bfloat16"):
    trainer = make_trainer(tmp_path / name, SinusoidRegression(), name, jit_compile=False)
    assert not isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.learner.inner_loss_scale == 1.0
