"""Interrupted-and-resumed training reaches the same weights as uninterrupted training.

The Runner owns checkpoints, Ctrl-C and the final save for every trainer; these tests drive it
with the supervised Trainer (tests/train/test_meta_rl_trainer.py does the same with the meta-RL
one)."""

import numpy as np
import pytest

from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer


def train(root_dir, num_iterations, seed=0):
  import keras
  keras.utils.set_random_seed(seed)
  domain = SinusoidRegression(num_shots=3, meta_batch_size=4)
  learner = MetaLearner(domain.build_model(), domain.loss_fn,
                        attenuation=TaskConditionedAttenuation(), learn_inner_lr=True)
  trainer = Trainer(learner, domain, str(root_dir), num_iterations=num_iterations,
                    summary_every=3, jit_compile=False, first_order_until=5)
  Runner(trainer, checkpoint_every=4).train()
  return [v.numpy() for v in learner.meta_variables + trainer.optimizer.variables]


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  uninterrupted = train(tmp_path / "a", 12)
  train(tmp_path / "b", 6)  # Stops after 6 steps (checkpoints at 4 and 6), then resumes.
  resumed = train(tmp_path / "b", 12)
  assert len(uninterrupted) == len(resumed)
  for a, b in zip(uninterrupted, resumed):
    np.testing.assert_array_equal(a, b)


def test_crash_loses_only_work_since_last_checkpoint(tmp_path, monkeypatch):
  """A crash at step 7 resumes from the checkpoint of step 4 and still ends identical."""
  uninterrupted = train(tmp_path / "a", 10)
  originals = {name: getattr(Trainer, name) for name in ("train_step_fn", "train_loop_fn")}

  def crashing(name):
    def make(self, *args):
      fn = originals[name](self, *args)

      def wrapped(*call_args):
        if self.step >= 6:
          raise RuntimeError("simulated crash")
        return fn(*call_args)
      return wrapped
    return make

  for name in originals:  # Plain steps (steps_per_call 1) or the compiled loop.
    monkeypatch.setattr(Trainer, name, crashing(name))
  with pytest.raises(RuntimeError, match="simulated crash"):
    train(tmp_path / "b", 10)
  for name, original in originals.items():
    monkeypatch.setattr(Trainer, name, original)
  assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("*.index")) == \
      ["ckpt-4.index"]
  resumed = train(tmp_path / "b", 10)
  for a, b in zip(uninterrupted, resumed):
    np.testing.assert_array_equal(a, b)


def test_ctrl_c_saves_a_checkpoint_at_the_interrupted_step(tmp_path, monkeypatch):
  original = Trainer.train_step_fn

  def interrupted(self, first_order, with_metrics):
    step_fn = original(self, first_order, with_metrics)

    def wrapped(episodes):
      if self.step == 5:
        raise KeyboardInterrupt
      return step_fn(episodes)
    return wrapped

  monkeypatch.setattr(Trainer, "train_step_fn", interrupted)
  with pytest.raises(KeyboardInterrupt):
    train(tmp_path, 10)
  assert (tmp_path / "checkpoints" / "ckpt-5.index").exists()


def test_compiled_multi_step_loop_equals_step_by_step(tmp_path):
  """steps_per_call > 1 runs the same updates, summaries and checkpoints as one step a call."""
  import keras
  results = []
  for steps_per_call, name in ((1, "single"), (5, "chunked")):
    keras.utils.set_random_seed(0)
    domain = SinusoidRegression(num_shots=3, meta_batch_size=4)
    learner = MetaLearner(domain.build_model(), domain.loss_fn,
                          attenuation=TaskConditionedAttenuation())
    trainer = Trainer(learner, domain, str(tmp_path / name), num_iterations=23,
                      summary_every=7, jit_compile=False, first_order_until=4,
                      steps_per_call=steps_per_call)
    assert Runner(trainer, checkpoint_every=10).train() == 23
    results.append([v.numpy() for v in learner.meta_variables])
    assert sorted(p.name for p in (tmp_path / name / "checkpoints").glob("*.index")) == \
        ["ckpt-10.index", "ckpt-20.index", "ckpt-23.index"]
  for a, b in zip(*results):
    np.testing.assert_array_equal(a, b)


def test_loop_chunks_stop_at_every_event():
  trainer = Trainer.__new__(Trainer)
  trainer.steps_per_call, trainer.num_iterations = 100, 1000
  trainer.summary_every = 50
  trainer.always_first_order, trainer.first_order_until = False, 30
  trainer.validator, trainer.validate_every = None, 500
  # The runner's limit is the next checkpoint (every 200 here) or the end.
  assert trainer._steps_until_event(1, 199) == 29  # first -> second order at step 30
  assert trainer._steps_until_event(30, 170) == 19  # step 49 writes summaries
  assert trainer._steps_until_event(50, 150) == 49  # up to step 98; step 99 writes summaries
  assert trainer._steps_until_event(150, 50) == 49
  assert trainer._steps_until_event(190, 10) == 9  # ... and a checkpoint when 200 are done
  trainer.summary_every = 0
  assert trainer._steps_until_event(150, 50) == 50
  assert trainer._steps_until_event(950, 50) == 50
  assert trainer._steps_until_event(300, 1000) == 100  # at most steps_per_call
  trainer.validator, trainer.validate_every = object(), 120
  assert trainer._steps_until_event(100, 100) == 20  # validation when 120 are done


def test_runner_checkpoints_on_its_schedule_and_at_the_end(tmp_path):
  """Checkpoints at every multiple of checkpoint_every and at the final step, with the
  trainer's chunks cut at the checkpoint boundaries."""
  domain = SinusoidRegression(num_shots=3, meta_batch_size=4)
  learner = MetaLearner(domain.build_model(), domain.loss_fn)
  trainer = Trainer(learner, domain, str(tmp_path), num_iterations=11, summary_every=0,
                    jit_compile=False, steps_per_call=100)
  chunks = []
  original = trainer.run
  trainer.run = lambda limit: chunks.append(limit) or original(limit)
  assert Runner(trainer, checkpoint_every=5, max_checkpoints=5).train() == 11
  assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == \
      ["ckpt-10.index", "ckpt-11.index", "ckpt-5.index"]
  assert chunks == [5, 5, 1]  # up to each checkpoint (the first call compiles the loop)


def test_training_time_adds_up_over_resumed_calls(tmp_path, monkeypatch):
  # results.json's train_seconds is the training time of every call that trained the run,
  # saved with the checkpoints; a checkpoint written before the counter existed still loads.
  import time as time_lib
  import keras
  from l2f_tf.train import runner as runner_lib
  from l2f_tf.train import checkpoints

  def make(root, num_iterations):
    keras.utils.set_random_seed(0)
    domain = SinusoidRegression(num_shots=3, meta_batch_size=4)
    learner = MetaLearner(domain.build_model(), domain.loss_fn)
    return Trainer(learner, domain, str(root), num_iterations=num_iterations, jit_compile=False)

  clock = iter(range(0, 10000, 100))  # every perf_counter() call advances 100 s
  monkeypatch.setattr(runner_lib.time, "perf_counter", lambda: float(next(clock)))
  first = Runner(make(tmp_path, 2), checkpoint_every=2)
  first.train()
  spent = float(first.train_seconds.numpy())
  assert spent > 0
  second = Runner(make(tmp_path, 4), checkpoint_every=2)
  # Restored from the last checkpoint (saved at step 2, just before the end of the call).
  assert 0 < float(second.train_seconds.numpy()) <= spent
  second.train()
  assert float(second.train_seconds.numpy()) > spent
  monkeypatch.setattr(runner_lib.time, "perf_counter", time_lib.perf_counter)
  # A checkpoint without the counter (another format) is refused, naming the fix.
  old = make(tmp_path / "old", 4)
  checkpoints.restore_or_initialize(old.checkpoint, str(tmp_path / "old" / "checkpoints")
                                    ).save(checkpoint_number=0)
  with pytest.raises(ValueError, match=r"does not match this configuration .* Use a new "
                     r"--root_dir or delete .*old/checkpoints"):
    Runner(make(tmp_path / "old", 4), checkpoint_every=2)


def train_leo(root_dir, num_iterations):
  """LEO+L2F on tiny synthetic embeddings: its sampling and dropout draw from a generator
  whose state the checkpoint holds."""
  import keras
  from l2f_tf.data.episode import Episode
  from l2f_tf.domains.base import SupervisedDomain
  from l2f_tf.domains.few_shot import accuracy, cross_entropy
  from l2f_tf.meta.leo import LEO, LEOAttenuation
  from l2f_tf.models.leo_network import LEONetwork
  import tensorflow as tf

  class Embeddings(SupervisedDomain):
    meta_batch_size, validation_split = 3, None

    def build_model(self):
      return LEONetwork(2, 6, num_latents=3)

    loss_fn = staticmethod(cross_entropy)
    task_metric = staticmethod(accuracy)

    def train_dataset(self, seed, start_step=0, tasks=None):
      def batch(step):
        r = tf.random.stateless_normal([2 * 3 * 3, 6], tf.stack([seed, step]))
        y = tf.tile(tf.range(2), [3 * 3])
        return Episode(tf.reshape(r[:12], [3, 4, 6]), tf.reshape(y[:12], [3, 4]),
                       tf.reshape(r[6:], [3, 4, 6]), tf.reshape(y[6:], [3, 4]))
      return tf.data.Dataset.counter(start_step).map(batch)

    def eval_batches(self, *args, **kwargs):
      raise NotImplementedError

    def export_signature(self):
      raise NotImplementedError

  keras.utils.set_random_seed(0)
  domain = Embeddings()
  learner = LEO(domain.build_model(), cross_entropy, accuracy, num_latent_steps=2,
                num_finetuning_steps=1, attenuation=LEOAttenuation(), seed=5)
  trainer = Trainer(learner, domain, str(root_dir), num_iterations=num_iterations,
                    summary_every=3, jit_compile=False, network_grad_clip=0.1,
                    network_grad_norm_clip=0.1, steps_per_call=4)
  Runner(trainer, checkpoint_every=4).train()
  return [v.numpy() for v in learner.meta_variables + trainer.optimizer.variables] + \
      [learner.rng.state.numpy()]


def test_resumed_leo_run_equals_uninterrupted_run(tmp_path):
  """LEO's random draws (codes, weights, dropout) continue where they stopped."""
  uninterrupted = train_leo(tmp_path / "a", 10)
  train_leo(tmp_path / "b", 6)
  resumed = train_leo(tmp_path / "b", 10)
  for a, b in zip(uninterrupted, resumed):
    np.testing.assert_array_equal(a, b)
