"""What a re-run does with a damaged run folder, and with work it redoes.

* A damaged checkpoint (truncated or altered data file, altered or truncated index, missing
  shard, unreadable state file) is found before anything is restored from it: the run sets it
  aside in checkpoints/damaged/, says so in one line and resumes from the newest intact one,
  ending with the weights of an uninterrupted run.
* best/ keeps no file that scores.json does not list, and drops a damaged entry with a warning.
* TensorBoard: a resumed run and a repeated evaluation replace their points instead of adding
  a second point at the same step.

The slower cases (every other kind of damage, an unreadable state file, every checkpoint
damaged, a resumed run's summaries) are in tests/train/test_damage_fallbacks.py (slow tier).
* The non-finite guard's counts and smoke mode survive a resume.

The runs are test_resume's small sinusoid (8 hidden units, XLA off)."""

import logging as std_logging
import os
import shutil
from collections import Counter

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.meta.learner import MetaLearner
from l2f_tf.train import checkpoints, event_files, settings, validation
from l2f_tf.train.evaluation import write_eval_summaries
from l2f_tf.train.guard import NonFiniteGuard
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer
from tests.train.test_resume import SmallSinusoid, checkpoint_files, train

DATA = ".data-00000-of-00001"


def truncate(path):
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[:len(content) // 2])


def flip_byte(path, position=0.5):
  with open(path, "rb") as f:
    content = bytearray(f.read())
  content[int(len(content) * position)] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(content))


DAMAGES = {
    "truncated_data": lambda prefix: truncate(prefix + DATA),
    "altered_data": lambda prefix: flip_byte(prefix + DATA),
    "altered_index": lambda prefix: flip_byte(prefix + ".index", 0.3),
    "truncated_index": lambda prefix: truncate(prefix + ".index"),
    "missing_shard": lambda prefix: os.remove(prefix + DATA),
}


def small_checkpoint(directory):
  values = tf.Variable(np.arange(500, dtype=np.float32))
  matrix = tf.Variable(np.ones([20, 20], np.float32))
  return tf.train.Checkpoint(values=values, matrix=matrix).write(os.path.join(directory, "c"))


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damage_finds_every_kind_of_damage(tmp_path, kind):
  prefix = small_checkpoint(str(tmp_path))
  assert checkpoints.damage(prefix) is None
  DAMAGES[kind](prefix)
  why = checkpoints.damage(prefix)
  assert why and "\n" not in why and "{{" not in why, why


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The weights of 10 uninterrupted meta-iterations."""
  return train(tmp_path_factory.mktemp("reference"), 10).values


@pytest.fixture(scope="module")
def trained_to_8(tmp_path_factory):
  """A folder trained to 8 (checkpoints 4 and 8), copied by each test."""
  root = tmp_path_factory.mktemp("trained_to_8")
  train(root, 8)
  return root


def assert_same(values, expected):
  assert len(values) == len(expected)
  for a, b in zip(values, expected):
    np.testing.assert_array_equal(a, b)


def copy_of(folder, tmp_path):
  root = tmp_path / "run"
  shutil.copytree(folder, root)
  return root


def check_fallback(trained_to_8, reference, tmp_path, caplog, kind):
  """A damaged ckpt-8: set aside, resumed from ckpt-4, the reference's weights."""
  root = copy_of(trained_to_8, tmp_path)
  DAMAGES[kind](str(root / "checkpoints" / "ckpt-8"))
  with caplog.at_level(std_logging.WARNING):
    run = train(root, 10)
  warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(warnings) == 1 and "ckpt-8" in warnings[0] and "ckpt-4" in warnings[0], warnings
  assert "damaged/" in warnings[0]
  assert run.step == 10
  assert_same(run.values, reference)  # Lost one checkpoint interval, then the same run.
  assert os.listdir(root / "checkpoints" / "damaged")  # kept for a look, out of the way
  assert checkpoint_files(root / "checkpoints") == ["ckpt-10.index", "ckpt-4.index",
                                                    "ckpt-8.index"]
  assert checkpoints.latest_step(str(root / "checkpoints")) == 10


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(
    trained_to_8, reference, tmp_path, caplog):
  check_fallback(trained_to_8, reference, tmp_path, caplog, "truncated_data")
  # (Every other kind of damage: tests/train/test_damage_fallbacks.py, slow tier.)


def test_a_state_file_behind_its_checkpoints_still_prunes(trained_to_8, tmp_path):
  """A kill (or a full disk) after a save's files are in place but before TensorFlow lists
  them: that save does not count (its files are deleted), the run resumes from the listed one
  and the manager prunes as usual."""
  root = copy_of(trained_to_8, tmp_path)
  saved = os.path.getmtime(root / "checkpoints" / "ckpt-4.index")
  (root / "checkpoints" / "checkpoint").write_text(  # as TensorFlow wrote it after ckpt-4
      'model_checkpoint_path: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-4"\n'
      f"all_model_checkpoint_timestamps: {saved}\n")
  (root / "checkpoints" / "ckpt-12.index").write_bytes(b"")  # a merge cut short
  assert train(root, 16).step == 16
  assert not os.path.exists(root / "checkpoints" / "damaged")  # not damage: unfinished
  assert checkpoint_files(root / "checkpoints") == ["ckpt-12.index", "ckpt-16.index",
                                                    "ckpt-8.index"]


def test_restoring_damaged_weights_is_one_line(trained_to_8, tmp_path):
  root = copy_of(trained_to_8, tmp_path)
  prefix = str(root / "checkpoints" / "ckpt-8")
  DAMAGES["altered_data"](prefix)

  class Learner:
    def checkpoint_parts(self):
      return {}
  with pytest.raises(ValueError, match=r"ckpt-8 is damaged \(.*Checksum.*\)\. Run the run's "
                     "command again"):
    checkpoints.restore_weights(Learner(), prefix)


class OneVariable:
  def __init__(self):
    self.v = tf.Variable(0.0)
    self.checkpoint = tf.train.Checkpoint(v=self.v)


def test_best_keeps_no_unlisted_file_and_drops_a_damaged_entry(tmp_path, caplog):
  best = validation.BestCheckpoints(str(tmp_path), keep=2)
  state = OneVariable()
  for step, score in ((1, 0.5), (2, 0.7), (3, 0.6)):
    state.v.assign(score)
    best.record(step, score, state.checkpoint)
  # A kill between saving a checkpoint and recording it, and one between recording a better one
  # and deleting the one it pushed out, leave files that scores.json does not list.
  state.checkpoint.write(str(tmp_path / "ckpt-4"))
  state.checkpoint.write(str(tmp_path / "ckpt-1"))
  DAMAGES["altered_data"](str(tmp_path / "ckpt-2"))
  with caplog.at_level(std_logging.WARNING):
    best.tidy()
  assert [e["step"] for e in best.entries()] == [3]
  assert sorted(os.listdir(tmp_path)) == ["ckpt-3" + DATA, "ckpt-3.index", "scores.json"]
  assert any("best checkpoint" in r.getMessage() and "ckpt-2" in r.getMessage() and
             "damaged" in r.getMessage() for r in caplog.records)
  assert best.history() == {1: 0.5, 2: 0.7, 3: 0.6}  # the scores themselves stay


def points(directory):
  """Counter of (tag, step) over the event files of ``directory``."""
  found = Counter()
  for name in os.listdir(directory):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
      for value in event.summary.value:
        found[(value.tag, int(event.step))] += 1
  return found


def test_a_repeated_evaluation_replaces_its_points(tmp_path):
  directory = str(tmp_path)
  validation_writer = tf.summary.create_file_writer(directory)  # the Validator's, same folder
  with validation_writer.as_default():
    tf.summary.scalar("val/accuracy", 0.5, step=10)
  validation_writer.flush()
  figures = {"test": {"accuracy_after_1_steps": {"mean": 0.5}}}
  write_eval_summaries(directory, 10, figures)
  write_eval_summaries(directory, 10, figures)  # killed before recorded, or other settings
  assert points(directory) == {("test/accuracy_after_1_steps", 10): 1, ("val/accuracy", 10): 1}
  write_eval_summaries(directory, 20, figures)  # trained on: the step-10 point stays
  assert points(directory)[("test/accuracy_after_1_steps", 10)] == 1
  assert points(directory)[("test/accuracy_after_1_steps", 20)] == 1


def test_drop_after_keeps_the_points_up_to_the_step(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default():
    for step in range(6):
      tf.summary.scalar("loss", float(step), step=step)
  writer.close()
  assert event_files.drop_after(str(tmp_path), 3) == 2
  assert sorted(s for _, s in points(str(tmp_path))) == [0, 1, 2, 3]
  assert event_files.drop_after(str(tmp_path), 3) == 0


def runner_with(root, guard):
  keras.utils.set_random_seed(0)
  domain = SmallSinusoid(num_shots=3, meta_batch_size=4)
  learner = MetaLearner(domain.build_model(), domain.loss_fn)
  trainer = Trainer(learner, domain, str(root), num_iterations=4, jit_compile=False,
                    summary_every=0, guard=guard)
  return Runner(trainer)


def test_the_non_finite_counts_survive_a_resume(tmp_path):
  first = runner_with(tmp_path, NonFiniteGuard(max_consecutive=10))
  first.trainer.guard.record(0, skipped=3, consecutive=2)  # as if 3 were skipped, 2 in a row
  first.save()
  resumed = runner_with(tmp_path, NonFiniteGuard(max_consecutive=10)).trainer.guard
  assert (resumed.total, resumed.consecutive) == (3, 2)


def test_smoke_mode_is_part_of_the_experiment(tmp_path, monkeypatch):
  monkeypatch.setenv("L2F_TF_SMOKE", "1")
  smoke_root, real_root = tmp_path / "smoke", tmp_path / "real"
  assert train(smoke_root, 10).step == 3
  monkeypatch.delenv("L2F_TF_SMOKE")
  with pytest.raises(settings.ConfigMismatchError, match=r"smoke_mode: True in the run, "
                     "False now"):
    train(smoke_root, 10)
  train(real_root, 2)
  monkeypatch.setenv("L2F_TF_SMOKE", "1")
  with pytest.raises(settings.ConfigMismatchError, match=r"holds a real run \(trained to "
                     r"meta-iteration 2\), and L2F_TF_SMOKE is set.*overwrite its results"):
    train(real_root, 2)
