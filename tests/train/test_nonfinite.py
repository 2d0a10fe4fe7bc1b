"""The non-finite guard (`l2f_tf.train.guard`): a NaN or inf meta-loss or meta-gradient never
reaches the weights or a checkpoint, in every trainer and every path of the supervised step.

Divergence is provoked two ways: an inf support label in chosen meta-batches of the sinusoid
(one bad step among finite ones, on one replica only when the meta-batch is split), and an
inner learning rate of 1e30 (every step diverges)."""

import logging

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.rl import trpo
from l2f_tf.train import guard as guard_lib
from l2f_tf.train.guard import NonFiniteError, NonFiniteGuard
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer



class PoisonedSinusoid(SinusoidRegression):
  """The sinusoid, with an inf support label in task 0 of the meta-batches read at the step
  counters ``bad_steps`` (so the meta-iterations ``s + 1`` are non-finite). Split across
  replicas, only the share holding task 0 is poisoned. Its MLP has one hidden layer of 8 units
  (the tests compare states with each other; a smaller graph traces faster)."""

  def __init__(self, bad_steps=(), **options):
    super().__init__(**options)
    self.bad_steps = tuple(bad_steps)

  def make_network(self):
    # Its layers follow the global dtype policy (float32 or mixed), as the sinusoid's do.
    inputs = keras.Input((1,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))

  def train_dataset(self, seed, start_step=0, tasks=None):
    dataset = super().train_dataset(seed, start_step, tasks)
    if not self.bad_steps or (tasks is not None and tasks[0] != 0):
      return dataset
    bad = tf.constant(self.bad_steps, tf.int64)

    def poison(step, episode):
      first_task = tf.range(tf.shape(episode.support_y)[0]) == 0
      hit = tf.logical_and(tf.reduce_any(tf.equal(step, bad)), first_task)[:, None, None]
      inf = tf.constant(np.inf, episode.support_y.dtype)
      return episode._replace(support_y=tf.where(hit, inf, episode.support_y))

    return dataset.enumerate(start_step).map(poison)


def make_trainer(root, bad_steps=(), inner_lr=0.01, guard=None, l2f=False,
                 **options) -> Trainer:
  """A tiny sinusoid trainer (4 tasks, 3 shots; MAML unless ``l2f``) with the given guard
  (None: the trainer's default, configured in gin)."""
  keras.utils.set_random_seed(0)
  domain = PoisonedSinusoid(bad_steps, num_shots=3, meta_batch_size=4)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, inner_lr=inner_lr,
                        attenuation=TaskConditionedAttenuation() if l2f else None)
  options = {"num_iterations": 20, "summary_every": 0, "jit_compile": False, **options}
  return Trainer(learner, domain, str(root), guard=guard, **options)


def state(trainer):
  """Weights and optimizer slots (not its counter), as arrays."""
  slots = [v for v in trainer.optimizer.variables if "iteration" not in v.path]
  return [v.numpy() for v in trainer.learner.meta_variables + slots]


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def changed(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(a, b))


# --- the guard itself ----------------------------------------------------------------------------

def test_guard_counts_skips_and_stops_per_policy():
  guard = NonFiniteGuard(max_consecutive=3)
  guard.after_step(1, finite=False)
  guard.after_step(2, finite=True)
  guard.record(6, skipped=2, consecutive=2, last_skipped=6)
  assert (guard.total, guard.consecutive) == (3, 2)
  with pytest.raises(NonFiniteError) as error:
    guard.after_step(7, finite=False)
  assert (error.value.step, error.value.consecutive) == (7, 3)
  assert "meta-iteration 7" in str(error.value) and "max_consecutive = 3" in str(error.value)
  with pytest.raises(NonFiniteError, match='meta-iteration 1 .*policy = "stop"'):
    NonFiniteGuard("stop").after_step(1, finite=False)
  with pytest.raises(ValueError, match="skip"):
    NonFiniteGuard("ignore")
  with pytest.raises(ValueError, match="max_consecutive"):
    NonFiniteGuard(max_consecutive=0)


def test_error_names_the_last_good_checkpoint():
  error = NonFiniteError(12, policy="stop")
  assert "checkpoint" not in str(error) and error.last_checkpoint is None
  with_path = error.with_checkpoint("/runs/a/checkpoints/ckpt-10")
  assert isinstance(with_path, NonFiniteError) and with_path.step == 12
  assert str(with_path).endswith("The last good checkpoint is /runs/a/checkpoints/ckpt-10.")


def test_gin_configures_the_trainers_default_guard(tmp_path):
  gin.parse_config(["NonFiniteGuard.policy = 'stop'", "NonFiniteGuard.max_consecutive = 4"])
  trainer = make_trainer(tmp_path, guard=None)
  assert (trainer.guard.policy, trainer.guard.max_consecutive, trainer.guard.limit) == \
      ("stop", 4, 1)


# --- the supervised trainer ----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["plain", "xla", "sequential"])
def test_skipped_step_leaves_the_state_and_advances_the_counter(case, tmp_path, caplog):
  """Meta-iterations 2, 4 and 5 are non-finite; the second in a row stops training."""
  trainer = make_trainer(tmp_path, bad_steps=(1, 3, 4), jit_compile=case == "xla",
                         sequential_tasks=case == "sequential", l2f=case == "plain",
                         guard=NonFiniteGuard(max_consecutive=2))
  trainer.run(1)
  after_1 = state(trainer)
  with caplog.at_level(logging.WARNING):
    chunk = trainer.run(1)
  assert trainer.step == 2 and int(trainer.optimizer.iterations.numpy()) == 2
  assert_same(state(trainer), after_1)
  assert "skipped the update of meta-iteration 2" in caplog.text
  assert "1 non-finite steps skipped" in chunk.message
  trainer.run(1)  # Finite: updates.
  after_3 = state(trainer)
  assert changed(after_3, after_1) and all(np.isfinite(x).all() for x in after_3)
  trainer.run(1)
  with pytest.raises(NonFiniteError, match="meta-iteration 5 .*2 in a row") as error:
    trainer.run(1)
  assert error.value.step == 5 and trainer.step == 5
  assert_same(state(trainer), after_3)
  assert trainer.guard.total == 3


def test_compiled_loop_skips_counts_and_stops_at_the_limit(tmp_path):
  """Meta-batches 1-5 and 7 are bad. The loop skips 1-4 (4 in a row); in the next call batch 5
  makes 5 in a row with those: the loop stops there, before the finite ones. Then under policy
  "stop" the loop stops at batch 7, before the finite 8 and 9."""
  trainer = make_trainer(tmp_path, bad_steps=(1, 2, 3, 4, 5, 7), steps_per_call=4,
                         guard=NonFiniteGuard(max_consecutive=5))
  trainer.run(1)  # The first call runs one step (it compiles).
  after_1 = state(trainer)
  assert trainer.run(4).steps == 4
  assert trainer.step == 5 and (trainer.guard.total, trainer.guard.consecutive) == (4, 4)
  assert_same(state(trainer), after_1)
  with pytest.raises(NonFiniteError, match="meta-iteration 6 .*5 in a row"):
    trainer.run(4)
  assert trainer.step == 6
  assert_same(state(trainer), after_1)
  trainer.guard = NonFiniteGuard("stop")
  trainer.run(1)  # Batch 6, finite.
  after_7 = state(trainer)
  assert changed(after_7, after_1)
  with pytest.raises(NonFiniteError, match="meta-iteration 8 ") as error:
    trainer.run(4)
  assert error.value.step == 8 and trainer.step == 8
  assert_same(state(trainer), after_7)


def test_with_finite_values_the_guard_changes_nothing(tmp_path, monkeypatch):
  """The guarded step applies a hand-computed Adam step of the meta-batch, and the same
  updates as an unguarded step (step and loop)."""
  guarded = make_trainer(tmp_path / "guarded", steps_per_call=3)
  learner = guarded.learner
  episodes = next(iter(guarded.domain.train_dataset(guarded.seed)))
  with tf.GradientTape() as tape:
    loss, _ = learner.meta_loss(episodes, first_order=False)
  expected = [tf.Variable(v.numpy()) for v in learner.meta_variables]
  keras.optimizers.Adam(1e-3).apply_gradients(
      zip(tape.gradient(loss, learner.meta_variables), expected))
  guarded.run(1)
  for e, v in zip(expected, learner.meta_variables):
    np.testing.assert_allclose(v.numpy(), e.numpy(), rtol=1e-5, atol=1e-7)
  guarded.run(3)  # The compiled loop.
  monkeypatch.setattr(Trainer, "_apply_if",
                      lambda self, finite, pairs: self.optimizer.apply_gradients(pairs))
  unguarded = make_trainer(tmp_path / "unguarded", steps_per_call=3)
  unguarded.run(1)
  unguarded.run(3)
  assert guarded.step == unguarded.step == 4 and guarded.guard.total == 0
  assert_same(state(guarded), state(unguarded))


def test_checkpoints_stay_finite_and_a_resumed_run_matches(tmp_path):
  """Through the Runner: the skipped meta-iteration 3 is checkpointed with the state of 2 and
  counted in TensorBoard; a trainer resumed from that checkpoint ends as the uninterrupted run."""
  straight = make_trainer(tmp_path / "a", bad_steps=(2,), num_iterations=5)
  Runner(straight, checkpoint_every=1, max_checkpoints=10, log_every_seconds=0).train()
  checkpoints = tmp_path / "a" / "checkpoints"
  saved = []
  for step in range(1, 6):
    reader = tf.train.load_checkpoint(str(checkpoints / f"ckpt-{step}"))
    # The weights and Adam's slots (the model is saved through the optimizer's variables).
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
              if k.startswith("optimizer/_") and "_iterations" not in k}
    assert all(np.isfinite(v).all() for v in values.values()), step
    saved.append(values)
  assert len(saved[1]) > 10 and saved[1].keys() == saved[2].keys()
  for key in saved[1]:
    np.testing.assert_array_equal(saved[1][key], saved[2][key])
  counts = {}
  for path in tf.io.gfile.glob(str(tmp_path / "a" / "train" / "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == guard_lib.SUMMARY_TAG:
          counts[event.step] = float(tf.make_ndarray(value.tensor))
  assert counts == {3: 1.0}
  resumed = make_trainer(tmp_path / "b", bad_steps=(2,), num_iterations=5)
  resumed.checkpoint.read(str(checkpoints / "ckpt-3")).assert_existing_objects_matched()
  assert resumed.step == 3
  Runner(resumed, checkpoint_every=1, log_every_seconds=0).train()
  assert_same(state(resumed), state(straight))


def test_every_step_diverging_stops_after_max_consecutive_with_no_bad_checkpoint(tmp_path):
  """Inner learning rate 1e30: every meta-loss is non-finite. Through the Runner (a checkpoint
  every 2 steps): steps 1 and 2 run one at a time, 3 and 4 in the compiled loop, all skipped;
  the fourth in a row stops training before its checkpoint. The one of step 2 holds the
  initial state."""
  trainer = make_trainer(tmp_path, inner_lr=1e30, steps_per_call=3, num_iterations=10,
                         guard=NonFiniteGuard(max_consecutive=4))
  before = state(trainer)
  with pytest.raises(NonFiniteError, match="meta-iteration 4 .*4 in a row") as error:
    Runner(trainer, checkpoint_every=2, log_every_seconds=0).train()
  assert error.value.step == 4 and trainer.step == 4 and trainer.guard.total == 4
  assert_same(state(trainer), before)
  assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-2.index"]
  trainer.checkpoint.read(str(tmp_path / "checkpoints" / "ckpt-2")).assert_consumed()
  assert trainer.step == 2
  assert_same(state(trainer), before)


def test_mixed_float16_counts_non_finite_losses_not_loss_scale_overflows(tmp_path):
  """The loss-scaling optimizer's own skip (a loss scale of 2^40 overflows the float16
  backward pass) is not counted; a non-finite meta-loss is, and leaves the scale alone."""
  from tests.meta import test_mixed_precision  # Its tiny L2F trainer under a dtype policy.
  trainer = test_mixed_precision.make_trainer(
      tmp_path, PoisonedSinusoid((1,), num_shots=3, meta_batch_size=1), "mixed_float16",
      num_inner_steps=1, jit_compile=False, guard=NonFiniteGuard(max_consecutive=2))
  trainer.optimizer.dynamic_scale.assign(2.0 ** 40)
  trainer.run(1)
  assert float(trainer.optimizer.dynamic_scale.numpy()) == 2.0 ** 39  # the optimizer skipped
  assert trainer.step == 1 and trainer.guard.total == 0
  trainer.optimizer.dynamic_scale.assign(2.0 ** 8)
  before = state(trainer)
  trainer.run(1)  # The poisoned meta-batch.
  assert trainer.step == 2 and trainer.guard.total == 1
  assert float(trainer.optimizer.dynamic_scale.numpy()) == 2.0 ** 8
  assert_same(state(trainer), before)
  trainer.run(1)
  assert trainer.step == 3 and trainer.guard.consecutive == 0
  assert changed(state(trainer), before)


# --- meta-RL -------------------------------------------------------------------------------------

def test_trpo_takes_no_step_on_a_non_finite_loss_or_gradient():
  """No line search runs (eagerly here; the meta-RL trainer below runs it compiled)."""
  v = tf.Variable([0.3, -0.2], dtype=tf.float64)
  start = v.numpy().copy()
  old = tf.constant(start)
  kl_fn = lambda: 0.5 * tf.reduce_sum((v - old) ** 2)
  for bad in (np.nan, np.inf):
    out = trpo.trpo_step(lambda: tf.reduce_sum(v ** 2) * bad, kl_fn, [v])  # noqa: B023
    assert not out["finite"] and not out["accepted"] and int(out["backtracks"]) == 15
    np.testing.assert_array_equal(v.numpy(), start)
  out = trpo.trpo_step(lambda: tf.reduce_sum((v - 1.0) ** 2), kl_fn, [v])
  assert out["finite"] and out["accepted"]


def test_meta_rl_trainer_skips_and_stops_without_a_bad_checkpoint(tmp_path):
  """Inner learning rate 1e30 on a tiny Navigation2D: every surrogate is non-finite. The first
  iteration is skipped (checkpointed unchanged), the second stops training (no checkpoint).
  First order: the guard's path is the same, and its TRPO step traces in half the time."""
  from l2f_tf.train.meta_rl_trainer import MetaRLTrainer
  from tests.train.test_meta_rl_trainer import tiny_domain
  domain = tiny_domain()
  keras.utils.set_random_seed(0)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, inner_lr=1e30)
  trainer = MetaRLTrainer(learner, domain, str(tmp_path), num_iterations=5, first_order=True,
                          guard=NonFiniteGuard(max_consecutive=2))
  before = [v.numpy() for v in learner.meta_variables]
  with pytest.raises(NonFiniteError, match="meta-iteration 2 .*2 in a row"):
    Runner(trainer, checkpoint_every=1, log_every_seconds=0).train()
  assert trainer.step == 2 and trainer.guard.total == 2
  assert_same([v.numpy() for v in learner.meta_variables], before)
  assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-1.index"]
  reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "ckpt-1"))
  assert int(reader.get_tensor("iteration/.ATTRIBUTES/VARIABLE_VALUE")) == 1
