"""Gin set-up shared by the command-line entry points, and reopening a finished run.

A run directory keeps the full config it was started with (operative_config.gin). Running the
same command again reloads that file, with command-line bindings applied on top, so a resumed
run is the same experiment even if the gin files have been edited since.
"""

import glob
import logging as std_logging
import os
from typing import Optional, Sequence

import gin
from absl import logging

from l2f_tf import configurables  # noqa: F401  (registers every configurable)
from l2f_tf.run_folder import CONFIG_NAME, RunFolder
from l2f_tf.train import checkpoints, distribution, validation
from l2f_tf.train.experiment import build_learner

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")
DEFAULT_GIN_FILE = os.path.join(GIN_DIR, "sinusoid", "l2f_5shot.gin")


class _QuietGinIncludes(std_logging.Filter):
  """gin logs "Path not found" at ERROR for every include it then finds on the search path."""

  def filter(self, record):
    return record.module != "resource_reader"


std_logging.getLogger().addFilter(_QuietGinIncludes())


def parse(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files and bindings with a message that names what to fix on error."""
  gin.add_config_file_search_path(GIN_DIR)
  for path in gin_files:
    if not os.path.exists(path) and not os.path.exists(os.path.join(GIN_DIR, path)):
      raise ValueError(f"--gin_file {path} does not exist (gin files live in {GIN_DIR}).")
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings))
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f"Bad gin configuration ({error}). Check the --gin_bindings and gin files "
                     f"{list(gin_files)}; every binding must name a configurable of l2f_tf, "
                     "e.g. Trainer.num_iterations = 1000.") from error


def setup_run(root_dir: str, gin_files: Sequence[str], gin_bindings: Sequence[str]) -> str:
  """Parses the config of a new or resumed run and writes operative_config.gin; returns it."""
  os.makedirs(root_dir, exist_ok=True)
  config_path = RunFolder(root_dir).config
  if os.path.exists(config_path):
    logging.info("Resuming %s: using its %s (plus command-line bindings); --gin_file is not "
                 "re-read.", root_dir, CONFIG_NAME)
    parse([config_path], gin_bindings)
  else:
    parse(list(gin_files) or [DEFAULT_GIN_FILE], gin_bindings)
  if distribution.is_chief_task(configured_strategy_name()):  # Other workers write nothing here.
    # Atomically (a temporary file, then a rename): another worker may be reading it.
    tmp = f"{config_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      f.write(gin.config_str())
    os.replace(tmp, config_path)
  return config_path


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
