"""Gin set-up shared by the command-line entry points, and reopening a finished run.

A run directory keeps the full config it was started with (operative_config.gin). Running the
same command again reloads that file, with command-line bindings applied on top, so a resumed
run is the same experiment even if the gin files have been edited since.
"""

import atexit
import collections.abc
import difflib
import fnmatch
import glob
import inspect
import logging as std_logging
import os
import re
import types
import typing
from typing import Dict, List, Optional, Sequence, Tuple

import gin
from absl import logging

from l2f_tf import atomic
from l2f_tf import configurables  # noqa: F401  (registers every configurable)
from l2f_tf.run_folder import CONFIG_NAME, RunFolder, RunLock
from l2f_tf.train import checkpoints, distribution, validation
from l2f_tf.train.experiment import build_learner

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")
DEFAULT_GIN_FILE = os.path.join(GIN_DIR, "sinusoid", "l2f_5shot.gin")


class _QuietGinIncludes(std_logging.Filter):
  """gin logs "Path not found" at ERROR for every include it then finds on the search path."""

  def filter(self, record):
    return record.module != "resource_reader"


std_logging.getLogger().addFilter(_QuietGinIncludes())


def resolve_gin_file(path: str) -> str:
  """The gin file ``path`` names: as given, or relative to the gin/ folder of l2f_tf (or to
  its parent, for ``gin/...`` paths given outside the repository)."""
  for candidate in (path, os.path.join(GIN_DIR, path),
                    os.path.join(os.path.dirname(GIN_DIR), path)):
    if os.path.isfile(candidate):
      return candidate
  raise ValueError(f"--gin_file {path} does not exist (the gin files of l2f_tf are in "
                   f"{GIN_DIR}).")


def parse(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files and bindings with a message that names what to fix on error."""
  gin.add_config_file_search_path(GIN_DIR)
  gin_files = [resolve_gin_file(path) for path in gin_files]
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings))
  except (ValueError, KeyError, TypeError, SyntaxError) as error:
    raise ValueError(f"Bad gin configuration ({error}).{_suggestion(str(error))} Check the "
                     f"--gin_bindings and gin files {list(gin_files)}; every binding must name "
                     "a configurable of l2f_tf, e.g. Trainer.num_iterations = 1000.") from error


def _suggestion(message: str) -> str:
  """" Did you mean ...?" for a misspelt configurable or parameter in a gin error message."""
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  parameter = re.search(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'",
                        message)
  if parameter:
    match = registry.get_match(parameter.group(1))
    if match is None:
      return ""
    target = match.wrapped.__init__ if inspect.isclass(match.wrapped) else match.wrapped
    names = list(inspect.signature(target).parameters)
    close = difflib.get_close_matches(parameter.group(2), names, n=3)
  else:
    configurable = re.search(r"No configurable matching '([\w.]+)'", message)
    if not configurable:
      return ""
    names = sorted({m.name for _, m in registry.items()})
    close = difflib.get_close_matches(configurable.group(1), names, n=3)
  return f" Did you mean {' or '.join(close)}?" if close else ""


# Bindings that may differ when a trained run is resumed: how long it trains, how it is
# logged, checkpointed, distributed and evaluated, and where its data lives. Any other
# difference makes it another experiment.
RESUMABLE_CHANGES = (
    "*.num_iterations", "Runner.*", "run_experiment.strategy", "make_strategy.*",
    "run_experiment.num_eval_tasks", "run_experiment.eval_steps", "run_experiment.export_steps",
    "run_experiment.export_max_steps", "run_experiment.plot", "*.summary_every", "*.landscape",
    "*.landscape_multipliers", "*.conflict_every", "*.steps_per_call", "*.jit_compile", "*.root",
    "*.data_root", "*.root_dir", "*.data_dir", "*.cache_dir", "NonFiniteGuard.*",
)


class ConfigMismatchError(ValueError):
  """A trained run folder was given a configuration that makes it another experiment."""


def setup_run(root_dir: str, gin_files: Sequence[str], gin_bindings: Sequence[str],
              resume: bool = False) -> str:
  """Parses the config of a new or resumed run, checks it, and writes operative_config.gin;
  returns that path. Nothing is written before the config has passed every check.

  A folder that holds a trained run (a checkpoint) is resumed with its own config. The gin
  files and bindings of the command must then describe the same experiment (differences in
  :data:`RESUMABLE_CHANGES` aside, e.g. more iterations): otherwise a
  :class:`ConfigMismatchError` names the differences, unless ``resume`` says to continue the
  stored config whatever the command's gin files (bindings still apply on top). A folder whose
  run never trained is started afresh from the command's gin files when it names any.

  The process that writes the folder (the chief) holds its :class:`RunLock` from here on.
  """
  folder = RunFolder(root_dir)
  stored = os.path.exists(folder.config)
  trained = stored and checkpoints.latest(folder.checkpoints) is not None
  files = list(gin_files) or [DEFAULT_GIN_FILE]
  if stored and (trained or not gin_files or resume):
    if trained and not resume:
      _refuse_other_experiment(folder, gin_files, gin_bindings)
    logging.info("Resuming %s with its %s (plus command-line bindings)%s.", root_dir,
                 CONFIG_NAME, "; --gin_file is not re-read" if gin_files else "")
    files = [folder.config]
  elif stored:
    logging.info("%s holds the config of a run that never trained: starting it afresh from "
                 "%s.", root_dir, ", ".join(files))
  gin.clear_config()
  parse(files, gin_bindings)
  check_binding_types()
  folder.prepare()  # Only now: a config error leaves no new folder behind.
  if distribution.is_chief_task(configured_strategy_name()):  # Other workers write nothing here.
    _hold_lock(folder)
    removed = folder.remove_leftovers()
    if removed:
      logging.info("Removed %d temporary file(s) left in %s by an interrupted run.", removed,
                   root_dir)
    atomic.write_text(folder.config, gin.config_str())  # Another worker may be reading it.
  return folder.config


_LOCKS: Dict[str, RunLock] = {}


def _hold_lock(folder: RunFolder) -> None:
  """Takes the folder's lock for the rest of this process (once per folder)."""
  root = os.path.abspath(folder.root)
  if root not in _LOCKS:
    if not _LOCKS:
      atexit.register(release_locks)  # A clean exit leaves a lock naming no process.
    _LOCKS[root] = RunLock(folder.root).acquire()


def release_locks() -> None:
  """Releases the run folder locks this process holds (tests that run several experiments in
  one process, one after the other)."""
  while _LOCKS:
    _LOCKS.popitem()[1].release()


def parsed_bindings() -> Dict[str, str]:
  """``Configurable.parameter`` (scoped ``scope/Configurable.parameter``) -> the value as gin
  prints it, for every binding of the parsed config."""
  bindings = {}
  for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
    match = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    name = match.name if match is not None else selector
    for param, value in params.items():
      bindings[f"{scope + '/' if scope else ''}{name}.{param}"] = repr(value)
  return bindings


def _resumable(binding: str) -> bool:
  unscoped = binding.split("/")[-1]
  return any(fnmatch.fnmatchcase(unscoped, pattern) for pattern in RESUMABLE_CHANGES)


def experiment_differences(old: Dict[str, str], new: Dict[str, str]) -> List[Tuple[str, str,
                                                                                    str]]:
  """(binding, old value, new value) of every binding that differs between two configs
  (``parsed_bindings``) and is not a :data:`RESUMABLE_CHANGES`; a missing binding is
  "(default)"."""
  return [(key, old.get(key, "(default)"), new.get(key, "(default)"))
          for key in sorted(set(old) | set(new))
          if old.get(key) != new.get(key) and not _resumable(key)]


def _refuse_other_experiment(folder: RunFolder, gin_files: Sequence[str],
                             gin_bindings: Sequence[str]) -> None:
  """Raises ConfigMismatchError when the command asks for another experiment than the trained
  one in ``folder``."""
  gin.clear_config()
  parse([folder.config], [])
  old = parsed_bindings()
  gin.clear_config()
  parse(list(gin_files) or [folder.config], gin_bindings)
  differences = experiment_differences(old, parsed_bindings())
  gin.clear_config()
  if not differences:
    return
  step = os.path.basename(checkpoints.latest(folder.checkpoints)).split("-")[-1]
  asked = " ".join([f"--gin_file={f}" for f in gin_files] +
                   [f"--gin_bindings='{b}'" for b in gin_bindings]) or "(no --gin_file)"
  lines = "\n".join(f"  {key}: {before} in the run, {after} now"
                     for key, before, after in differences[:20])
  more = f"\n  ... and {len(differences) - 20} more" if len(differences) > 20 else ""
  raise ConfigMismatchError(
      f"{folder.root} holds a run trained to meta-iteration {step} with another "
      f"configuration ({folder.config}) than this command asks for ({asked}):\n{lines}{more}\n"
      "Use a new --root_dir for the new experiment, or add --resume to continue the run with "
      "its own configuration (command-line bindings apply on top).")


# --- binding types -------------------------------------------------------------------------------
def check_binding_types() -> None:
  """Raises ValueError naming every binding whose value does not match the type annotation of
  its parameter (``Trainer.num_iterations = '200'``), before anything runs or is written.
  References (``@name``, ``%MACRO``) and unannotated parameters are not checked."""
  problems = []
  for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
    match = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    if match is None:
      continue
    hints = _type_hints(match.wrapped)
    for param, value in params.items():
      expected = hints.get(param)
      if expected is not None and not _matches(value, expected):
        problems.append(f"{scope + '/' if scope else ''}{match.name}.{param} = {value!r} is a "
                        f"{type(value).__name__}, but it must be {_type_name(expected)}")
  if problems:
    raise ValueError("Bad gin binding type: " + "; ".join(problems) + ". Fix the binding: "
                     "numbers without quotes (200, not '200'), True/False for switches, text "
                     "in quotes.")


def _type_hints(fn) -> Dict[str, object]:
  target = fn.__init__ if inspect.isclass(fn) else fn
  try:
    return typing.get_type_hints(target)
  except Exception:  # pylint: disable=broad-except  (unresolvable annotations: not checked)
    return {}


def _matches(value, expected) -> bool:
  """Whether a parsed gin value fits the annotation ``expected`` (lenient: unknown
  annotations, references and macros pass)."""
  if isinstance(value, gin.config.ConfigurableReference) or expected is typing.Any:
    return True
  origin = typing.get_origin(expected)
  if origin in (typing.Union, types.UnionType):
    return any(_matches(value, arg) for arg in typing.get_args(expected))
  if expected is type(None):
    return value is None
  if expected is bool:
    return isinstance(value, bool)
  if expected is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if expected is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if expected is str:
    return isinstance(value, str)
  if origin in (list, tuple, collections.abc.Sequence):
    if not isinstance(value, (list, tuple)):
      return False
    args = [a for a in typing.get_args(expected) if a is not Ellipsis]
    return len(args) != 1 or all(_matches(v, args[0]) for v in value)
  return True


def _type_name(expected) -> str:
  if typing.get_origin(expected) in (typing.Union, types.UnionType):
    return " or ".join(_type_name(a) for a in typing.get_args(expected))
  if expected is type(None):
    return "None"
  if typing.get_origin(expected) is None:
    return getattr(expected, "__name__", str(expected))
  return str(expected).replace("typing.", "").replace("collections.abc.", "")


def configured_strategy_name() -> str:
  """The strategy bound to ``run_experiment.strategy`` in the parsed config ("default")."""
  try:
    return gin.query_parameter("run_experiment.strategy")
  except ValueError:
    return "default"


def configured_domain():
  """A new instance of the domain bound to ``run_experiment.domain`` in the parsed config."""
  return gin.query_parameter("run_experiment.domain").scoped_configurable_fn()


def restore_learner(root_dir: str, gin_bindings: Sequence[str] = (),
                    step: Optional[int] = None):
  """(domain, learner) of a finished or running experiment (``gin_bindings`` on top of its
  config, e.g. a dataset root on this machine).

  The weights are those the run exports: its best validated checkpoint when it validates
  (few-shot classification), else its latest checkpoint; or, with ``step``, the checkpoint of
  that meta-iteration (in checkpoints/ or best/). Parses the run's operative_config.gin
  (replacing the current gin config).
  """
  gin.clear_config()
  folder = RunFolder(root_dir)
  parse([folder.config], list(gin_bindings))
  domain = configured_domain()
  learner = build_learner(domain)
  if step is not None:
    path = _checkpoint_of_step(folder, step)
  else:
    entries = validation.BestCheckpoints(folder.best).entries() if os.path.isdir(folder.best) \
        else []
    path = entries[0]["path"] if entries else checkpoints.latest(folder.checkpoints)
  if path is None:
    raise ValueError(f"{folder.checkpoints} holds no checkpoint: run_experiment.py has not "
                     f"trained in {root_dir} yet.")
  checkpoints.restore_weights(learner, path)
  return domain, learner


def _checkpoint_of_step(folder: RunFolder, step: int) -> str:
  """The path of the checkpoint of meta-iteration ``step`` in checkpoints/ or best/."""
  found = {}
  for directory in (folder.checkpoints, folder.best):
    for index in glob.glob(os.path.join(directory, "ckpt-*.index")):
      number = os.path.basename(index)[len("ckpt-"):-len(".index")]
      if number.isdigit():
        found.setdefault(int(number), index[:-len(".index")])
  if step not in found:
    raise ValueError(f"{folder.root} has no checkpoint of step {step}; it keeps steps "
                     f"{sorted(found) or 'none'}.")
  return found[step]
