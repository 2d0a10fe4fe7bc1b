"""Ctrl-C during a run: a quick, quiet stop that keeps the work.

Python runs signal handlers in the main thread between bytecodes, so a Ctrl-C during a long
TensorFlow call would wait for it. :class:`InterruptWatcher` hears the signal on a thread of its
own (``signal.set_wakeup_fd``) and answers at once:

* while training (``graceful``), the first Ctrl-C asks the loop (polling
  :attr:`InterruptWatcher.requested`) to stop after the current meta-iterations and save a
  checkpoint; a second one exits at once, keeping the last checkpoint;
* after training (evaluation, export, figures: each written atomically), Ctrl-C exits at once;
  re-running the command finishes the stages left.

The process exits with status 130 (the shell's code for Ctrl-C) and no traceback.
"""

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, Optional

from absl import logging

from l2f_tf import console, run_folder

EXIT_CODE = 130


class Interrupted(Exception):
  """Training stopped on Ctrl-C after saving a checkpoint (the run can be resumed)."""


class InterruptWatcher:
  """Watches SIGINT while :meth:`active`. ``last_checkpoint()``: the run's newest checkpoint
  (None: none yet), for the messages."""

  def __init__(self, last_checkpoint: Callable[[], Optional[str]] = lambda: None):
    self.last_checkpoint = last_checkpoint
    self._event = threading.Event()
    self._graceful, self._count = True, 0
    self._quit_message: Optional[str] = None

  @property
  def requested(self) -> bool:
    """Whether a Ctrl-C asked training to stop."""
    return self._event.is_set()

  @contextlib.contextmanager
  def active(self, graceful: bool,
             quit_message: Optional[str] = None) -> Iterator["InterruptWatcher"]:
    """Watches Ctrl-C inside the block (a no-op outside the main thread, where signals cannot
    be watched). ``graceful``: stop at the next poll (training) rather than at once;
    ``quit_message``: what an immediate stop says (default: training is finished and saved)."""
    if threading.current_thread() is not threading.main_thread():
      yield self
      return
    self._graceful, self._count, self._quit_message = graceful, 0, quit_message
    self._event.clear()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: None)
    thread = threading.Thread(target=self._listen, args=(read_end,), daemon=True,
                              name="l2f_tf-interrupts")
    thread.start()
    try:
      yield self
    finally:
      signal.signal(signal.SIGINT, previous_handler)
      signal.set_wakeup_fd(previous_fd)
      os.close(write_end)  # Ends the listener.
      thread.join(timeout=5)

  def _listen(self, read_end: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
      while True:
        data = pipe.read(1)
        if not data:
          return
        if data[0] == signal.SIGINT:
          self._on_interrupt()

  def _on_interrupt(self) -> None:
    self._count += 1
    latest = self.last_checkpoint()
    if self._graceful and self._count == 1:
      logging.warning("Ctrl-C: stopping after the current meta-iterations and saving a "
                      "checkpoint. Ctrl-C again quits at once, %s.",
                      f"keeping {latest}" if latest else "with no checkpoint yet")
      self._event.set()
      return
    if not self._graceful:
      message = self._quit_message or (
          "Ctrl-C: quitting now. Training is finished and saved; run the same command to "
          "finish the evaluation, export and figures.")
    elif latest:
      message = f"Ctrl-C again: quitting now; run the same command to resume from {latest}."
    else:
      message = "Ctrl-C again: quitting now, before the first checkpoint."
    exit_now(message)


def exit_now(message: Optional[str] = None, code: int = EXIT_CODE) -> None:
  """Logs ``message`` and ends the process with status ``code`` (130 by default) at once (no
  other cleanup: every file of the run is written atomically; a multi-worker run's TensorFlow
  would wait at exit for workers that are gone). The run folder locks are released first, so
  that the next run does not take over a lock naming this process."""
  if message:
    logging.warning("%s", message)
  run_folder.release_locks()
  sys.stdout.flush()
  sys.stderr.flush()
  console.flush()
  os._exit(code)  # pylint: disable=protected-access
