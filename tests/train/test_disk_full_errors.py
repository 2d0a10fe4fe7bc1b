"""A full disk becomes one line (l2f_tf.train.disk_full), from each shape it was seen to take
under real runs (tests/test_disk_full.py fills a tmpfs; the messages below are copied from
there): TensorFlow's checkpoint, TensorBoard and SavedModel writers, Python's atomic writes and
PIL's savefig, gin's proxy of a re-raised error; the Runner raises it to a library user."""

import errno
import os
import types

import gin
import pytest
import tensorflow as tf

from l2f_tf import atomic
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import disk_full
from l2f_tf.train.runner import Runner

SAVE_V2 = ("{{function_node __wrapped__SaveV2_dtypes_35_device_/job:localhost/replica:0/task:0/"
           "device:CPU:0}} %s/checkpoints/ckpt-5_temp/part-00000-of-00001.data-00000-of-00001"
           ".tempstate4779581985526788654; No space left on device [Op:SaveV2]")
WRITE_SUMMARY = ("{{function_node __wrapped__WriteSummary_device_/job:localhost/replica:0/"
                 "task:0/device:CPU:0}} %s/train/events.out.tfevents.1796515110.vm.8862.0.v2; "
                 "No space left on device\n\tFailed to flush 11 events to %s/train/"
                 "events.out.tfevents.1796515110.vm.8862.0.v2\n\tCould not flush events file. "
                 "[Op:WriteSummary]")
SAVED_MODEL_PB = ("%s/.saved_model.3p1k9w6b.tmp/saved_model.pb.tmpf92508f3519f4caebbb9146bf01"
                  "02bd1; No space left on device")
CHECKPOINT_LIST = ("%s/checkpoints/checkpoint.tmp0123456789abcdef0123456789abcdef; No space left "
                   "on device")


def run_folder_with_checkpoint(tmp_path, step=4) -> RunFolder:
  """A run folder whose checkpoints/checkpoint lists ckpt-<step> (its files exist)."""
  folder = RunFolder(str(tmp_path))
  os.makedirs(folder.checkpoints)
  for suffix in (".index", ".data-00000-of-00001"):
    open(os.path.join(folder.checkpoints, f"ckpt-{step}{suffix}"), "w").close()
  with open(os.path.join(folder.checkpoints, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "ckpt-{step}"\nall_model_checkpoint_paths: "ckpt-{step}"\n')
  return folder


def translated(error: BaseException, root: str) -> disk_full.DiskFullError:
  with pytest.raises(disk_full.DiskFullError) as caught:
    with disk_full.reported(root):
      raise error
  assert caught.value.__cause__ is error
  return caught.value


def line(root, path, what, checkpoint="the last checkpoint, ckpt-4, is intact"):
  return (f"No space left on device while writing {path} ({what}): free some space on "
          f"{disk_full.mount_point(root)}, then run the same command to resume ({checkpoint}).")


@pytest.mark.parametrize("text, written, what", [
    (SAVE_V2, "checkpoints/ckpt-5", "the checkpoint of meta-iteration 5"),
    (WRITE_SUMMARY, "train/events.out.tfevents.1796515110.vm.8862.0.v2",
     "TensorBoard summaries of training"),
    (CHECKPOINT_LIST, "checkpoints/checkpoint", "the list of checkpoints"),
])
def test_tensorflow_writers_name_the_file_under_its_final_name(tmp_path, text, written, what):
  root = run_folder_with_checkpoint(tmp_path).root
  error = tf.errors.ResourceExhaustedError(None, None, text.replace("%s", root))
  full = translated(error, root)
  assert str(full) == line(root, os.path.join(root, written), what)
  assert isinstance(full, OSError) and full.errno == errno.ENOSPC
  assert full.filename == os.path.join(root, written)


def test_atomic_writers_name_their_destination(tmp_path):
  """TensorFlow names the SavedModel's temporary folder and PIL names no file: the atomic
  writers note the file they were writing."""
  root = run_folder_with_checkpoint(tmp_path).root
  folder = RunFolder(root)
  with pytest.raises(tf.errors.ResourceExhaustedError) as caught:
    with atomic.folder_for(folder.saved_model):
      raise tf.errors.ResourceExhaustedError(None, None, SAVED_MODEL_PB % root)
  assert str(translated(caught.value, root)) == line(root, folder.saved_model, "the SavedModel")
  figure = folder.figure("test_tasks.png")
  with pytest.raises(OSError) as caught:
    with atomic.path_for(figure):
      raise OSError(errno.ENOSPC, "No space left on device")  # PIL's: no file name
  assert str(translated(caught.value, root)) == line(root, figure, "a figure")
  assert sorted(os.listdir(root)) == ["checkpoints"]  # and no temporary is left


def test_a_python_write_before_the_first_checkpoint_says_it_starts_afresh(tmp_path):
  root = str(tmp_path)
  error = OSError(errno.ENOSPC, "No space left on device", os.path.join(root, "settings.json"))
  assert str(translated(error, root)) == line(
      root, os.path.join(root, "settings.json"), "the run's settings",
      "no checkpoint was written yet, so it starts afresh")
  quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), os.path.join(root, "results.json"))
  assert str(translated(quota, root)).startswith(
      f"Disk quota exceeded while writing {root}/results.json (the evaluation results): free "
      f"some space on {disk_full.mount_point(root)} (or raise your quota), then")


def test_gins_proxy_of_a_full_disk_is_recognised(tmp_path):
  """gin re-raises an error from a configurable as a proxy whose errno and filename are lost;
  its text and the atomic writer's note remain."""
  root = str(tmp_path)

  @gin.configurable
  def writes():
    with atomic.path_for(os.path.join(root, "results.json")):
      raise OSError(errno.ENOSPC, "No space left on device")

  with pytest.raises(OSError) as caught:
    writes()
  assert caught.value.errno is None  # (gin's proxy)
  assert f"writing {root}/results.json (the evaluation results)" in str(
      translated(caught.value, root))


@pytest.mark.parametrize("error", [
    tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[9999]"),
    OSError(errno.EACCES, "Permission denied", "/x"), ValueError("a user error"),
])
def test_other_errors_pass_unchanged(tmp_path, error):
  with pytest.raises(type(error)) as caught:
    with disk_full.reported(str(tmp_path)):
      raise error
  assert caught.value is error


def test_a_library_user_gets_the_line_from_runner_train_and_run(tmp_path):
  """Runner.train and Runner.run raise DiskFullError, an OSError whose message is the line."""
  folder = run_folder_with_checkpoint(tmp_path)
  summary = tf.errors.ResourceExhaustedError(None, None,
                                             WRITE_SUMMARY.replace("%s", folder.root))

  def fail():
    raise summary

  trainer = types.SimpleNamespace(begin=fail)
  runner = types.SimpleNamespace(folder=folder, trainer=trainer, train=fail)
  for method in (Runner.train, Runner.run):
    with pytest.raises(OSError) as caught:
      method(runner)
    assert isinstance(caught.value, disk_full.DiskFullError), method
    assert str(caught.value).startswith("No space left on device while writing "
                                        f"{folder.train_summaries}/events.out"), method
    assert str(caught.value).endswith("(the last checkpoint, ckpt-4, is intact).")


