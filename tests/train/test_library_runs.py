"""Runs made in Python are as safe as command-line runs: the Runner refuses a trained folder
made with other settings (resume=True continues it), holds the folder's lock, and the same
snippet gives the same weights every time (Domain.build_model seeds them)."""

import json
import os

import numpy as np
import pytest

import l2f_tf
from l2f_tf import run_folder
from l2f_tf.run_folder import RunFolder, RunFolderError, RunLock
from l2f_tf.train import experiment, restore, settings


@pytest.fixture(autouse=True)
def release_locks():
  yield
  run_folder.release_locks()


def trainer(root, num_inner_steps=1, num_iterations=2, l2f=True, inner_lr=0.01):
  """The README's library snippet, tiny."""
  domain = l2f_tf.SinusoidRegression(num_shots=5, meta_batch_size=2)
  learner = l2f_tf.MetaLearner(
      domain.build_model(), domain.loss_fn, num_inner_steps=num_inner_steps, inner_lr=inner_lr,
      attenuation=l2f_tf.TaskConditionedAttenuation() if l2f else None)
  return l2f_tf.Trainer(learner, domain, root, num_iterations=num_iterations, summary_every=0)


def weights(learner):
  return [v.numpy() for v in learner.meta_variables]


def test_the_same_snippet_gives_the_same_weights_in_fresh_folders(tmp_path):
  first, second = trainer(str(tmp_path / "a")), trainer(str(tmp_path / "b"))
  for x, y in zip(weights(first.learner), weights(second.learner)):  # model and attenuator
    np.testing.assert_array_equal(x, y)
  l2f_tf.Runner(first).train()
  l2f_tf.Runner(second).train()
  for x, y in zip(weights(first.learner), weights(second.learner)):
    np.testing.assert_array_equal(x, y)
  # Another seed, other weights; the learner's own seed fixes the attenuator of any model.
  domain = l2f_tf.SinusoidRegression(num_shots=5)
  assert not np.array_equal(domain.build_model(1).weights[0].numpy(),
                            domain.build_model(0).weights[0].numpy())
  attenuators = [l2f_tf.MetaLearner(domain.build_model(seed), domain.loss_fn, seed=7,
                                    attenuation=l2f_tf.TaskConditionedAttenuation())
                 for seed in (0, 1)]
  np.testing.assert_array_equal(*(a.attenuator_variables[0].numpy() for a in attenuators))


def test_the_command_line_builds_the_learner_the_snippet_builds():
  """build_learner (the command line) and Domain.build_model + MetaLearner (the library) draw
  the same initial weights from the same seed."""
  domain = l2f_tf.SinusoidRegression(num_shots=5)
  restore.parse_domain(["sinusoid/l2f_5shot.gin"])
  from_gin = experiment.build_learner(domain)
  by_hand = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn,
                               attenuation=l2f_tf.TaskConditionedAttenuation())
  for x, y in zip(weights(from_gin), weights(by_hand)):
    np.testing.assert_array_equal(x, y)


def test_a_trained_folder_refuses_other_settings_and_resume_continues_it(tmp_path):
  root = str(tmp_path / "lib")
  l2f_tf.Runner(trainer(root, num_inner_steps=2)).train()
  run_folder.release_locks()
  with open(RunFolder(root).settings) as f:
    recorded = json.load(f)
  assert recorded["settings"]["MetaLearner.num_inner_steps"] == "2"
  checkpoint = os.path.join(root, "checkpoints", "checkpoint")
  with open(checkpoint) as f:
    before = f.read()
  with pytest.raises(settings.ConfigMismatchError) as error:
    l2f_tf.Runner(trainer(root, num_inner_steps=1))
  message = str(error.value)
  assert f"{root} holds a run trained to meta-iteration 2" in message
  assert "MetaLearner.num_inner_steps: 2 in the run, 1 now" in message
  assert "InnerLearningRates.num_steps: 2 in the run, 1 now" in message
  assert "Runner(..., resume=True)" in message and "a new root_dir" in message
  with pytest.raises(settings.ConfigMismatchError, match="TaskConditionedAttenuation"):
    l2f_tf.Runner(trainer(root, num_inner_steps=2, l2f=False))
  with open(checkpoint) as f:
    assert f.read() == before  # nothing was touched
  # Longer training and other logging are the same experiment; resume=True takes any change.
  assert l2f_tf.Runner(trainer(root, num_inner_steps=2, num_iterations=3)).train() == 3
  run_folder.release_locks()
  runner = l2f_tf.Runner(trainer(root, num_inner_steps=2, num_iterations=3, inner_lr=0.02),
                         resume=True)
  assert runner.trainer.step == 3
  with open(RunFolder(root).settings) as f:  # the resumed run's settings are the new ones
    assert json.load(f)["settings"]["InnerLearningRates.inner_lr"] == "0.02"


def test_a_folder_that_never_trained_takes_the_new_settings(tmp_path):
  root = str(tmp_path / "lib")
  l2f_tf.Runner(trainer(root, num_inner_steps=2))  # no training: no checkpoint
  run_folder.release_locks()
  l2f_tf.Runner(trainer(root, num_inner_steps=1))
  with open(RunFolder(root).settings) as f:
    assert json.load(f)["settings"]["MetaLearner.num_inner_steps"] == "1"


def test_a_library_runner_holds_the_folder_lock(tmp_path):
  root = str(tmp_path / "lib")
  l2f_tf.Runner(trainer(root))
  with pytest.raises(RunFolderError, match="Another run is using"):
    RunLock(root).acquire()
  run_folder.release_locks()
  RunLock(root).acquire().release()


def test_the_command_line_refuses_a_library_run_of_other_settings(tmp_path):
  """A folder trained from Python has no operative_config.gin: the command line's gin check
  cannot see it, the Runner's settings check does."""
  root = str(tmp_path / "lib")
  l2f_tf.Runner(trainer(root, num_inner_steps=2, num_iterations=1)).train()
  run_folder.release_locks()
  restore.setup_run(root, ["sinusoid/maml_5shot.gin"], ["Trainer.num_iterations = 1"])
  with pytest.raises(settings.ConfigMismatchError, match="--resume on the command line"):
    experiment.run_experiment(root)
