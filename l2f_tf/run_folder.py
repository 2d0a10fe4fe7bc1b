"""The layout of a run directory: the one place that names what a run writes.

```
<root>/operative_config.gin   the full config actually used (reloaded on resume)
<root>/settings.json          the experiment's settings, read from its objects (checked on resume)
<root>/checkpoints/           the latest checkpoints (weights, optimizer, step)
<root>/checkpoints/damaged/   checkpoints found damaged, set aside (`l2f_tf.train.checkpoints`)
<root>/train/  <root>/eval/   TensorBoard event files
<root>/best/                  best validated weights and their scores (few-shot classification)
<root>/results.json           the final evaluation (mean, 95% CI, n)
<root>/saved_model/           the exported learner
<root>/<name>.png             figures, each with <name>.json: the numbers it draws
<root>/stages.json            which after-training stages are finished, and for which step
<root>/.lock                  held by the one process running in the folder
```

Every file here is written atomically (`l2f_tf.atomic`). Every tool finds these paths here,
so a change of layout is a change of this file only.
"""

import atexit
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import socket
from typing import Any, Dict, Optional

from absl import logging

from l2f_tf import atomic

CONFIG_NAME = "operative_config.gin"
LOCK_NAME = ".lock"
STAGES_NAME = "stages.json"
SETTINGS_NAME = "settings.json"
# What each entry of a run folder is, in words (RunFolder.describe).
_WHAT = {CONFIG_NAME: "the run's config", SETTINGS_NAME: "the run's settings",
         STAGES_NAME: "the record of finished stages", LOCK_NAME: "the run folder's lock",
         "results.json": "the evaluation results", "saved_model": "the SavedModel",
         "checkpoints": "the checkpoints", "best": "the best validated checkpoints",
         "train": "TensorBoard summaries of training",
         "eval": "TensorBoard summaries of the evaluation"}


class RunFolderError(ValueError):
  """The run folder cannot be used (not a folder, not writable, or in use by another run)."""


def _in_root(name: str) -> property:
  """A read-only path ``<root>/<name>`` of `RunFolder`."""
  return property(lambda self: os.path.join(self.root, name))


class RunFolder:
  """Paths of one run directory (nothing is created until something is written)."""

  config = _in_root(CONFIG_NAME)
  checkpoints = _in_root("checkpoints")
  train_summaries = _in_root("train")
  eval_summaries = _in_root("eval")
  best = _in_root("best")
  results = _in_root("results.json")
  saved_model = _in_root("saved_model")
  stages = _in_root(STAGES_NAME)
  settings = _in_root(SETTINGS_NAME)

  def __init__(self, root_dir: str):
    self.root = str(root_dir)

  def figure(self, name: str) -> str:
    """The path of a figure, e.g. ``figure("test_tasks.png")``."""
    return os.path.join(self.root, name)

  def describe(self, path: str) -> Optional[str]:
    """What ``path`` (a file or folder of the run, under its final name) is, in words: "the
    checkpoint of meta-iteration 5", "the SavedModel"...; None outside the folder."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))
    if relative == os.curdir:
      return "the run folder"
    if relative.startswith(os.pardir):
      return None
    first = relative.split(os.sep)[0]
    checkpoint = re.match(r"ckpt-(\d+)(\.|$)", os.path.basename(relative))
    if first in ("checkpoints", "best") and checkpoint:
      return (f"the checkpoint of meta-iteration {checkpoint[1]}" if first == "checkpoints" else
              f"the best validated checkpoint of meta-iteration {checkpoint[1]}")
    if first == "checkpoints" and os.path.basename(relative) == "checkpoint":
      return "the list of checkpoints"
    if first in _WHAT:
      return _WHAT[first]
    if first.endswith(".png"):
      return "a figure"
    if first.endswith(".json") and os.path.exists(self.figure(first[:-len(".json")] + ".png")):
      return "the numbers of a figure"
    return "a file of the run"

  def prepare(self) -> None:
    """Creates the folder, or says clearly why it cannot be used."""
    if os.path.exists(self.root) and not os.path.isdir(self.root):
      raise RunFolderError(f"--root_dir {self.root} is a file, not a folder: choose another "
                           "--root_dir.")
    try:
      os.makedirs(self.root, exist_ok=True)
    except OSError as error:
      raise RunFolderError(f"Cannot create the run folder {self.root} ({error.strerror}): "
                           "choose a --root_dir you can write to.") from error
    if not os.access(self.root, os.W_OK | os.X_OK):
      raise RunFolderError(f"The run folder {self.root} is not writable: choose a --root_dir "
                           "you can write to, or fix its permissions.")

  def remove_leftovers(self) -> int:
    """Deletes what a killed run, or one that met a full disk, left half-written
    (`l2f_tf.atomic`'s temporary files, TensorFlow's unfinished ``<checkpoint>_temp`` saves and
    ``checkpoint.tmp<hex>`` lists, data files of a pruned checkpoint whose index is gone);
    returns how many. Only under the folder's lock."""
    removed = atomic.remove_leftovers(self.root)
    for directory in (self.checkpoints, self.best):
      removed += atomic.remove_leftovers(directory)  # best/scores.json's
      for path in glob.glob(os.path.join(directory, "*_temp")):
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
      for path in glob.glob(os.path.join(directory, "checkpoint.tmp*")):
        os.remove(path)  # TensorFlow's atomic write of the list, cut short
        removed += 1
      # A kill while TensorFlow prunes an old checkpoint (index first, then data) leaves its
      # data without an index, which no later save removes.
      for path in glob.glob(os.path.join(directory, "*.data-*")):
        if not os.path.exists(path.split(".data-")[0] + ".index"):
          os.remove(path)
          removed += 1
    return removed

  def write_results(self, results: Dict[str, Any]) -> str:
    """Writes results.json atomically, so a crash never leaves half a file."""
    return atomic.write_json(self.results, results)

  def finished_stages(self) -> Dict[str, Any]:
    """stage name -> the key it was finished with (see :meth:`finish_stage`)."""
    try:
      with open(self.stages) as f:
        return json.load(f)
    except FileNotFoundError:
      return {}
    except ValueError:  # Written atomically, so only a hand edit gets here: redo the stages.
      logging.warning("%s is not valid JSON; the stages after training run again.",
                      self.stages)
      return {}

  def stage_done(self, name: str, key: Any) -> bool:
    """Whether stage ``name`` (evaluate, export, plot) was finished with this ``key`` (what it
    depends on: the trained step and its settings)."""
    return self.finished_stages().get(name) == json.loads(json.dumps(key))

  def finish_stage(self, name: str, key: Any) -> None:
    """Records that stage ``name`` finished with ``key`` (after its outputs are in place)."""
    atomic.write_json(self.stages, {**self.finished_stages(), name: key})

  def read_results(self) -> Dict[str, Any]:
    if not os.path.isdir(self.root):
      what = "it is a file" if os.path.exists(self.root) else "it does not exist"
      raise ValueError(f"{self.root} is not a run folder: {what}.")
    if not os.path.exists(self.results):
      raise ValueError(f"{self.results} is missing: run_experiment.py has not finished in "
                       f"{self.root} (re-run its command to finish it).")
    with open(self.results) as f:
      return json.load(f)


class RunLock:
  """One run per folder: an exclusive ``flock`` on ``<root>/.lock``, which names its holder.
  The system releases it when its process dies (even by ``kill -9``), so it is never stuck; the
  next run takes over a file naming a dead process with a warning. ``fix``: what the refusal
  tells the user to do (default: wait, or choose another --root_dir)."""

  def __init__(self, root: str, fix: Optional[str] = None):
    self.path = os.path.join(root, LOCK_NAME)
    self.fix = fix or "Wait for it to finish (or stop it), or choose another --root_dir."
    self._fd: Optional[int] = None

  def acquire(self) -> "RunLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      holder = _read_holder(fd)
      os.close(fd)
      if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise RunFolderError(
          f"Another run is using {os.path.dirname(self.path)}: {holder or 'a process'} holds "
          f"{self.path}. {self.fix}") from None
    previous = _read_holder(fd)
    if previous:
      logging.warning("Taking over the run folder lock %s from %s, which is no longer "
                      "running.", self.path, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)  # A clean exit leaves nothing to take over.
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "RunLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> str:
  return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()


_HELD: Dict[str, RunLock] = {}


def hold_lock(root: str, fix: Optional[str] = None) -> None:
  """Takes the lock of the run folder ``root`` for the rest of this process (once per folder;
  the command line and a library `Runner` alike); ``fix``: see `RunLock`."""
  key = os.path.abspath(root)
  if key not in _HELD:
    if not _HELD:
      atexit.register(release_locks)  # A clean exit leaves a lock naming no process.
    _HELD[key] = RunLock(root, fix).acquire()


def release_lock(root: str) -> None:
  """Releases the lock of ``root`` if this process holds it (before deleting the folder)."""
  lock = _HELD.pop(os.path.abspath(root), None)
  if lock is not None:
    lock.release()


def release_locks() -> None:
  """Releases the run folder locks this process holds (several runs in one process)."""
  while _HELD:
    _HELD.popitem()[1].release()
