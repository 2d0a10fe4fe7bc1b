"""Kill-and-resume fuzzing of run_experiment.py: SIGKILL a run at random moments, re-run the
same command each time, and check that the folder ends as an uninterrupted run's does.

  python benchmarks/kill_resume.py --kills=20 --domains=sinusoid,glyphs,navigation --seed=0
  python benchmarks/kill_resume.py --kills=10 --domains=leo --seed=0

Why: a run is meant to survive being killed at any point (l2f_tf.atomic, stages.json, the
checkpoints, the run folder lock) and, re-run with the same command, to finish exactly as if
it had never stopped. Unit tests kill at chosen points; this kills at random ones, in every
stage, through the real command line, as ``kill -9`` or a lost machine would.

What, per experiment (a tiny sinusoid, glyphs, 2D-navigation and LEO+L2F run,
:func:`experiments`; the LEO run first generates its glyphs, pretrains its embedding network
and writes the embeddings, in its own folder, so kills land in that preparation too):

1. :func:`reference_run`: the command once, uninterrupted, into ``reference/``, timed, with
   the moment each stage starts (the stage probe, :class:`Probe`, samples the run's stack);
2. :func:`fuzz`: the same command in ``killed-1/``, SIGKILLed and re-run ``kills`` times, then
   re-run until it exits 0. Each kill (:func:`plan_kill`) is either uniform in (0, expected
   duration of this attempt) -- the reference's timings applied to what the folder still has
   to do -- or aimed at a stage the kills have hit least (a delay into its n-th start, as the
   probe reports it), so that millisecond stages such as checkpoint writes are hit too. The
   stage each kill hit and the temporary files it left are recorded. An attempt that finishes
   before its kill completes its folder, and the kills go on in a new folder (``killed-2/``...),
   so that every kill interrupts unfinished work;
3. :func:`compare`: every finished folder against the reference: every tensor of the latest
   checkpoint exactly equal (train_seconds aside: wall-clock time), results.json equal but for
   train_seconds, best/ (scores and checkpoints) equal, the SavedModel loads and predicts
   exactly the reference's on a fixed input, the figure is there, no temporary file is left
   (names with ``.tmp``, TensorFlow's ``_temp``), stages.json is complete and equal, and the
   data a run prepared in its folder (LEO's glyphs and embeddings) is the reference's, byte for
   byte.

The command prints one line per kill (when, in which stage, what the kill left), then a table
(:func:`table`), the temporary files the kills left (which the next run cleared) and every
problem found; it exits 1 if any check failed. Every random draw comes from ``--seed`` (one
stream per experiment, so running experiments in parallel changes no draw).
tests/test_kill_resume.py runs two kills per experiment but LEO; docs/robustness.md has the
measured table.

Only the standard library is imported at the top: each launched run imports this module at
interpreter start-up to run its stage probe (:func:`start_probe`), before run_experiment.py
imports l2f_tf and TensorFlow.
"""

import atexit
import collections
import concurrent.futures
import dataclasses
import faulthandler
import glob
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = ("train_seconds",)  # results.json entries that measure time, not results
TEMP_MARKS = (".tmp", "_temp")  # atomic.py's temporary names; TensorFlow's checkpoint parts
RESUME_RETRIES = 3  # re-runs allowed to finish a folder after the last kill
ATTEMPT_TIMEOUT = 600.0  # seconds for the reference run
HUNG = -signal.SIGKILL  # the exit status recorded for an attempt killed for outliving its time
DUMP_SECONDS = 2.0  # time given to a hung run to dump its threads' stacks
POLL_SECONDS = 0.002  # how often an attempt aimed at a stage reads the stage probe's file
AIMED = 2 / 3  # the share of kills aimed at a stage (the others: uniform over the attempt)
TRAINING_STAGES = ("training", "validation", "best", "checkpoint")
AFTER_TRAINING = ("evaluate", "export", "plot")
DATA = "data"  # In the stages a folder has done (folder_state): it holds its prepared data.


# --- the stage probe, inside each launched run ---------------------------------------------------
# Several stages log nothing when they start, and a checkpoint write lasts milliseconds, so
# neither the log nor polling the folder can tell which stage a kill hit. When PROBE_ENV names
# a file, a thread of the run looks at the main thread's stack every PROBE_INTERVAL seconds and,
# each time the stage changes, appends "<unix time> <stage> <pid>" to the file (one small
# O_APPEND write, which a SIGKILL cannot tear). It only reads frames: the run computes exactly
# what it would without it (checked: same checkpoint, results and SavedModel). It is loaded
# through a generated sitecustomize.py (:func:`write_probe_loader`), so the command stays the
# same.
PROBE_ENV = "L2F_STAGE_PROBE"
PROBE_INTERVAL = 0.002
DUMP_SIGNAL = signal.SIGUSR2  # Asks a hung run to append every thread's stack to the file.
STAGES = ("startup", "config", "glyphs", "pretraining", "embedding", "build", "training",
          "validation", "best", "checkpoint", "evaluate", "export", "plot", "exit")
# The stages in which a run prepares its data before it builds the experiment (gin evaluates
# ``@ensure_glyphs()`` or ``@ensure_glyph_embeddings()`` when it calls run_experiment): the
# glyphs dataset (generated, or only checked when cached), LEO's embedding network pretrained
# on it, and the embeddings written (with the cache check and the final rename of the folder).
PREPARATION = ("glyphs", "pretraining", "embedding")
# (file name, function) -> stage; the innermost matching frame of the stack wins.
FRAMES = {
    ("restore.py", "setup_run"): "config",
    ("glyphs.py", "ensure_glyphs"): "glyphs",
    ("pretrain.py", "ensure_glyph_embeddings"): "embedding",  # Cache check, reads, rename.
    ("pretrain.py", "make_embeddings"): "pretraining",  # Reads the train images, pretrains.
    ("pretrain.py", "embed_splits"): "embedding",
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
    if stage in AFTER_TRAINING + ("exit",):
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
      time.sleep(PROBE_INTERVAL)


def start_probe():
  """Starts the probe thread if :data:`PROBE_ENV` names a file (a no-op otherwise)."""
  path = os.environ.get(PROBE_ENV)
  if path:
    # A hung run can be asked where it is: DUMP_SIGNAL appends every thread's stack to the
    # file (lines that Reader skips).
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


# --- the experiments ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Experiment:
  """One tiny experiment of the fuzzer.

  Attributes:
    name: the domain's short name (the --domains value).
    gin_file: the gin file, relative to the repository.
    bindings: the command's --gin_bindings (few iterations, a checkpoint at every one).
    num_iterations: the meta-iterations the bindings ask for.
    figure: the figure the run saves.
    validates: whether it validates and keeps best/ (few-shot classification does).
    preparation: the stages of :data:`PREPARATION` its runs go through: preparing their data
      in their own folder, or checking data prepared before the fuzzing (``prepared`` None).
    prepared: the files (a glob, relative to the run folder) that exist once a run has prepared
      its data; attempts on such a folder only check it (in milliseconds: no kill is aimed at
      the preparation stages then). None: the data is prepared before the fuzzing, and every
      attempt checks it.
    data: the folder (relative to the run folder) of the data a run prepares, compared with the
      reference's (check "data"); None: none.
  """
  name: str
  gin_file: str
  bindings: Tuple[str, ...]
  num_iterations: int
  figure: str
  validates: bool = False
  preparation: Tuple[str, ...] = ()
  prepared: Optional[str] = None
  data: Optional[str] = None

  def stages(self) -> List[str]:
    """The stages its runs go through (of :data:`STAGES`)."""
    return [s for s in STAGES if (self.validates or s not in ("validation", "best")) and
            (s in self.preparation or s not in PREPARATION)]

  def is_prepared(self, root: str) -> bool:
    """Whether the run folder ``root`` holds its prepared data (see ``prepared``)."""
    return self.prepared is None or bool(glob.glob(os.path.join(root, self.prepared)))


ROOT = "{root}"  # In a binding: the run folder (command() puts it in).


def experiments(glyph_cache: str) -> Dict[str, Experiment]:
  """The four experiments, keyed by domain; every one checkpoints at every meta-iteration so
  that kills land in checkpoint writes too. ``glyph_cache`` holds the glyphs dataset of the
  glyphs experiment (see :func:`prepare_glyphs`). LEO's embeddings, and the glyphs they are
  made of, go into each run folder (``embeddings/``), so that kills land in their generation,
  in the pretraining of the embedding network and in the writing of the embeddings too."""
  every_step = ("Runner.checkpoint_every = 1", "Runner.max_checkpoints = 2",
                "Runner.log_every_seconds = 0")
  return {
      "sinusoid": Experiment("sinusoid", "gin/sinusoid/l2f_5shot.gin", every_step + (
          "Trainer.num_iterations = 8", "Trainer.summary_every = 0",
          "Trainer.jit_compile = False", "Trainer.landscape = False",
          "SinusoidRegression.meta_batch_size = 3", "run_experiment.num_eval_tasks = 4"),
          8, "test_tasks.png"),
      "glyphs": Experiment("glyphs", "gin/glyphs/l2f_1shot.gin", every_step + (
          f"ensure_glyphs.cache_dir = '{glyph_cache}'", "ensure_glyphs.num_classes = 40",
          "ensure_glyphs.instances_per_class = 10", "FewShotClassification.num_ways = 2",
          "FewShotClassification.num_queries = 2", "Trainer.num_iterations = 6",
          "Trainer.first_order_until = 3", "Trainer.validate_every = 2",
          "Trainer.keep_best = 2", "Trainer.num_val_episodes = 2", "Trainer.summary_every = 0",
          "Trainer.landscape = False", "MetaLearner.num_inner_steps = 1", "conv4.filters = 4",
          "run_experiment.num_eval_tasks = 2", "run_experiment.eval_steps = (1,)",
          "FewShotClassification.eval_batch_size = 2",
          "FewShotClassification.plot_episodes = 2",
          # The steps signature's default 10 steps made the export (tracing the gradients of
          # the batch-norm and pooling ops of every step) half of each run.
          "run_experiment.export_max_steps = 1"), 6, "test_tasks.png", validates=True,
          preparation=("glyphs",)),  # The check of the glyph cache.
      "navigation": Experiment("navigation", "gin/rl/navigation2d_l2f.gin", every_step + (
          "MetaRLTrainer.num_iterations = 6", "MetaRLTrainer.conflict_every = 0",
          "MetaRLDomain.meta_batch_size = 2", "MetaRLDomain.trajectories_per_task = 2",
          "MetaRLDomain.horizon = 5", "MetaRLDomain.hidden_units = (8, 8)",
          "MetaRLDomain.num_workers = 0", "run_experiment.num_eval_tasks = 2",
          "run_experiment.eval_steps = (1,)"), 6, "returns.png"),
      "leo": Experiment("leo", "gin/glyphs/leo_l2f_1shot.gin", every_step + (
          f"ensure_glyph_embeddings.cache_dir = '{ROOT}/embeddings'",
          "ensure_glyph_embeddings.num_classes = 40",
          "ensure_glyph_embeddings.instances_per_class = 10",
          "ensure_glyph_embeddings.filters = 8", "ensure_glyph_embeddings.epochs = 1",
          "FewShotEmbeddings.num_ways = 2", "FewShotEmbeddings.num_queries = 2",
          "FewShotEmbeddings.meta_batch_size = 2", "Trainer.num_iterations = 6",
          "Trainer.steps_per_call = 1", "Trainer.validate_every = 2", "Trainer.keep_best = 2",
          "Trainer.num_val_episodes = 2", "Trainer.summary_every = 0",
          "LEO.num_latent_steps = 1", "LEO.num_finetuning_steps = 1",
          "leo_network.num_latents = 4", "run_experiment.num_eval_tasks = 2",
          "FewShotEmbeddings.eval_batch_size = 2", "FewShotEmbeddings.plot_episodes = 2"),
          6, "test_tasks.png", validates=True, preparation=PREPARATION,
          prepared="embeddings/glyph_embeddings_*/embeddings.json", data="embeddings"),
  }


DOMAINS = ("sinusoid", "glyphs", "navigation", "leo")


def prepare_glyphs(cache_dir: str) -> str:
  """Generates the glyphs dataset of the glyphs experiment into ``cache_dir`` (once, ~2 s), so
  that no timed or killed run generates it."""
  from l2f_tf.data import glyphs
  return glyphs.ensure_glyphs(cache_dir=cache_dir, num_classes=40, instances_per_class=10)


def command(experiment: Experiment, root: str) -> List[str]:
  """The run's command line (the same for every attempt on a folder; :data:`ROOT` in a binding
  is the folder)."""
  return ([sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
           f"--gin_file={experiment.gin_file}"] +
          [f"--gin_bindings={binding.replace(ROOT, root)}" for binding in experiment.bindings])


def write_probe_loader(folder: str) -> str:
  """A folder holding a sitecustomize.py that starts the stage probe in every Python process
  given that folder (and the repository) on its PYTHONPATH; returns the folder."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
    f.write('"""Starts the stage probe of benchmarks/kill_resume.py."""\n'
            "from benchmarks import kill_resume\nkill_resume.start_probe()\n")
  return folder


# --- one attempt ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Kill:
  """When to SIGKILL an attempt: ``delay`` seconds after the ``occurrence``-th start of
  ``stage`` as the stage probe reports it, or, with no ``stage``, after the launch."""
  delay: float
  stage: Optional[str] = None
  occurrence: int = 1

  def __str__(self) -> str:
    if self.stage is None:
      return f"{self.delay:.2f} s after the launch"
    return f"{self.delay * 1000:.0f} ms into {self.stage} #{self.occurrence}"


@dataclasses.dataclass
class Attempt:
  """One launch of the command.

  Attributes:
    root: its run folder.
    log: the file holding its stdout and stderr.
    started, ended: unix times of its launch and of its end (exit or kill).
    returncode: its exit status; None when it was killed.
    kill: when it was to be killed (None: never).
    stage: the stage it was in when killed (of :data:`STAGES`).
    leftovers: temporary files and folders the kill left in the run folder.
    stages: [(seconds after the launch, stage)]: when each stage started.
  """
  root: str
  log: str
  started: float
  ended: float
  returncode: Optional[int]
  kill: Optional[Kill] = None
  stage: Optional[str] = None
  leftovers: List[str] = dataclasses.field(default_factory=list)
  stages: List[Tuple[float, str]] = dataclasses.field(default_factory=list)

  @property
  def killed(self) -> bool:
    return self.returncode is None

  @property
  def seconds(self) -> float:
    return self.ended - self.started

  def tail(self, lines: int = 15) -> str:
    """The end of its log; for a hung attempt, also the stacks it dumped before its kill."""
    with open(self.log, errors="replace") as f:
      text = "".join(f.readlines()[-lines:])
    probe = self.log + ".stages"
    if self.returncode == HUNG and os.path.exists(probe):
      with open(probe, errors="replace") as f:
        dump = [line for line in f if not is_change(line)]
      text += f"\nIts threads when it was found hung ({probe}):\n" + "".join(dump)
    return text


def run_attempt(experiment: Experiment, root: str, log: str, probe_loader: str,
                kill: Optional[Kill] = None, timeout: float = ATTEMPT_TIMEOUT) -> Attempt:
  """Runs the command into ``root`` and SIGKILLs its process group as ``kill`` says, unless it
  has ended by then; one that outlives ``timeout`` is killed too (after dumping its stacks)
  and counts as failed (exit status :data:`HUNG`). Stdout and stderr go to ``log``, the stage
  probe's changes to ``<log>.stages``."""
  probe = log + ".stages"
  env = dict(os.environ, **{PROBE_ENV: probe},
             PYTHONPATH=os.pathsep.join([REPO, probe_loader]))
  with open(log, "w") as out:
    started = time.time()
    process = subprocess.Popen(command(experiment, root), cwd=REPO, env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
  reader = Reader(probe, process.pid)
  stage = _wait(process, reader, kill, started + timeout)
  returncode = None if stage else process.returncode
  if stage == "hung":
    returncode, stage = HUNG, None
  ended = time.time()
  reader.read()
  return Attempt(root, log, started, ended, returncode, kill, stage,
                 leftovers=temporary_files(root) if stage else [],
                 stages=[(t - started, s) for t, s in reader.changes])


def _wait(process: subprocess.Popen, reader: Reader, kill: Optional[Kill],
          deadline: float) -> Optional[str]:
  """Waits for ``process`` to end (returns None), or kills it when ``kill`` says (returns the
  stage it was in) or at ``deadline`` (returns "hung")."""
  if kill is None or kill.stage is None:
    try:
      process.wait(timeout=max(deadline - time.time(), 0) if kill is None else kill.delay)
      return None
    except subprocess.TimeoutExpired:
      hung = kill is None
  else:  # Watches the probe for the start of the stage.
    at, seen, now = None, 0, time.time()
    while process.poll() is None and now < deadline and (at is None or now < at):
      for when, stage in reader.read():
        seen += stage == kill.stage
        if at is None and stage == kill.stage and seen == kill.occurrence:
          at = when + kill.delay
      time.sleep(POLL_SECONDS)
      now = time.time()
    if process.returncode is not None:
      return None
    hung = at is None or now < at
  reader.read()
  if hung:  # Where it is stuck, into <log>.stages (see start_probe), then killed.
    os.kill(process.pid, DUMP_SIGNAL)
    time.sleep(DUMP_SECONDS)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  if hung:
    return "hung"
  return reader.changes[-1][1] if reader.changes else "startup"  # Before the probe started.


def temporary_files(root: str) -> List[str]:
  """Paths (relative to ``root``) of every temporary file or folder under it."""
  found = []
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      if any(mark in name for mark in TEMP_MARKS):
        found.append(os.path.relpath(os.path.join(folder, name), root))
  return sorted(found)


# --- timing model --------------------------------------------------------------------------------
@dataclasses.dataclass
class Timeline:
  """Durations of an uninterrupted run, to predict what an attempt still has to do.

  Attributes:
    total: seconds from launch to exit.
    starts: stage -> seconds after the launch at which it first started.
    startup: launch to the first meta-iteration (imports, config, build, restore).
    first_step: the first meta-iteration with its checkpoint (tracing included).
    per_step: each later meta-iteration with its checkpoint (and validation).
    stages: evaluate / export / plot -> its duration.
    exit: from the end of the figure to the end of the process.
    durations: stage -> the median duration of its occurrences (a checkpoint write, one
      validation...), for the kills aimed at a stage.
    changes: [(seconds after the launch, stage)]: every stage change, as the probe saw it.
    preparation: stage -> how many times the reference entered it, for the stages in which it
      prepared its data in its folder (:attr:`Experiment.preparation`).
    preparation_seconds: the time it spent in them.
  """
  total: float
  starts: Dict[str, float]
  startup: float
  first_step: float
  per_step: float
  stages: Dict[str, float]
  exit: float
  durations: Dict[str, float]
  changes: List[Tuple[float, str]]
  preparation: Dict[str, int] = dataclasses.field(default_factory=dict)
  preparation_seconds: float = 0.0

  @classmethod
  def of(cls, attempt: Attempt, num_iterations: int,
         preparation: Sequence[str] = ()) -> "Timeline":
    """The timeline of the reference run ``attempt`` of an experiment of ``num_iterations``
    meta-iterations whose runs prepare their data in the stages ``preparation``."""
    starts = {}
    for seconds, stage in attempt.stages:
      starts.setdefault(stage, seconds)
    missing = [s for s in ("training", "checkpoint") + AFTER_TRAINING + ("exit",)
               if s not in starts]
    if missing:
      raise RuntimeError(f"The reference run's stage probe never saw {missing} (log: "
                         f"{attempt.log}).")
    first_step = starts["checkpoint"] - starts["training"]
    training = starts["evaluate"] - starts["training"]
    ends = [starts[s] for s in AFTER_TRAINING[1:]] + [starts["exit"]]
    occurrences = collections.defaultdict(list)
    changes = [(0.0, "startup")] + [c for i, c in enumerate(attempt.stages)
                                    if i or c[1] != "startup"] + [(attempt.seconds, None)]
    for (start, stage), (end, _) in zip(changes, changes[1:]):
      occurrences[stage].append(end - start)
    return cls(total=attempt.seconds, starts=starts, startup=starts["training"],
               first_step=first_step,
               per_step=max(training - first_step, 0.0) / max(num_iterations - 1, 1),
               stages={s: end - starts[s] for s, end in zip(AFTER_TRAINING, ends)},
               exit=attempt.seconds - starts["exit"],
               durations={s: statistics.median(d) for s, d in occurrences.items()},
               changes=changes[:-1],
               preparation={s: len(occurrences[s]) for s in preparation if s in occurrences},
               preparation_seconds=sum(sum(occurrences[s]) for s in preparation))

  def upcoming(self, step: int, done: Sequence[str], num_iterations: int) -> Dict[str, int]:
    """stage -> how many times an attempt on a folder checkpointed at ``step`` whose
    after-training stages ``done`` are finished will enter it: the training stages as the
    reference entered them after its ``step``-th checkpoint (a validation whose score is not
    kept does its best/ bookkeeping too fast to be seen, for instance), the preparation stages
    as the reference entered them unless ``done`` holds "data" (see :func:`folder_state`)."""
    counts = collections.Counter(["startup", "config", "build", "exit"])
    if DATA not in done:
      counts.update(self.preparation)
    counts.update(stage for stage in AFTER_TRAINING if stage not in done)
    if step >= num_iterations:
      return dict(counts)
    training = [s for _, s in self.changes if s in TRAINING_STAGES]
    checkpoints = [i for i, s in enumerate(training) if s == "checkpoint"]
    counts.update(training[checkpoints[step - 1] + 1 if 0 < step <= len(checkpoints) else 0:])
    return dict(counts)

  def remaining(self, step: int, done: Sequence[str], num_iterations: int) -> float:
    """Expected seconds of an attempt on a folder checkpointed at ``step`` whose stages
    ``done`` are finished."""
    training = (self.first_step + (num_iterations - step - 1) * self.per_step
                if step < num_iterations else 0.0)
    return (self.startup - (self.preparation_seconds if DATA in done else 0.0) + training +
            self.exit + sum(seconds for stage, seconds in self.stages.items()
                            if stage not in done))


def plan_kill(rng: random.Random, experiment: Experiment, timeline: Timeline, step: int,
              done: Sequence[str], hits: Dict[str, int]) -> Kill:
  """When to kill the next attempt on a folder checkpointed at ``step`` with the stages
  ``done`` finished, the kills so far having hit the stages ``hits``.

  Two kills in three (:data:`AIMED`) are aimed at a stage: among the stages the attempt will go
  through, one of those hit least so far (drawn uniformly), one of its occurrences (e.g. which
  checkpoint write, drawn uniformly) and a delay uniform within its usual duration. Uniform
  moments over a run would almost never hit a checkpoint write (milliseconds) or best/
  bookkeeping, and would mostly hit the start-up (a third of every attempt). The other kills
  are uniform in (0, the attempt's expected duration), the scheme that weighs each stage by
  its duration."""
  if rng.random() >= AIMED:
    return Kill(rng.uniform(0.0, timeline.remaining(step, done, experiment.num_iterations)))
  upcoming = timeline.upcoming(step, done, experiment.num_iterations)
  fewest = min(hits.get(s, 0) for s in upcoming)
  stage = rng.choice([s for s in STAGES
                      if s in upcoming and hits.get(s, 0) == fewest])
  if stage == "startup":  # From the launch: the probe starts a little after it.
    return Kill(rng.uniform(0.0, timeline.starts["config"]))
  return Kill(rng.uniform(0.0, timeline.durations.get(stage, 0.0)), stage,
              rng.randint(1, upcoming[stage]))


def folder_state(root: str, experiment: Optional[Experiment] = None) -> Tuple[int, List[str]]:
  """(step of the latest checkpoint, stages recorded in stages.json) of a run folder; the
  stages also hold :data:`DATA` once the folder holds the data ``experiment`` prepares in it."""
  step = 0
  state = os.path.join(root, "checkpoints", "checkpoint")
  if os.path.exists(state):
    with open(state) as f:
      for line in f:
        if line.startswith("model_checkpoint_path:"):
          step = int(line.split('"')[1].rsplit("-", 1)[-1])
  done = []
  if os.path.exists(os.path.join(root, "stages.json")):
    with open(os.path.join(root, "stages.json")) as f:
      done = list(json.load(f))
  if experiment is not None and experiment.prepared and experiment.is_prepared(root):
    done.append(DATA)
  return step, sorted(done)


# --- the fuzzing ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Report:
  """What :func:`fuzz` found for one experiment."""
  experiment: Experiment
  reference: Attempt
  timeline: Timeline
  attempts: List[Attempt] = dataclasses.field(default_factory=list)
  resumes: int = 0
  resumes_ok: int = 0
  folders: List[str] = dataclasses.field(default_factory=list)
  comparisons: List[Dict[str, List[str]]] = dataclasses.field(default_factory=list)
  problems: List[str] = dataclasses.field(default_factory=list)
  seconds: float = 0.0

  @property
  def kills(self) -> List[Attempt]:
    return [a for a in self.attempts if a.killed]

  def left_by(self, root: str, path: str) -> str:
    """Which kill first left ``path`` in ``root`` (evidence for a leftover), or ""."""
    for number, attempt in enumerate(self.kills, 1):
      if attempt.root == root and path.split(" ")[0] in attempt.leftovers:
        return (f" (left by kill {number}: {attempt.kill}, in {attempt.stage}, "
                f"{attempt.seconds:.2f} s after the launch; log {attempt.log})")
    return ""

  def stages_hit(self) -> Dict[str, int]:
    return collections.Counter(a.stage for a in self.kills)

  def all_equal(self, check: str) -> bool:
    return bool(self.comparisons) and all(not c[check] for c in self.comparisons)

  @property
  def ok(self) -> bool:
    return (not self.problems and self.resumes_ok == self.resumes and bool(self.comparisons)
            and all(not problems for c in self.comparisons for problems in c.values()))


def reference_run(experiment: Experiment, folder: str, probe_loader: str) -> Tuple[Attempt,
                                                                                 Timeline]:
  """The uninterrupted run into ``<folder>/reference`` and its timeline."""
  os.makedirs(os.path.join(folder, "logs"), exist_ok=True)
  attempt = run_attempt(experiment, os.path.join(folder, "reference"),
                        os.path.join(folder, "logs", "reference.log"), probe_loader)
  if attempt.returncode != 0:
    raise RuntimeError(f"The reference {experiment.name} run failed ({attempt.returncode}):\n"
                       f"{attempt.tail()}")
  return attempt, Timeline.of(attempt, experiment.num_iterations, experiment.preparation)


def fuzz(experiment: Experiment, kills: int, seed: int, folder: str, probe_loader: str,
         say=print) -> Report:
  """Runs the reference, then ``kills`` killed attempts and the re-runs that finish them (see
  the module docstring); returns the report with every finished folder compared."""
  started = time.time()
  rng = random.Random(f"{seed}/{experiment.name}")
  reference, timeline = reference_run(experiment, folder, probe_loader)
  say(f"[{experiment.name}] reference: {reference.seconds:.1f} s; stages start at " +
      ", ".join(f"{s} {t:.1f}" for s, t in sorted(timeline.starts.items(), key=lambda i: i[1])))
  report = Report(experiment, reference, timeline)
  folders = _Folders(report, folder, probe_loader)
  while len(report.kills) < kills and len(report.attempts) < 4 * kills + 10:
    step, done = folder_state(folders.root, experiment)
    hits = report.stages_hit()
    # (A stage the reference's probe never saw cannot be aimed at: it would stay the least hit.)
    fewest = min(hits.get(s, 0) for s in experiment.stages() if s in timeline.durations)
    upcoming = timeline.upcoming(step, done, experiment.num_iterations)
    if not any(hits.get(s, 0) == fewest for s in upcoming):
      say(f"[{experiment.name}] {os.path.basename(folders.root)} (step {step}, done "
          f"{','.join(done) or '-'}) is past the stages hit least: re-run to its end")
      folders.finish()  # And the kills go on in a new folder, which has every stage ahead.
      continue
    kill = plan_kill(rng, experiment, timeline, step, done, hits)
    attempt = folders.attempt(kill)
    if attempt.killed:
      say(f"[{experiment.name}] kill {len(report.kills)}/{kills} (folder at step {step}, done "
          f"{','.join(done) or '-'}) {kill}: hit {attempt.stage} at {attempt.seconds:.2f} s" +
          (f"; left {', '.join(attempt.leftovers)}" if attempt.leftovers else ""))
    elif attempt.returncode == 0:
      say(f"[{experiment.name}] {os.path.basename(folders.root)} finished before its kill "
          f"({kill})")
      folders.next()
  folders.finish()
  cache = {}
  for finished in report.folders:
    report.comparisons.append(compare(experiment, os.path.join(folder, "reference"), finished,
                                      cache))
    for check, problems in report.comparisons[-1].items():
      report.problems += [f"{os.path.basename(finished)}: {check}: {p}" +
                          report.left_by(finished, p) for p in problems]
  report.seconds = time.time() - started
  return report


class _Folders:
  """The killed folders of :func:`fuzz`: ``killed-1/``, then a new one each time one is
  finished, so that the kills go on interrupting unfinished work."""

  def __init__(self, report: Report, folder: str, probe_loader: str):
    self.report, self.folder, self.probe_loader = report, folder, probe_loader
    # An attempt slower than this is hung (the machine's load changes timings 2-3x).
    self.timeout = max(120.0, 5 * report.timeline.total)
    self.count = 1
    self.resume = False  # The folder's last attempt was killed or failed: the next resumes.

  @property
  def root(self) -> str:
    return os.path.join(self.folder, f"killed-{self.count}")

  def attempt(self, kill: Optional[Kill]) -> Attempt:
    """One attempt in the current folder, recorded in the report (with its failure)."""
    report = self.report
    log = os.path.join(self.folder, "logs", f"attempt-{len(report.attempts) + 1:02d}.log")
    attempt = run_attempt(report.experiment, self.root, log, self.probe_loader, kill,
                          self.timeout)
    report.attempts.append(attempt)
    failed = attempt.returncode not in (None, 0)
    if self.resume:
      report.resumes += 1
      report.resumes_ok += not failed
    if failed:
      report.problems.append(f"{os.path.basename(self.root)}: attempt {len(report.attempts)} "
                             f"exited with {attempt.returncode} (log {log}):\n{attempt.tail()}")
    self.resume = attempt.returncode != 0
    return attempt

  def next(self) -> None:
    """Records the current folder as finished and moves to a new one."""
    self.report.folders.append(self.root)
    self.count += 1
    self.resume = False

  def finish(self) -> None:
    """Re-runs the current folder until it exits 0 (at most RESUME_RETRIES times)."""
    for _ in range(RESUME_RETRIES):
      if self.attempt(None).returncode == 0:
        self.next()
        return
    self.report.problems.append(f"{self.root} did not finish in {RESUME_RETRIES} re-runs")
    self.count += 1
    self.resume = False


# --- the comparison ------------------------------------------------------------------------------
def compare(experiment: Experiment, reference: str, root: str,
            cache: Optional[Dict[str, Any]] = None) -> Dict[str, List[str]]:
  """check -> problems found in ``root`` against ``reference`` (no problem: an empty list).
  ``cache``: a dict kept across the comparisons with one reference (its SavedModel's outputs).

  Checks: weights, results, best, saved_model, figure, leftovers, stages, data."""
  return {"weights": _compare_weights(reference, root),
          "results": _compare_results(reference, root),
          "best": _compare_best(reference, root) if experiment.validates else [],
          "saved_model": _compare_saved_models(reference, root, cache),
          "figure": _check_figure(os.path.join(root, experiment.figure)),
          "leftovers": temporary_files(root) + _extra_checkpoint_files(reference, root),
          "stages": _compare_json(os.path.join(reference, "stages.json"),
                                  os.path.join(root, "stages.json")),
          "data": (_compare_data(os.path.join(reference, experiment.data),
                                 os.path.join(root, experiment.data))
                   if experiment.data else [])}


def _compare_data(reference: str, folder: str) -> List[str]:
  """The data a run prepared in its folder (LEO's glyphs and embeddings): the same files, each
  byte for byte, but the JSON metadata (it names the folder and holds timings)."""
  names = []
  for top in (reference, folder):
    names.append({os.path.relpath(os.path.join(d, n), top) for d, _, files in os.walk(top)
                  for n in files if not any(mark in n for mark in TEMP_MARKS)})
  problems = ([f"{n} is missing" for n in sorted(names[0] - names[1])] +
              [f"{n} is not in the reference" for n in sorted(names[1] - names[0])])
  for name in sorted(n for n in names[0] & names[1] if not n.endswith(".json")):
    with open(os.path.join(reference, name), "rb") as want, \
         open(os.path.join(folder, name), "rb") as got:
      if want.read() != got.read():
        problems.append(f"{name} differs")
  return problems


def _check_figure(path: str) -> List[str]:
  if not os.path.exists(path):
    return [f"{os.path.basename(path)} is missing"]
  return [] if os.path.getsize(path) > 0 else [f"{os.path.basename(path)} is empty"]


def _tensors(prefix: str) -> Dict[str, Any]:
  """Every tensor of the checkpoint ``prefix`` but train_seconds (wall-clock time)."""
  import tensorflow as tf
  reader = tf.train.load_checkpoint(prefix)
  return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
          if not key.startswith("_CHECKPOINTABLE") and "train_seconds" not in key}


def _compare_tensors(reference: Dict[str, Any], got: Dict[str, Any], where: str) -> List[str]:
  import numpy as np
  problems = [f"{where}: {key} missing" for key in sorted(set(reference) - set(got))]
  problems += [f"{where}: {key} not in the reference" for key in sorted(set(got) - set(reference))]
  for key in sorted(set(reference) & set(got)):
    if not np.array_equal(reference[key], got[key]):
      difference = (f"max |difference| {np.max(np.abs(reference[key] - got[key])):.3g}"
                    if np.issubdtype(np.asarray(got[key]).dtype, np.number) else "differs")
      problems.append(f"{where}: {key}: {difference}")
  return problems


def _compare_weights(reference: str, root: str) -> List[str]:
  """Every tensor of the latest checkpoint (:func:`_tensors`), and the checkpoint's step."""
  import tensorflow as tf
  latest = [tf.train.latest_checkpoint(os.path.join(r, "checkpoints")) for r in (reference, root)]
  if latest[1] is None:
    return ["no checkpoint"]
  names = [os.path.basename(p) for p in latest]
  problems = [] if names[0] == names[1] else [f"latest checkpoint {names[1]}, reference "
                                              f"{names[0]}"]
  return problems + _compare_tensors(_tensors(latest[0]), _tensors(latest[1]), names[1])


def _extra_checkpoint_files(reference: str, root: str) -> List[str]:
  """Files of checkpoints/ that the reference's checkpoints/ does not hold (a checkpoint that
  was to be deleted, kept forever), and those it misses."""
  names = [{n for n in os.listdir(os.path.join(r, "checkpoints"))
            if not any(mark in n for mark in TEMP_MARKS)} for r in (reference, root)]
  return ([f"checkpoints/{n} is not in the reference" for n in sorted(names[1] - names[0])] +
          [f"checkpoints/{n} is missing" for n in sorted(names[0] - names[1])])


def _strip_timing(value):
  if isinstance(value, dict):
    return {k: _strip_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
  return value


def _compare_json(reference: str, path: str, strip=lambda value: value) -> List[str]:
  if not os.path.exists(path):
    return [f"{os.path.basename(path)} is missing"]
  with open(reference) as f:
    want = strip(json.load(f))
  with open(path) as f:
    got = strip(json.load(f))
  if got == want:
    return []
  if isinstance(got, dict) and isinstance(want, dict):
    keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return [f"{os.path.basename(path)}: {k}: {got.get(k)!r:.300} != reference "
            f"{want.get(k)!r:.300}" for k in keys]
  return [f"{os.path.basename(path)} differs"]


def _compare_results(reference: str, root: str) -> List[str]:
  return _compare_json(os.path.join(reference, "results.json"),
                       os.path.join(root, "results.json"), _strip_timing)


def _compare_best(reference: str, root: str) -> List[str]:
  """best/scores.json and every tensor of every kept checkpoint."""
  problems = _compare_json(os.path.join(reference, "best", "scores.json"),
                           os.path.join(root, "best", "scores.json"))
  files = [sorted(f for f in os.listdir(os.path.join(r, "best")) if f != "scores.json")
           for r in (reference, root)]
  if files[0] != files[1]:
    return problems + [f"best/ holds {files[1]}, reference {files[0]}"]
  for index in (f[:-len(".index")] for f in files[0] if f.endswith(".index")):
    problems += _compare_tensors(*(_tensors(os.path.join(r, "best", index))
                                   for r in (reference, root)), f"best/{index}")
  return problems


def fixed_inputs(signature, seed: int = 0, num_classes: int = 0) -> Dict[str, Any]:
  """Inputs for a SavedModel signature: every unknown dimension 3, floats uniform in [0, 1),
  integers (class labels) 0, 1, ... cycling over ``num_classes`` classes (0: all 0): each
  class as often in a support set of N * K labels, as LEO's export requires."""
  import numpy as np
  rng = np.random.default_rng(seed)
  inputs = {}
  for name, spec in sorted(signature.structured_input_signature[1].items()):
    shape = [3 if d is None else d for d in spec.shape]
    dtype = spec.dtype.as_numpy_dtype
    if spec.dtype.is_integer:
      inputs[name] = (np.arange(int(np.prod(shape))) % max(num_classes, 1)).reshape(shape)
      inputs[name] = inputs[name].astype(dtype)
    else:
      inputs[name] = rng.uniform(size=shape).astype(dtype)
  return inputs


def _compare_saved_models(reference: str, root: str,
                          cache: Optional[Dict[str, Any]] = None) -> List[str]:
  """The SavedModel loads and its serving signature gives exactly the reference's outputs
  (computed once into ``cache`` when given: a glyphs SavedModel takes seconds to load)."""
  import tensorflow as tf
  outputs = []
  for r in (reference, root):
    if r == reference and cache is not None and "outputs" in cache:
      outputs.append(cache["outputs"])
      continue
    path = os.path.join(r, "saved_model")
    if not os.path.isdir(path):
      return ["saved_model/ is missing"]
    try:
      loaded = tf.saved_model.load(path)
      signature = loaded.signatures["serving_default"]
    except Exception as error:  # pylint: disable=broad-except  (reported, not raised)
      return [f"saved_model/ does not load: {error}"]
    classes = int(loaded.num_classes.numpy()) if hasattr(loaded, "num_classes") else 0
    result = signature(**{k: tf.constant(v) for k, v in
                          fixed_inputs(signature, num_classes=classes).items()})
    outputs.append({k: v.numpy() for k, v in result.items()})
    if r == reference and cache is not None:
      cache["outputs"] = outputs[-1]
  return _compare_tensors(outputs[0], outputs[1], "saved_model predictions")


# --- the whole benchmark -------------------------------------------------------------------------
def run(work_dir: str, domains: Sequence[str] = DOMAINS, kills: int = 20, seed: int = 0,
        parallel: int = 1, say=print) -> List[Report]:
  """Fuzzes each of ``domains`` (names of :func:`experiments`) with ``kills`` kills, up to
  ``parallel`` experiments at a time, in sub-folders of ``work_dir``; returns their reports
  in the order of ``domains``."""
  unknown = sorted(set(domains) - set(DOMAINS))
  if unknown:
    raise ValueError(f"Unknown domains {unknown}; choose among {list(DOMAINS)}.")
  if os.path.exists(work_dir) and os.listdir(work_dir):
    raise ValueError(f"{work_dir} is not empty: give the fuzzer an empty or new folder.")
  cache = os.path.join(work_dir, "glyph_cache")
  if "glyphs" in domains:
    prepare_glyphs(cache)
  probe_loader = write_probe_loader(os.path.join(work_dir, "probe"))
  chosen = experiments(cache)
  lock = threading.Lock()

  def locked_say(text):
    with lock:
      say(text)

  with concurrent.futures.ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
    futures = [pool.submit(fuzz, chosen[d], kills, seed, os.path.join(work_dir, d),
                           probe_loader, locked_say) for d in domains]
    return [future.result() for future in futures]


def table(reports: Sequence[Report]) -> str:
  """The summary table (Markdown): domain | kills | successful resumes | equal final weights |
  equal results | other checks | stages hit."""
  rows = ["| domain | kills | successful resumes | equal final weights | equal results | "
          "SavedModel, figure, no leftovers, stages.json, data | stages hit (kills) |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
  for report in reports:
    folders = len(report.comparisons)
    equal = lambda *checks: (f"{sum(all(not c[k] for k in checks) for c in report.comparisons)}"
                             f"/{folders} folders")
    hits = report.stages_hit()
    rows.append(f"| {report.experiment.name} | {len(report.kills)} | "
                f"{report.resumes_ok}/{report.resumes} | {equal('weights')} | "
                f"{equal('results', 'best')} | "
                f"{equal('saved_model', 'figure', 'leftovers', 'stages', 'data')} | " +
                ", ".join(f"{s} {hits.get(s, 0)}" for s in report.experiment.stages()) + " |")
  return "\n".join(rows)


# A cached folder being written (l2f_tf.atomic.partial_name): .<name>.<host>-<pid>-<random>.tmp
PARTIAL_FOLDER = re.compile(r"^(?P<head>(?:.*/)?\.[^/]+)\.[A-Za-z0-9]*-\d+-[0-9a-f]+\.tmp$")


def _leftover_kind(path: str) -> str:
  """``path`` with its random parts and step numbers as ``*`` (a cached folder's name kept)."""
  match = PARTIAL_FOLDER.match(path)
  if match:
    return match["head"] + ".*.tmp"
  return re.sub(r"\.[a-z0-9_]{8}\.tmp|\.tmp[0-9a-f]{8,}|\d+", lambda m: (
      ".*.tmp" if m.group().startswith(".") and m.group().endswith(".tmp") else
      ".tmp*" if m.group().startswith(".tmp") else "*"), path)


def leftovers_seen(reports: Sequence[Report]) -> Dict[str, int]:
  """Temporary files the kills left (random parts and step numbers as ``*``) -> how many kills
  left one: what the next run had to clear or overwrite."""
  seen = collections.Counter()
  for report in reports:
    for attempt in report.kills:
      seen.update({_leftover_kind(path) for path in attempt.leftovers})
  return dict(seen)


def remove(work_dir: str) -> None:
  shutil.rmtree(work_dir, ignore_errors=True)


# --- command line --------------------------------------------------------------------------------
def main(argv):
  del argv
  from absl import flags
  values = flags.FLAGS
  work_dir = values.work_dir or tempfile.mkdtemp(prefix="kill_resume_")
  started = time.time()
  reports = run(work_dir, values.domains, values.kills, values.seed, values.parallel,
                say=lambda text: print(text, flush=True))
  print()
  print(table(reports))
  print(f"\nTotal time: {time.time() - started:.0f} s (--kills={values.kills}, "
        f"--domains={','.join(values.domains)}, --seed={values.seed}, "
        f"--parallel={values.parallel}).")
  for report in reports:
    print(f"{report.experiment.name}: reference run {report.reference.seconds:.1f} s, "
          f"fuzzing {report.seconds:.0f} s, {len(report.attempts)} attempts.")
  left = leftovers_seen(reports)
  if left:
    print("Temporary files left by kills (then cleared or overwritten by the next run): " +
          ", ".join(f"{name} ({count})" for name, count in sorted(left.items())))
  problems = [f"[{r.experiment.name}] {p}" for r in reports for p in r.problems]
  print("\n".join(["Problems:"] + problems) if problems else "No problem found.")
  if values.work_dir or values.keep:
    print(f"Runs and logs: {work_dir}")
  else:
    remove(work_dir)
  sys.exit(1 if problems else 0)


if __name__ == "__main__":
  from l2f_tf import console  # l2f_tf first: it sets TF_USE_LEGACY_KERAS before TensorFlow.
  console.quiet_third_party()  # Before TensorFlow is imported (for the comparisons).
  from absl import app, flags
  flags.DEFINE_integer("kills", 20, "SIGKILLs per domain.")
  flags.DEFINE_list("domains", list(DOMAINS), "Domains to fuzz.")
  flags.DEFINE_integer("seed", 0, "Seeds every random draw (kill moments).")
  flags.DEFINE_string("work_dir", None, "An empty or new folder for the runs (default: a new "
                      "temporary folder, deleted at the end unless --keep).")
  flags.DEFINE_bool("keep", False, "Keep the runs and their logs.")
  flags.DEFINE_integer("parallel", 1, "Domains fuzzed at the same time (1: one after the other, "
                       "the cleanest timings).")
  app.run(main)
