"""restore.setup_run checks a run's configuration before it writes anything: binding types, a
trained folder given another experiment, a folder whose run never trained, bad paths."""

import logging
import os

import gin
import pytest
import tensorflow as tf

from l2f_tf import config, run_folder
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import restore, settings

MAML = "gin/sinusoid/maml_5shot.gin"
L2F = "gin/sinusoid/l2f_5shot.gin"


@pytest.fixture(autouse=True)
def release_locks():
  yield
  run_folder.release_locks()


def fake_training(root):
  """A checkpoint in the run folder, as if the run had trained (what setup_run looks for)."""
  checkpoint = tf.train.Checkpoint(step=tf.Variable(7))
  tf.train.CheckpointManager(checkpoint, RunFolder(root).checkpoints, 1).save(7)


def stored(root):
  return open(RunFolder(root).config).read()


def test_a_binding_of_the_wrong_type_is_refused_before_anything_is_written(tmp_path):
  root = str(tmp_path / "run")
  with pytest.raises(ValueError, match=r"Trainer.num_iterations = '200' is a str, but it must be "
                                       r"int.*200, not '200'"):
    restore.setup_run(root, [MAML], ["Trainer.num_iterations = '200'"])
  assert not os.path.exists(root)
  with pytest.raises(ValueError, match="Trainer.jit_compile = 1 is a int, but it must be bool"):
    restore.setup_run(root, [MAML], ["Trainer.jit_compile = 1"])
  with pytest.raises(ValueError, match=r"num_iterations = 2000.0 is a float, but it must be int "
                                       r"\(write 2000: 2e3 and 2000.0 are floats in gin\)"):
    restore.setup_run(root, [MAML], ["Trainer.num_iterations = 2e3"])
  with pytest.raises(ValueError, match=r"network_grad_clip = 'x' .* must be float or None"):
    restore.setup_run(root, [MAML], ["Trainer.network_grad_clip = 'x'"])
  assert not os.path.exists(root)


def test_well_typed_bindings_and_every_gin_file_pass():
  for path in ("gin/sinusoid/l2f_5shot.gin", "gin/glyphs/l2f_5shot.gin",
               "gin/rl/navigation2d_l2f.gin", "gin/mini_imagenet/conv4_l2f_5shot.gin"):
    if not os.path.exists(path):
      continue
    gin.clear_config()
    config.parse([path], ["Trainer.outer_lr = 1", "Trainer.network_grad_clip = None"])
    config.check_binding_types()  # an int for a float, None for an Optional: fine


def test_typos_in_paths_and_bindings_name_the_fix(tmp_path):
  with pytest.raises(ValueError, match="--gin_file gin/sinusoid/maml_5shto.gin does not exist"):
    restore.setup_run(str(tmp_path), ["gin/sinusoid/maml_5shto.gin"], [])
  with pytest.raises(ValueError, match="(?s)Bad gin configuration.*num_iteratons.*Did you mean "
                                       "num_iterations\\?"):
    restore.setup_run(str(tmp_path), [MAML], ["Trainer.num_iteratons = 3"])
  with pytest.raises(ValueError, match="(?s)No configurable matching 'Trainr'.*Did you mean "
                                       "Trainer"):
    restore.setup_run(str(tmp_path), [MAML], ["Trainr.num_iterations = 3"])


def test_a_trained_folder_refuses_another_experiment(tmp_path):
  root = str(tmp_path)
  restore.setup_run(root, [MAML], [])
  fake_training(root)
  before = stored(root)
  with pytest.raises(restore.ConfigMismatchError) as error:
    restore.setup_run(root, [L2F], [])
  message = str(error.value)
  assert f"{root} holds a run trained to meta-iteration 7" in message
  assert RunFolder(root).config in message and f"--gin_file={L2F}" in message
  assert "MetaLearner.attenuation: None in the run, @task_conditioned_attenuation() now" in message
  assert "--resume" in message
  # A binding that changes the experiment, without --gin_file, is refused too.
  with pytest.raises(restore.ConfigMismatchError, match="Trainer.outer_lr: 0.001 in the run, "
                                                       "0.01 now"):
    restore.setup_run(root, [], ["Trainer.outer_lr = 0.01"])
  assert stored(root) == before  # nothing was damaged


def test_a_trained_folder_resumes_with_more_iterations_or_with_resume(tmp_path):
  root = str(tmp_path)
  restore.setup_run(root, [MAML], [])
  fake_training(root)
  restore.setup_run(root, [MAML], ["Trainer.num_iterations = 99", "Runner.checkpoint_every = 5"])
  assert gin.query_parameter("Trainer.num_iterations") == 99
  assert "MetaLearner.attenuation = None" in stored(root)
  restore.setup_run(root, [L2F], ["Trainer.outer_lr = 0.01"], resume=True)
  assert gin.query_parameter("Trainer.outer_lr") == 0.01  # bindings on top of the stored config
  assert "MetaLearner.attenuation = None" in stored(root)  # --gin_file ignored


def test_a_folder_whose_run_never_trained_starts_afresh_from_the_new_gin_file(tmp_path):
  root = str(tmp_path)
  restore.setup_run(root, [MAML], [])
  assert "MetaLearner.attenuation = None" in stored(root)
  restore.setup_run(root, [L2F], [])  # no checkpoint: the new file wins
  assert "@task_conditioned_attenuation()" in stored(root)
  restore.setup_run(root, [], [])  # no --gin_file: the folder's own config
  assert "@task_conditioned_attenuation()" in stored(root)


def test_resumable_changes_are_the_ones_that_leave_the_experiment_alone():
  old = {"Trainer.num_iterations": "10", "Trainer.outer_lr": "0.001",
         "Runner.checkpoint_every": "5", "FewShotClassification.root": "'/a'"}
  new = {"Trainer.num_iterations": "20", "Trainer.outer_lr": "0.001",
         "Runner.checkpoint_every": "7", "FewShotClassification.root": "'/b'",
         "Trainer.seed": "3"}
  assert settings.differences(old, new) == [("Trainer.seed", "(default)", "3")]


def test_a_parsed_config_still_takes_configurables_imported_later():
  """Meta-RL imports tf-agents on first use (the rl extra), which registers gin configurables
  of its own; gin refuses those once a config is locked (finalized)."""
  config.parse([MAML], [])
  assert not gin.config_is_locked()

  def imported_later(x=1):
    return x

  gin.external_configurable(imported_later, "imported_later_by_this_test")


def test_a_reader_of_a_damaged_settings_file_says_it_reads_none(tmp_path, caplog):
  """settings.stored only reads: its warning says the settings are not read (a run that
  records its settings says instead that it writes the file again)."""
  folder = RunFolder(str(tmp_path))
  for text in ("{not json", '{"format": 0, "settings": {}}'):
    with open(folder.settings, "w") as f:
      f.write(text)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      assert settings.stored(folder) is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("Ignoring ")
    assert messages[0].endswith("its settings are not read."), messages
  settings.record(folder, {"MetaRLTrainer.seed": "3"})
  assert settings.stored(folder) == {"MetaRLTrainer.seed": "3"}
