"""Validation during training, the top-k checkpoints and the ensembled test."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.domains.few_shot import FewShotClassification
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv_bn_block
from l2f_tf.meta import predictions
from l2f_tf.train import checkpoints, validation
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer
from tests.fake_images import write_class_folders


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
  return write_class_folders(str(tmp_path_factory.mktemp("mini")), classes=(6, 5, 5),
                             images_per_class=8, size=16)


def conv2(num_classes, image_shape):
  """conv4 cut to its first two blocks, of 8 filters: the same layer kinds (conv, batch norm,
  pool, leaky ReLU, logits), half the graph to trace."""
  inputs = keras.Input(tuple(image_shape))
  x = conv_bn_block(conv_bn_block(inputs, 8, name="block1"), 8, name="block2")
  outputs = keras.layers.Dense(num_classes, name="logits")(keras.layers.Flatten()(x))
  return keras.Model(inputs, outputs, name="conv2")


def tiny_domain(root):
  return FewShotClassification(
      root=root, num_ways=3, num_shots=2, num_queries=3, meta_batch_size=2, image_size=16,
      normalization="unit", eval_batch_size=4, backbone=conv2)


def tiny_learner(domain, attenuation=True):
  keras.utils.set_random_seed(0)
  return MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1,
                     attenuation=TaskConditionedAttenuation() if attenuation else None,
                     task_reduction="sum")


class Variable:
  """A stand-in checkpoint: one variable whose value is the score."""

  def __init__(self):
    self.v = tf.Variable(0.0)
    self.checkpoint = tf.train.Checkpoint(v=self.v)


def test_best_checkpoints_keeps_the_top_k_and_their_files(tmp_path):
  best = validation.BestCheckpoints(str(tmp_path), keep=2)
  state = Variable()
  for step, score in ((1, 0.5), (2, 0.7), (3, 0.6), (4, 0.2), (5, 0.7), (6, 0.7)):
    state.v.assign(score)
    kept = best.record(step, score, state.checkpoint)
    assert kept == (step in (1, 2, 3, 5))  # step 6 ties with 2 and 5: the earlier ones stay
  assert [(e["step"], e["score"]) for e in best.entries()] == [(2, 0.7), (5, 0.7)]
  files = sorted(os.listdir(tmp_path))
  assert files == ["ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-5.data-00000-of-00001",
                   "ckpt-5.index", "scores.json"]
  state.v.assign(0.0)
  state.checkpoint.read(best.entries()[1]["path"]).assert_consumed()
  assert state.v.numpy() == pytest.approx(0.7)
  assert best.history() == {1: 0.5, 2: 0.7, 3: 0.6, 4: 0.2, 5: 0.7, 6: 0.7}
  # A crash after validating step 5 but before its regular checkpoint: resuming at step 4
  # forgets steps 5 and 6 (they are trained and validated again).
  best.forget_after(4)
  assert [e["step"] for e in best.entries()] == [2]
  assert best.history() == {1: 0.5, 2: 0.7, 3: 0.6, 4: 0.2}
  assert not any(name.startswith("ckpt-5") for name in os.listdir(tmp_path))


def test_trainer_validates_every_epoch_and_at_the_end(dataset_root, tmp_path):
  domain = tiny_domain(dataset_root)
  learner = tiny_learner(domain)
  calls = []
  validator = validation.Validator(learner, domain, num_episodes=4,
                                   summary_dir=str(tmp_path / "eval"))
  trainer = Trainer(learner, domain, str(tmp_path), num_iterations=7, jit_compile=False,
                    always_first_order=True,
                    validator=lambda step: calls.append(step) or validator(step),
                    validate_every=3, keep_best=2, summary_every=0, steps_per_call=5)
  Runner(trainer, checkpoint_every=3).train()
  assert calls == [3, 6, 7]
  assert sorted(trainer.best.history()) == [3, 6, 7]
  assert len(trainer.best.entries()) == 2
  with open(tmp_path / "best" / "scores.json") as f:
    assert len(json.load(f)["best"]) == 2
  assert os.listdir(tmp_path / "eval")  # TensorBoard summaries of the validation accuracy


def test_an_interrupted_validation_is_repeated_on_resume(dataset_root, tmp_path):
  domain = tiny_domain(dataset_root)

  class Interrupt:
    def __init__(self, at):
      self.at, self.calls = at, []

    def __call__(self, step):
      self.calls.append(step)
      if step == self.at:
        raise KeyboardInterrupt
      return 0.5

  first = Interrupt(at=4)
  trainer = Trainer(tiny_learner(domain), domain, str(tmp_path), num_iterations=6,
                    jit_compile=False,
                    always_first_order=True, validator=first, validate_every=2,
                    summary_every=0)
  with pytest.raises(KeyboardInterrupt):
    Runner(trainer, checkpoint_every=100).train()
  assert trainer.step == 4  # Ctrl-C saved a checkpoint at step 4
  second = Interrupt(at=None)
  trainer = Trainer(tiny_learner(domain), domain, str(tmp_path), num_iterations=6,
                    jit_compile=False,
                    always_first_order=True, validator=second, validate_every=2,
                    summary_every=0)
  Runner(trainer, checkpoint_every=100).train()
  assert second.calls == [4, 6]
  assert sorted(trainer.best.history()) == [2, 4, 6]


def test_ensemble_averages_the_logits_of_the_kept_checkpoints(dataset_root, tmp_path):
  domain = tiny_domain(dataset_root)
  learner = tiny_learner(domain)
  scores = iter([0.3, 0.9, 0.6])
  trainer = Trainer(learner, domain, str(tmp_path), num_iterations=3, jit_compile=False,
                    always_first_order=True, validator=lambda step: next(scores),
                    validate_every=1, keep_best=2,
                    summary_every=0)
  Runner(trainer).train()
  entries = trainer.best.entries()
  assert [e["step"] for e in entries] == [2, 3]
  evaluations, extra = trainer.evaluate(6, [1])
  best, ensemble = evaluations["test"], evaluations["test_ensemble"]
  assert [e["step"] for e in extra["validation"]["ensembled_checkpoints"]] == [2, 3]
  # By hand: predictions of each kept checkpoint, averaged.
  outputs = []
  for entry in entries:
    checkpoints.restore_weights(learner, entry["path"])
    outputs.append(predictions.predictions(learner, domain.eval_batches("test", 6), 1,
                                          vectorized=False)[0])
  _, labels = predictions.predictions(learner, domain.eval_batches("test", 6), 1,
                                     vectorized=False)
  mean_logits = (outputs[0] + outputs[1]) / 2
  by_hand = np.mean(np.argmax(mean_logits[:, 1], -1) == labels, axis=-1).mean()
  assert ensemble["accuracy_after_1_steps"]["mean"] == pytest.approx(by_hand)
  single = np.mean(np.argmax(outputs[0][:, 1], -1) == labels, axis=-1).mean()
  assert best["accuracy_after_1_steps"]["mean"] == pytest.approx(single)
  p = best["accuracy_after_1_steps"]["mean"]
  assert best["accuracy_after_1_steps"]["sqrt_p_1_minus_p"] == pytest.approx(
      np.sqrt(p * (1 - p)))


def test_vision_resume_equals_uninterrupted(dataset_root, tmp_path):
  """Sequential meta-gradients, first order for steps 0-1 then second order (from the
  resumed step 2), validation: resuming is bitwise. (No summaries: not read here, and their
  step would be traced by each of the three trainers.)"""
  domain = tiny_domain(dataset_root)

  def run(root, stops):
    for stop in stops:
      learner = tiny_learner(domain)
      validator = validation.Validator(learner, domain, num_episodes=2)
      Runner(Trainer(learner, domain, root, num_iterations=stop, jit_compile=False,
                     first_order_until=2, sequential_tasks=True, validator=validator,
                     validate_every=2, summary_every=0), checkpoint_every=2).train()
    return learner, validation.BestCheckpoints(os.path.join(root, "best")).history()

  (a, history_a), (b, history_b) = run(str(tmp_path / "a"), [4]), run(str(tmp_path / "b"),
                                                                       [2, 4])
  for x, y in zip(a.meta_variables, b.meta_variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
  assert history_a == history_b and sorted(history_a) == [2, 4]
