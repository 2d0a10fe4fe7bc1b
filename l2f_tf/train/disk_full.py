"""A full disk while a run writes: one line naming the file, the file system to free and the
checkpoint the same command resumes from, instead of a traceback from whichever writer hit it.

A full disk (ENOSPC, or EDQUOT for a quota) surfaces in two shapes, found by filling a tmpfs
under real runs (tests/test_disk_full.py):

* ``OSError`` from Python's writers: the atomic writes (`l2f_tf.atomic`: operative_config.gin,
  settings.json, results.json, stages.json, a figure's numbers), matplotlib's ``savefig``
  (through PIL, without a file name) and the run folder's lock;
* ``tf.errors.ResourceExhaustedError`` from TensorFlow's C++ writers, whose message holds
  ``<path>; No space left on device``: a checkpoint save (``SaveV2`` into ``ckpt-N_temp/``),
  a TensorBoard write (``WriteSummary``, raised by the write that fills the writer's queue or
  by its flush), the SavedModel (``saved_model.pb``, its variables).

Both carry the errno's text, which is what :func:`reason` looks for: gin's proxies of a
re-raised exception keep the text but not ``errno``. `l2f_tf.atomic` notes the file it was
writing on the error (``destination``), since PIL's error names none. :func:`reported` turns
such an error into a :class:`DiskFullError` (an OSError) whose message is the line; the
`l2f_tf.train.runner.Runner` raises it from ``train`` and ``run``, and the command line prints
it and exits 1.

A checkpoint named by ``checkpoints/checkpoint`` is whole: TensorFlow updates that file only
after the checkpoint's files are complete. A save cut short leaves ``ckpt-N_temp/`` (or a
``checkpoint.tmp<hex>``), which the next start removes
(`l2f_tf.run_folder.RunFolder.remove_leftovers`); cut short in its merge, it also leaves
ckpt-N's whole data file and an empty ``ckpt-N.index``, which no list names and the resumed
run's save of step N overwrites.
"""

import contextlib
import errno
import functools
import os
import re
from typing import Iterator, Optional

from l2f_tf import atomic
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints

REASONS = {os.strerror(errno.ENOSPC): "", os.strerror(errno.EDQUOT): " (or raise your quota)"}
# TensorFlow's temporary names -> the file they become: a checkpoint's <prefix>_temp/ folder,
# the ".tmp<32 hex>" suffix of its atomic writes (checkpoints/checkpoint, saved_model.pb).
_TF_TEMPORARY = (re.compile(r"_temp(/[^/]*)?$"), re.compile(r"\.tmp[0-9a-f]{32}$"))
# The str() of an OSError with a file name (what gin's proxy of a re-raised one still has).
_PYTHON_TEXT = re.compile(r"\[Errno \d+\] [^:]+: '(?P<path>.+?)'")


class DiskFullError(OSError):
  """The disk filled up while a run wrote ``filename``; ``str()`` is the line to show (what
  was written, what to free, how to resume)."""

  def __init__(self, line: str, path: Optional[str]):
    super().__init__(errno.ENOSPC, line, path)
    self.line = line

  def __str__(self) -> str:
    return self.line


def reason(error: BaseException) -> Optional[str]:
  """The words of a full disk that ``error`` says ("No space left on device", "Disk quota
  exceeded"), else None."""
  if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
    return os.strerror(error.errno)
  text = str(error)
  return next((words for words in REASONS if words in text), None)


def written_path(error: BaseException) -> Optional[str]:
  """The file ``error`` was writing, under its final name: the one `l2f_tf.atomic` noted, the
  OSError's file name, or the path TensorFlow's message names (``<path>; No space left``)."""
  noted = getattr(error, atomic.DESTINATION, None)
  if noted:
    return noted
  if isinstance(error, OSError) and error.filename:
    return os.fsdecode(error.filename)
  match = _PYTHON_TEXT.search(str(error))
  if match:
    return match["path"]
  for line in str(error).splitlines():
    for words in REASONS:
      if f"; {words}" in line:
        path = re.sub(r"^\{\{[^}]*\}\}\s*", "", line.split(f"; {words}")[0].strip())
        for pattern in _TF_TEMPORARY:
          path = pattern.sub("", path)
        return path or None
  return None


def mount_point(path: str) -> str:
  """The mount point of the file system holding ``path`` (which may no longer exist)."""
  path = os.path.realpath(path)
  while not os.path.ismount(path):
    path = os.path.dirname(path)
  return path


def message(error: BaseException, root: str) -> Optional[str]:
  """The one line for a full disk met while writing the run folder ``root``, or None when
  ``error`` is not a full disk."""
  words = reason(error)
  if words is None:
    return None
  folder = RunFolder(root)
  path = written_path(error) or folder.root
  what = folder.describe(path)
  return (f"{words} while writing {path}{f' ({what})' if what else ''}: free some space on "
          f"{mount_point(path)}{REASONS[words]}, then run the same command to resume "
          f"({_resumes_from(folder)}).")


def _resumes_from(folder: RunFolder) -> str:
  """Which checkpoint the same command resumes from, in words (the one its restore picks)."""
  latest = checkpoints.latest(folder.checkpoints)
  return (f"the last checkpoint, {os.path.basename(latest)}, is intact" if latest else
          "no checkpoint was written yet, so it starts afresh")


@contextlib.contextmanager
def reported(root: str) -> Iterator[None]:
  """Raises a :class:`DiskFullError` (from the original) for a full disk met in the block
  while writing the run folder ``root``; other errors pass unchanged."""
  try:
    yield
  except DiskFullError:
    raise
  except Exception as error:  # pylint: disable=broad-except  (re-raised unless a full disk)
    line = message(error, root)
    if line is None:
      raise
    raise DiskFullError(line, written_path(error)) from error


def in_run_folder(method):
  """Decorates a method of an object with a ``folder`` (a RunFolder): a full disk met in it
  raises a :class:`DiskFullError` (see :func:`reported`)."""

  @functools.wraps(method)
  def wrapped(self, *args, **kwargs):
    with reported(self.folder.root):
      return method(self, *args, **kwargs)

  return wrapped
