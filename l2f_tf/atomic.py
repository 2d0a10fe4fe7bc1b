"""Writing files and folders so that a crash or a kill never leaves half of one.

Everything is written under a temporary name (``.<name>...tmp``, cleared by
:func:`remove_leftovers`) in the destination's folder, then renamed into place with
``os.replace`` (atomic on POSIX): a reader, or a run resumed after ``kill -9``, sees the old
version or the new one. :func:`cached_folder` does this for caches several processes share
(the glyphs dataset, its embeddings), with a metadata file checked before each use.
"""

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from typing import Any, Callable, Dict, Iterator, Optional

from absl import logging

TMP_MARK = ".tmp"
# The attribute naming the file being written that :func:`path_for` and :func:`folder_for` set
# on an error escaping their block (a full disk raised by PIL or TensorFlow names a temporary
# file, or none); l2f_tf.train.disk_full reads it.
DESTINATION = "destination"
# The format of a cached folder's metadata file; bump it when that file changes.
CACHE_FORMAT = 2
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
_PARTIAL_RE = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[0-9a-f]+" +
                         re.escape(TMP_MARK) + "$")


@contextlib.contextmanager
def path_for(path: str) -> Iterator[str]:
  """A temporary path next to ``path`` (same extension, for matplotlib; ``open``'s mode, not
  mkstemp's 0o600), renamed to ``path`` when the block succeeds, else removed."""
  folder, name = os.path.split(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TMP_MARK + os.path.splitext(path)[1],
                             dir=folder)
  os.close(fd)
  umask = os.umask(0)  # (Read by setting it.)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException as error:
    if os.path.exists(tmp):
      os.remove(tmp)
    _note_destination(error, path)
    raise


def write_text(path: str, text: str) -> str:
  """Writes ``text`` to ``path`` atomically; returns ``path``."""
  with path_for(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
  return path


def write_json(path: str, value: Any, indent: Optional[int] = 2) -> str:
  """Writes ``value`` as JSON to ``path`` atomically; returns ``path``."""
  return write_text(path, json.dumps(value, indent=indent) + "\n")


@contextlib.contextmanager
def folder_for(path: str) -> Iterator[str]:
  """A temporary folder name next to ``path`` (not created: ``tf.saved_model.save`` does it)
  that replaces ``path`` on success. An existing ``path`` is first moved aside (a folder cannot
  be renamed over another), so a kill in between leaves no ``path``, never a half one."""
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
  except BaseException as error:
    shutil.rmtree(tmp, ignore_errors=True)
    _note_destination(error, path)
    raise


def _note_destination(error: BaseException, path: str) -> None:
  """Sets ``error.destination`` to ``path`` unless an inner writer already did."""
  if getattr(error, DESTINATION, None) is None:
    with contextlib.suppress(AttributeError, TypeError):
      setattr(error, DESTINATION, path)


def remove_leftovers(folder: str) -> int:
  """Deletes the temporary files and folders a killed writer left in ``folder`` (not below);
  returns how many. Only for a folder no other process writes to (a locked run folder)."""
  removed = 0
  for path in glob.glob(os.path.join(folder, f".*{TMP_MARK}*")):
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)
    removed += 1
  return removed


# --- cached folders, shared by processes --------------------------------------------------------
def partial_name(root: str, pid: Optional[int] = None) -> str:
  """A new temporary path next to ``root`` that names this host and process ``pid`` (default:
  this one), so that a later writer can tell whether its writer still runs."""
  return (f"{os.path.join(os.path.dirname(root), '.' + os.path.basename(root))}."
          f"{_HOST}-{os.getpid() if pid is None else pid}-{uuid.uuid4().hex[:8]}{TMP_MARK}")


def keyed_name(readable: str, key: Dict) -> str:
  """A cached folder's name: ``readable``, then a hash of ``key`` (every parameter the folder
  depends on), so that different parameters never share a folder."""
  return f"{readable}_{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]}"


def _remove_stale_partials(folder: str) -> None:
  """Deletes the temporary folders of killed writers on this host (best effort)."""
  for entry in os.listdir(folder):
    match = _PARTIAL_RE.match(entry)
    if match and match["host"] == _HOST:
      try:
        os.kill(int(match["pid"]), 0)  # A writer that still runs may be writing right now.
      except ProcessLookupError:
        logging.info("Removing %s, left by an interrupted writer.", entry)
        shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)
      except (PermissionError, OverflowError):
        pass


def _files(root: str, metadata_file: str) -> Dict[str, str]:
  """Relative path -> path of every file under ``root`` but the metadata file, sorted."""
  found = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      found[os.path.relpath(path, root)] = path
  found.pop(metadata_file, None)
  return dict(sorted(found.items()))


def _digest(files: Dict[str, str]) -> str:
  digest = hashlib.sha256()
  for relative, path in files.items():
    with open(path, "rb") as f:
      digest.update(relative.encode() + b"\0" + f.read())
  return digest.hexdigest()


def write_metadata(folder: str, metadata_file: str, parameters: Dict, **extra) -> None:
  """Writes ``<folder>/<metadata_file>``, the last step of a `cached_folder` writer: the format,
  ``parameters``, ``extra`` (JSON values), and the size and SHA-256 of the folder's files."""
  files = _files(folder, metadata_file)
  write_json(os.path.join(folder, metadata_file),
             {"format": CACHE_FORMAT, "parameters": parameters, **extra,
              "files": {name: os.path.getsize(path) for name, path in files.items()},
              "sha256": _digest(files)}, indent=1)


def folder_problem(root: str, metadata_file: str, parameters: Dict) -> Optional[str]:
  """Why the cached folder ``root`` cannot be used, in words, or None if it can: its metadata
  file holds `CACHE_FORMAT` and ``parameters``, and the folder exactly the files it lists, each
  of the size and content it was written with."""
  try:
    with open(os.path.join(root, metadata_file), encoding="utf-8") as f:
      metadata = json.load(f)
  except FileNotFoundError:
    return f"{metadata_file} is missing"
  except (OSError, ValueError) as e:
    return f"{metadata_file} is unreadable ({e})"
  if not isinstance(metadata, dict) or metadata.get("format") != CACHE_FORMAT:
    return f"{metadata_file} is not of format {CACHE_FORMAT}: an older l2f_tf wrote it"
  if metadata.get("parameters") != parameters:
    return f"{metadata_file} does not hold these parameters"
  try:
    files, sizes = _files(root, metadata_file), metadata["files"]
    odd = sorted(set(files) ^ set(sizes))
    if odd:
      return f"{os.path.join(root, odd[0])} {'was added' if odd[0] in files else 'is missing'}"
    for name, path in files.items():
      if os.path.getsize(path) != sizes[name]:
        return f"{path} is not the size it was written with"
    if _digest(files) != metadata["sha256"]:
      return "a file is not the one that was written"
  except (OSError, KeyError, TypeError) as e:
    return f"{metadata_file} does not match the files ({type(e).__name__}: {e})"
  return None


def cached_folder(root: str, metadata_file: str, parameters: Dict,
                  write: Callable[[str], None], what: str) -> str:
  """Returns ``root`` once it holds what ``write`` writes, calling ``write`` only if needed.

  A ``root`` in which `folder_problem` finds something wrong is deleted, with a warning.
  ``write(folder)`` fills a new temporary folder, ending with `write_metadata`, then renamed to
  ``root`` (an interrupted writer never leaves a complete-looking ``root``; killed writers'
  folders on this host are deleted). If another process renames its copy first, that one is
  returned. ``what`` names the folder in log lines."""
  if os.path.isdir(root):
    problem = folder_problem(root, metadata_file, parameters)
    if problem is None:
      logging.info("The %s is at %s.", what, root)
      return root
    logging.warning("The %s in %s is damaged (%s): generating it again.", what, root, problem)
    aside = partial_name(root)
    with contextlib.suppress(FileNotFoundError):  # (Another process moved it first.)
      os.rename(root, aside)
      shutil.rmtree(aside, ignore_errors=True)
  os.makedirs(os.path.dirname(root), exist_ok=True)
  _remove_stale_partials(os.path.dirname(root))
  partial = partial_name(root)
  os.makedirs(partial)
  try:
    write(partial)
    os.rename(partial, root)
  except BaseException as e:
    shutil.rmtree(partial, ignore_errors=True)
    if isinstance(e, OSError) and os.path.isdir(root):
      logging.info("Another process wrote %s first; using it.", root)
      return root
    raise
  logging.info("The %s is written to %s.", what, root)
  return root
