"""Interrupted-and-resumed training reaches the same weights as uninterrupted training.

The Runner owns checkpoints, Ctrl-C and the final save for every trainer; these tests drive it
with the supervised Trainer (tests/train/test_meta_rl_trainer.py does the same with the meta-RL
one). The runs compare with each other, so the sinusoid's network is a small one (one hidden
layer: its steps trace faster), and summaries are off where a test does not read them (the step
with summaries is a trace of its own)."""

from typing import List, NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer


class SmallSinusoid(SinusoidRegression):
  """The sinusoid with an MLP of one hidden layer of 8 units (the sinusoid's has two of 40)."""

  def make_network(self):
    inputs = keras.Input((1,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


class Run(NamedTuple):
  step: int  # what Runner.train returned
  values: List[np.ndarray]  # the meta-variables and the optimizer's variables


def train(root_dir, num_iterations, **options) -> Run:
  """L2F with learned inner learning rates, first order for steps 0-4, a checkpoint every 4
  steps; ``options`` go to the Trainer."""
  keras.utils.set_random_seed(0)
  domain = SmallSinusoid(num_shots=3, meta_batch_size=4)
  learner = MetaLearner(domain.build_model(), domain.loss_fn,
                        attenuation=TaskConditionedAttenuation(), learn_inner_lr=True)
  options = {"summary_every": 0, **options}
  trainer = Trainer(learner, domain, str(root_dir), num_iterations=num_iterations,
                    jit_compile=False, first_order_until=5, **options)
  step = Runner(trainer, checkpoint_every=4).train()
  return Run(step, [v.numpy() for v in learner.meta_variables + trainer.optimizer.variables])


def checkpoint_files(checkpoint_dir) -> List[str]:
  return sorted(p.name for p in checkpoint_dir.glob("*.index"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """(root, run): 10 meta-iterations one step a call, in one go: what the resumed, crashed and
  chunked runs below must reproduce bitwise."""
  root = tmp_path_factory.mktemp("uninterrupted")
  return root, train(root, 10)


def test_resumed_run_equals_uninterrupted_run(uninterrupted, tmp_path):
  train(tmp_path, 5)  # Stops after 5 steps (checkpoints at 4 and 5), then resumes at the
  # first second-order step.
  resumed = train(tmp_path, 10).values
  _, (_, expected) = uninterrupted
  assert len(expected) == len(resumed)
  for a, b in zip(expected, resumed):
    np.testing.assert_array_equal(a, b)


def test_crash_loses_only_work_since_last_checkpoint(uninterrupted, tmp_path, monkeypatch):
  """A crash at step 6 resumes from the checkpoint of step 4 (first order, before the switch
  at 5) and still ends identical."""
  originals = {name: getattr(Trainer, name) for name in ("train_step_fn", "train_loop_fn")}

  def crashing(name):
    def make(self, *args):
      fn = originals[name](self, *args)

      def wrapped(*call_args):
        if self.step >= 5:
          raise RuntimeError("simulated crash")
        return fn(*call_args)
      return wrapped
    return make

  for name in originals:  # Plain steps (steps_per_call 1) or the compiled loop.
    monkeypatch.setattr(Trainer, name, crashing(name))
  with pytest.raises(RuntimeError, match="simulated crash"):
    train(tmp_path, 10)
  for name, original in originals.items():
    monkeypatch.setattr(Trainer, name, original)
  assert checkpoint_files(tmp_path / "checkpoints") == ["ckpt-4.index"]
  resumed = train(tmp_path, 10).values
  _, (_, expected) = uninterrupted
  for a, b in zip(expected, resumed):
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


def test_compiled_multi_step_loop_equals_step_by_step(uninterrupted, tmp_path):
  """steps_per_call > 1 runs the same updates, summaries and checkpoints as one step a call
  (the uninterrupted run, without summaries: the step with summaries applies the same update).
  Its calls: steps 0-2 (steps_per_call), 3 (the checkpoint at 4), 4 (second order from 5),
  5 (summaries at 6), 6 (one step, with summaries), 7 (the checkpoint at 8), 8-9."""
  single_root, single = uninterrupted
  chunked = train(tmp_path, 10, summary_every=7, steps_per_call=3)
  for root, run in ((single_root, single), (tmp_path, chunked)):
    assert run.step == 10
    assert checkpoint_files(root / "checkpoints") == \
        ["ckpt-10.index", "ckpt-4.index", "ckpt-8.index"]
  for a, b in zip(single.values, chunked.values):
    np.testing.assert_array_equal(a, b)
  summary_steps = set()
  for path in tf.io.gfile.glob(str(tmp_path / "train" / "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      if any(value.tag == "meta_loss" for value in event.summary.value):
        summary_steps.add(event.step)
  assert summary_steps == {7}  # written after step 6, i.e. at meta-iteration 7


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
  domain = SmallSinusoid(num_shots=3, meta_batch_size=4)
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
  from l2f_tf.train import runner as runner_lib
  from l2f_tf.train import checkpoints

  def make(root, num_iterations):
    keras.utils.set_random_seed(0)
    domain = SmallSinusoid(num_shots=3, meta_batch_size=4)
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
  from l2f_tf.data.episode import Episode
  from l2f_tf.domains.base import SupervisedDomain
  from l2f_tf.domains.few_shot import accuracy, cross_entropy
  from l2f_tf.meta.leo import LEO, LEOAttenuation
  from l2f_tf.models.leo_network import LEONetwork

  class Embeddings(SupervisedDomain):
    meta_batch_size, validation_split = 3, None

    def make_network(self):
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
                    summary_every=0, jit_compile=False, network_grad_clip=0.1,
                    network_grad_norm_clip=0.1, steps_per_call=4)
  Runner(trainer, checkpoint_every=3).train()
  return [v.numpy() for v in learner.meta_variables + trainer.optimizer.variables] + \
      [learner.rng.state.numpy()]


def test_resumed_leo_run_equals_uninterrupted_run(tmp_path):
  """LEO's random draws (codes, weights, dropout) continue where they stopped. In compiled
  loops of up to 4 steps cut at the checkpoints: steps 0-2 and 3-4 in one go; 0-1, then 2
  and 3-4 resumed."""
  uninterrupted = train_leo(tmp_path / "a", 5)
  train_leo(tmp_path / "b", 2)
  resumed = train_leo(tmp_path / "b", 5)
  for a, b in zip(uninterrupted, resumed):
    np.testing.assert_array_equal(a, b)
