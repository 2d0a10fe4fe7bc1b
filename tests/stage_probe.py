"""Which stage of run_experiment.py a process is in, for the kill-and-resume fuzzer.

Why: `tests.kill_resume` kills runs at random moments and must say which stage each kill hit
(start-up, config write, training, validation, best/ bookkeeping, checkpoint write, evaluation,
export, figure, exit). Several of these stages log nothing when they start, and a checkpoint
write lasts milliseconds, so neither the log nor polling the folder can tell them apart.

What: when the environment variable :data:`ENV` names a file, :func:`start` runs a daemon
thread that looks at the main thread's Python stack every :data:`INTERVAL` seconds and, each
time the stage changes, appends ``<unix time> <stage> <pid>`` to that file (one small O_APPEND
write, which a SIGKILL cannot tear). It only reads frames: the run computes exactly what it
would without it (checked: same checkpoint, results and SavedModel); a sample of an 80-frame
stack costs ~50 us, 2-3 % of one core. `tests.kill_resume` loads it in the run's process
through a generated ``sitecustomize.py``, so the command line stays the same.

Only the standard library is imported: this runs at interpreter start-up, before
run_experiment.py imports l2f_tf and TensorFlow.
"""

import atexit
import faulthandler
import os
import signal
import sys
import threading
import time

ENV = "L2F_STAGE_PROBE"
INTERVAL = 0.002
DUMP_SIGNAL = signal.SIGUSR2
STAGES = ("startup", "config", "build", "training", "validation", "best", "checkpoint",
          "evaluate", "export", "plot", "exit")
# (file name, function) -> stage; the innermost matching frame of the stack wins.
FRAMES = {
    ("restore.py", "setup_run"): "config",
    ("experiment.py", "run_experiment"): "build",
    ("runner.py", "train"): "training",
    ("trainer.py", "_validate"): "validation",
    ("validation.py", "record"): "best",  # (not forget_after: it takes microseconds)
    ("runner.py", "save"): "checkpoint",
    ("runner.py", "_evaluate_stage"): "evaluate",
}
# Runner.run runs evaluation, export and figure in one function: the line it is at tells which
# (the first line of each stage is found in runner.py by these texts).
RUNNER_RUN_MARKERS = (("export_key = ", "export"), ("plot_key = ", "plot"),
                      ("for distribution, figures in ", "exit"))
AFTER_TRAINING = ("evaluate", "export", "plot", "exit")


def _runner_run_lines(filename):
  """[(first line, stage)] of the stages inside Runner.run, from the source of runner.py."""
  try:
    with open(filename, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except OSError:
    return []
  found = []
  for text, stage in RUNNER_RUN_MARKERS:
    numbers = [i + 1 for i, line in enumerate(lines) if line.strip().startswith(text)]
    if numbers:
      found.append((numbers[0], stage))
  return sorted(found)


class Probe:
  """Samples the stage of the main thread and appends each change to ``path``."""

  def __init__(self, path):
    self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    self._main = threading.main_thread().ident
    self._runner_lines = None
    self._after_training = False
    self._exiting = False
    self._lock = threading.Lock()
    self.stage = None

  def current(self):
    if self._exiting:
      return "exit"
    frame = sys._current_frames().get(self._main)  # pylint: disable=protected-access
    stack = []
    while frame is not None:
      stack.append(frame)
      frame = frame.f_back
    stage = None
    for frame in reversed(stack):  # Outermost first: the innermost match wins.
      code = frame.f_code
      name = os.path.basename(code.co_filename)
      if name == "runner.py" and code.co_name == "run" and "self" in code.co_varnames:
        stage = self._runner_run_stage(code.co_filename, frame.f_lineno)
      stage = FRAMES.get((name, code.co_name), stage)
    if stage in AFTER_TRAINING:
      self._after_training = True
    elif self._after_training and stage in (None, "build"):
      stage = "exit"  # Returned from the experiment: results logged, process ending.
    return stage or "startup"

  def _runner_run_stage(self, filename, line):
    if self._runner_lines is None:
      self._runner_lines = _runner_run_lines(filename)
    stage = "evaluate"  # Before the export (training, inside it, has its own frames).
    for first, name in self._runner_lines:
      if line >= first:
        stage = name
    return stage

  def sample(self):
    self._record(self.current())

  def _record(self, stage):
    with self._lock:
      if stage != self.stage and (stage == "exit" or not self._exiting):
        self.stage = stage
        os.write(self._fd, f"{time.time():.6f} {stage} {os.getpid()}\n".encode())

  def exiting(self):
    """At exit (the last atexit handler): the rest is the interpreter's finalisation, during
    which the thread may not run."""
    self._exiting = True
    self._record("exit")

  def loop(self):
    while True:
      try:
        self.sample()
      except Exception:  # pylint: disable=broad-except  (interpreter shutting down)
        return
      time.sleep(INTERVAL)


def start():
  """Starts the probe thread if :data:`ENV` names a file (a no-op otherwise)."""
  path = os.environ.get(ENV)
  if path:
    # A hung run can be asked where it is: SIGUSR2 appends every thread's stack to the file
    # (lines that Reader skips).
    faulthandler.register(DUMP_SIGNAL, file=open(path, "a"), all_threads=True)
    probe = Probe(path)
    atexit.register(probe.exiting)  # Registered first, so it runs last.
    threading.Thread(target=probe.loop, name="stage_probe", daemon=True).start()


def is_change(line):
  """Whether a line of the probe's file is a stage change (not a line of a stack dump)."""
  parts = line.split()
  return len(parts) == 3 and parts[1] in STAGES and parts[0].replace(".", "", 1).isdigit()


class Reader:
  """The changes the probe of process ``pid`` appends to ``path``, read as they come (a Python
  process the run starts inherits the environment, and so a probe of its own: skipped).

  Attributes:
    changes: [(unix time, stage)] of every change read so far.
  """

  def __init__(self, path, pid):
    self.path, self.pid = path, str(pid)
    self.changes = []
    self._offset, self._partial = 0, b""

  def read(self):
    """The changes written since the last call (also appended to :attr:`changes`)."""
    try:
      with open(self.path, "rb") as f:
        f.seek(self._offset)
        data = f.read()
    except FileNotFoundError:
      return []
    self._offset += len(data)
    *lines, self._partial = (self._partial + data).split(b"\n")
    new = []
    for line in (raw.decode("utf-8", "replace") for raw in lines):
      if is_change(line) and line.split()[2] == self.pid:
        new.append((float(line.split()[0]), line.split()[1]))
    self.changes += new
    return new
