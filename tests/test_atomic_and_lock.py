"""Atomic writes (l2f_tf.atomic), the run-folder lock and the record of finished stages."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from l2f_tf import atomic
from l2f_tf.run_folder import RunFolder, RunFolderError, RunLock


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / "results.json")
  atomic.write_json(path, {"a": 1})
  with pytest.raises(RuntimeError):
    with atomic.path_for(path) as tmp:
      with open(tmp, "w") as f:
        f.write('{"a": ')  # half a file
      raise RuntimeError("killed while writing")
  assert open(path).read() == '{\n  "a": 1\n}\n'
  assert os.listdir(tmp_path) == ["results.json"]


def test_the_temporary_name_keeps_the_extension(tmp_path):
  with atomic.path_for(str(tmp_path / "figure.png")) as tmp:
    assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
    open(tmp, "wb").close()
  assert os.listdir(tmp_path) == ["figure.png"]


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path):
  """results.json and figures are readable by others (umask 022: 0o644), not mkstemp's 0o600."""
  old = os.umask(0o022)
  try:
    path = atomic.write_json(str(tmp_path / "results.json"), {"a": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
  finally:
    os.umask(old)
  assert os.stat(path).st_mode & 0o777 == os.stat(plain).st_mode & 0o777 == 0o644


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
  path = str(tmp_path / "saved_model")
  for version in ("old", "new"):
    with atomic.folder_for(path) as tmp:
      os.makedirs(os.path.join(tmp, "variables"))
      with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
        f.write(version)
  assert open(os.path.join(path, "saved_model.pb")).read() == "new"
  with pytest.raises(RuntimeError):
    with atomic.folder_for(path) as tmp:
      os.makedirs(tmp)
      raise RuntimeError("killed while exporting")
  assert open(os.path.join(path, "saved_model.pb")).read() == "new"
  assert os.listdir(tmp_path) == ["saved_model"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
  (tmp_path / ".results.json.abc.tmp.json").write_text("{")
  (tmp_path / ".saved_model.xyz.tmp").mkdir()
  (tmp_path / "results.json").write_text("{}")
  assert atomic.remove_leftovers(str(tmp_path)) == 2
  assert os.listdir(tmp_path) == ["results.json"]


def test_a_cached_folder_is_checked_and_written_again_when_it_cannot_be_used(tmp_path):
  root, params = str(tmp_path / "cache" / "thing"), {"p": 1}
  writes = []

  def write(folder):
    writes.append(folder)
    (pathlib.Path(folder) / "sub").mkdir()
    (pathlib.Path(folder) / "sub" / "a.txt").write_text("a")
    atomic.write_metadata(folder, "meta.json", params, note="extra")

  assert atomic.cached_folder(root, "meta.json", params, write, "thing") == root
  assert atomic.cached_folder(root, "meta.json", params, write, "thing") == root
  assert len(writes) == 1 and atomic.folder_problem(root, "meta.json", params) is None
  assert json.loads((tmp_path / "cache" / "thing" / "meta.json").read_text())["note"] == "extra"
  assert (atomic.folder_problem(root, "meta.json", {"p": 2}) ==
          "meta.json does not hold these parameters")
  text = os.path.join(root, "sub", "a.txt")
  for damage, problem in [
      (lambda: open(text, "w").write("b"), "a file is not the one that was written"),
      (lambda: open(text, "w").write("bb"), f"{text} is not the size it was written with"),
      (lambda: os.remove(text), f"{text} is missing"),
      (lambda: open(os.path.join(root, "new.txt"), "w").close(),
       f"{os.path.join(root, 'new.txt')} was added"),
      (lambda: atomic.write_json(os.path.join(root, "meta.json"), {"parameters": params}),
       f"meta.json is not of format {atomic.CACHE_FORMAT}: an older l2f_tf wrote it")]:
    damage()
    assert atomic.folder_problem(root, "meta.json", params) == problem
    assert atomic.cached_folder(root, "meta.json", params, write, "thing") == root
    assert atomic.folder_problem(root, "meta.json", params) is None
    assert os.listdir(tmp_path / "cache") == ["thing"]  # The damaged copy is gone.
  assert len(writes) == 6


def test_stages_are_done_only_for_the_same_key(tmp_path):
  folder = RunFolder(str(tmp_path))
  assert not folder.stage_done("evaluate", {"step": 3})
  folder.finish_stage("evaluate", {"step": 3, "eval_steps": (1, 2)})
  folder.finish_stage("export", {"step": 3})
  assert folder.stage_done("evaluate", {"step": 3, "eval_steps": [1, 2]})
  assert not folder.stage_done("evaluate", {"step": 4, "eval_steps": [1, 2]})
  assert folder.stage_done("export", {"step": 3})


def test_a_root_dir_that_is_a_file_or_cannot_be_created_is_named(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(RunFolderError, match="is a file, not a folder"):
    RunFolder(str(tmp_path / "file")).prepare()
  with pytest.raises(RunFolderError, match="Cannot create the run folder"):
    RunFolder(str(tmp_path / "file" / "run")).prepare()


HOLDER = textwrap.dedent("""
    import sys, time
    from l2f_tf.run_folder import RunLock
    RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_one_run_per_folder_and_a_dead_holder_is_taken_over(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunFolderError, match=f"Another run is using .*PID {holder.pid}"):
      RunLock(str(tmp_path)).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # The OS released the dead holder's lock; its PID is still written in the file.
  assert f"PID {holder.pid}" in (tmp_path / ".lock").read_text()
  with RunLock(str(tmp_path)) as lock:
    assert f"PID {os.getpid()}" in (tmp_path / ".lock").read_text()
    assert lock.path == str(tmp_path / ".lock")
  assert (tmp_path / ".lock").read_text() == ""  # released cleanly: nothing to take over


def test_a_root_dir_that_is_not_writable_is_named(tmp_path, monkeypatch):
  monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere
  with pytest.raises(RunFolderError, match="is not writable: choose a --root_dir"):
    RunFolder(str(tmp_path)).prepare()


def test_a_checkpoint_save_cut_short_leaves_nothing_behind(tmp_path):
  """TensorFlow writes a checkpoint into <prefix>_temp/ before merging it; a kill there leaves
  that folder, which the next run deletes (the kill fuzzing found it). A full disk while it
  writes the list of checkpoints leaves its checkpoint.tmp<hex> (tests/test_disk_full.py)."""
  folder = RunFolder(str(tmp_path))
  for directory in (folder.checkpoints, folder.best):
    os.makedirs(os.path.join(directory, "ckpt-4_temp"))
  for name in ("ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-1.data-00000-of-00001",
               "checkpoint.tmp0123456789abcdef0123456789abcdef"):
    open(os.path.join(folder.checkpoints, name), "w").close()  # ckpt-1: pruned half-way
  (tmp_path / ".stages.json.x.tmp.json").write_text("{")
  assert folder.remove_leftovers() == 5
  assert sorted(os.listdir(folder.checkpoints)) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
  assert os.listdir(folder.best) == []
