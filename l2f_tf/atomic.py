"""Writing files and folders so that a crash or a kill never leaves half of one.

Everything is first written under a temporary name in the destination's own folder (so the
final rename stays on one file system) and then renamed into place with ``os.replace``, which
is atomic on POSIX: a reader, or a run resumed after ``kill -9``, sees the old version or the
new one, never a mix. Temporary names start with ``.`` and contain ``.tmp``, so that
:func:`remove_leftovers` can clear what a killed writer left behind.
"""

import contextlib
import glob
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

TMP_MARK = ".tmp"


def _file_mode() -> int:
  """The mode ``open(path, "w")`` would give a new file: 0o666 less the process's umask."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def _temporary_name(path: str, suffix: str = "") -> str:
  """A new empty file next to ``path``, with the mode a plain ``open`` would give it (not
  mkstemp's private 0o600: results.json and figures are for other users to read too)."""
  folder, name = os.path.split(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f"{TMP_MARK}{suffix}", dir=folder)
  os.close(fd)
  os.chmod(tmp, _file_mode())
  return tmp


@contextlib.contextmanager
def path_for(path: str) -> Iterator[str]:
  """A temporary path next to ``path`` (same extension, so that e.g. matplotlib picks the
  format from it); on leaving the block without an error it is renamed to ``path``, on an
  error it is removed."""
  tmp = _temporary_name(path, os.path.splitext(path)[1])
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> str:
  """Writes ``text`` to ``path`` atomically; returns ``path``."""
  with path_for(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
  return path


def write_json(path: str, value: Any, indent: int = 2) -> str:
  """Writes ``value`` as JSON to ``path`` atomically; returns ``path``."""
  return write_text(path, json.dumps(value, indent=indent) + "\n")


@contextlib.contextmanager
def folder_for(path: str) -> Iterator[str]:
  """A temporary folder name next to ``path`` (not yet created) for a writer that creates the
  folder itself (``tf.saved_model.save``); on success it replaces ``path``.

  A folder cannot be renamed over another atomically, so an existing ``path`` is first moved
  aside to ``.<name>.old.tmp`` and deleted after the new folder is in place. A kill between the
  two renames leaves no ``path`` at all (never a half-written one); the caller's record of
  finished stages then says it must be written again.
  """
  folder, name = os.path.split(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=TMP_MARK, dir=folder)
  os.rmdir(tmp)  # The writer creates it.
  try:
    yield tmp
    old = os.path.join(folder, f".{name}.old{TMP_MARK}")
    if os.path.exists(old):
      shutil.rmtree(old)
    if os.path.exists(path):
      os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def remove_leftovers(folder: str) -> int:
  """Deletes the temporary files and folders that a killed writer left in ``folder`` (not in
  sub-folders); returns how many. Only for a folder that no other process writes to (a run
  folder under its lock)."""
  removed = 0
  for path in glob.glob(os.path.join(folder, f".*{TMP_MARK}*")):
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)
    removed += 1
  return removed
