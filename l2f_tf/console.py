"""What a command-line run prints: its own lines, without the third-party noise of every start.

TensorFlow's C++ code logs lines no environment variable silences ("could not find cuda
drivers", "oneDNN custom operations are on", ...), gym prints a deprecation banner, and
TensorFlow logs INFO lines about SavedModel internals. :func:`quiet_third_party` drops exactly
those: a line filter on file descriptor 2 drops :data:`NOISE`, and a logging filter drops INFO
records not from l2f_tf; warnings and errors still show. ``--third_party_logs`` (or
``L2F_THIRD_PARTY_LOGS=1``) turns it off. Entry points call it before importing TensorFlow.
"""

import atexit
import contextlib
import logging as std_logging
import os
import re
import sys
import threading
from typing import Iterator, Optional, Sequence

from absl import flags
from absl import logging as absl_logging  # light: absl does not import TensorFlow

# Lines of third-party start-up noise (matched anywhere in a line of stderr).
NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"cuda_platform\.cc.*failed call to cuInit",
    r"cuda_executor\.cc.*failed call to cuInit",
    r"port\.cc.*oneDNN custom operations are on",
    r"cpu_feature_guard\.cc.*This TensorFlow binary is optimized",
    r"cpu_feature_guard\.cc.*To enable the following instructions",
    # The second line of cpu_feature_guard's two-line message, which has no prefix:
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    r"compiler flags",
    r"Gym has been unmaintained since 2022",
    r"Please upgrade to Gymnasium, the maintained drop-in replacement of Gym",
    r"See the migration guide at https://gymnasium\.farama\.org/introduction/migration_guide/",
)
FLAG = "--third_party_logs"
ENV = "L2F_THIRD_PARTY_LOGS"

_NOISE_RE = re.compile("|".join(NOISE))
_installed: Optional["_StderrFilter"] = None
_library_handler: Optional[std_logging.Handler] = None


def is_noise(line: str) -> bool:
  """Whether ``line`` is third-party start-up noise that the filter drops."""
  return bool(_NOISE_RE.search(line))


class _StderrFilter:
  """Routes file descriptor 2 through a pipe; a thread copies every line that is not noise to
  the real stderr. At exit (and on :meth:`close`) the pipe is drained, so nothing printed last
  (a traceback, a final message) is lost."""

  def __init__(self):
    sys.stderr.flush()
    self._real = os.dup(2)
    read_end, self._write_end = os.pipe()
    os.dup2(self._write_end, 2)
    self._thread = threading.Thread(target=self._copy, args=(read_end,), daemon=True,
                                    name="l2f_tf-stderr-filter")
    self._thread.start()

  def _copy(self, read_end: int) -> None:
    with os.fdopen(read_end, "rb") as pipe:
      for line in pipe:  # A line as soon as it is complete (the last one maybe without \n).
        if not is_noise(line.decode("utf-8", "replace")):
          os.write(self._real, line)

  def close(self) -> None:
    """Puts the real stderr back on descriptor 2 and copies what is still in the pipe."""
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    if self._write_end is None:
      return
    os.dup2(self._real, 2)
    os.close(self._write_end)
    self._write_end = None
    self._thread.join(timeout=5)


class _OwnInfoOnly(std_logging.Filter):
  """Keeps WARNING and above, and INFO (and lower) records of l2f_tf's files or the entry
  script (by source file: TensorFlow logs through absl too). With a ``handler`` (library use),
  it prints those INFO records, which go no further (a root handler of absl's would print them
  again); warnings and errors pass on unchanged."""

  def __init__(self, handler: Optional[std_logging.Handler] = None):
    super().__init__()
    self._package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    self._script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None
    self._handler = handler

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    path = os.path.abspath(record.pathname) if record.pathname else ""
    own = path.startswith(self._package) or path == self._script
    if self._handler is None:
      return own
    if own:
      self._handler.handle(record)
    return False


class _DropMessages(std_logging.Filter):
  """Drops the records whose message template starts with one of ``prefixes``."""

  def __init__(self, prefixes: Sequence[str]):
    super().__init__()
    self._prefixes = tuple(prefixes)

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self._prefixes)


@contextlib.contextmanager
def dropped_log_records(*prefixes: str) -> Iterator[None]:
  """Inside the block, log records (Python logging and absl) whose message template starts
  with one of ``prefixes`` are dropped, unless third-party logs are asked for (:func:`wanted`):
  for warnings TensorFlow repeats hundreds of times about something that does not concern the
  user (e.g. every function of a SavedModel that holds a custom gradient)."""
  if not wanted():
    yield
    return
  drop = _DropMessages(prefixes)
  targets = [std_logging.getLogger(), std_logging.getLogger("tensorflow"),
             absl_logging.get_absl_logger()]
  for target in targets:
    target.addFilter(drop)
  try:
    yield
  finally:
    for target in targets:
      target.removeFilter(drop)


def wanted(argv: Sequence[str] = None) -> bool:
  """Whether to filter the noise: no ``--third_party_logs`` and no ``L2F_THIRD_PARTY_LOGS=1``."""
  argv = sys.argv if argv is None else argv
  if os.environ.get(ENV, "").strip() not in ("", "0"):
    return False
  return not any(a == FLAG or a.startswith(FLAG + "=") and a.split("=", 1)[1] not in
                 ("0", "false", "False") for a in argv)


def quiet_third_party(argv: Sequence[str] = None, info_filter: bool = True) -> bool:
  """Installs the stderr line filter and (``info_filter``: the command-line tools) the INFO
  filter, once per process, unless :func:`wanted` says no; returns whether they are on. The
  library installs the line filter only (`l2f_tf.__getattr__`): a script's own INFO logging
  is the script's business."""
  global _installed
  if not wanted(argv):
    return False
  if _installed is None:
    _installed = _StderrFilter()
    atexit.register(_installed.close)
    if not info_filter:
      return True
    info_filter = _OwnInfoOnly()
    for name in ("", "tensorflow"):  # TensorFlow's logger has a handler of its own.
      logger = std_logging.getLogger(name)
      logger.addFilter(info_filter)
      for handler in logger.handlers:
        handler.addFilter(info_filter)
    absl_logging.get_absl_handler().addFilter(info_filter)
  return True


def show_progress_in_library() -> bool:
  """Shows l2f_tf's INFO lines (progress, results) when a script or notebook drives the
  library and would otherwise print nothing for minutes (absl's flags unparsed, no level on
  absl's logger, the root logger above INFO): absl's logger goes to INFO with an
  :class:`_OwnInfoOnly` filter printing to stderr. Returns whether it did. `Runner` calls it."""
  global _library_handler
  logger = absl_logging.get_absl_logger()
  root = std_logging.getLogger()
  if (_library_handler is not None or flags.FLAGS.is_parsed() or
      logger.level != std_logging.NOTSET or
      (root.handlers and root.getEffectiveLevel() <= std_logging.INFO)):
    return False
  _library_handler = std_logging.StreamHandler(sys.stderr)
  _library_handler.setFormatter(std_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  logger.addFilter(_OwnInfoOnly(_library_handler))
  logger.setLevel(std_logging.INFO)
  return True


def define_flag() -> None:
  """Defines ``--third_party_logs`` for absl (once), so that an entry point accepts it; its
  value is read from the command line by :func:`wanted` before absl parses it."""
  if "third_party_logs" not in flags.FLAGS:
    flags.DEFINE_bool("third_party_logs", False, "Show the start-up noise of TensorFlow, CUDA "
                      "and gym, and TensorFlow's INFO lines (hidden by default; warnings and "
                      "errors always show).")


def flush() -> None:
  """Copies everything written so far to the real stderr (before ``os._exit``)."""
  if _installed is not None:
    _installed.close()
