"""Starting, resuming and reopening runs from their gin config.

A run folder keeps the config it was started with (operative_config.gin); the same command
again reloads it (command-line bindings on top), so a resumed run is the same experiment even
if the gin files have changed. A run made in Python (`Trainer` + `Runner`) keeps no gin config,
only settings.json: it is reopened from a gin file of the user's that builds its domain and
from its learner as settings.json records it (:func:`run_config`), both checked against
settings.json. Importing this module registers every configurable of l2f_tf.
"""

# pylint: disable=unused-import
import inspect
import os
from typing import Dict, List, Optional, Sequence, Tuple

import gin
from absl import logging

import l2f_tf.domains.sinusoid  # noqa: F401  (this and the modules below register configurables)
from l2f_tf import atomic, config
from l2f_tf.data import glyphs, sinusoid_tasks  # noqa: F401
from l2f_tf.domains import arrays, embeddings, few_shot, meta_rl  # noqa: F401
from l2f_tf.meta import attenuation, leo  # noqa: F401
from l2f_tf.models import conv4, gaussian_policy, leo_network, linear, mlp, resnet12  # noqa: F401
from l2f_tf import run_folder
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.run_folder import CONFIG_NAME, SETTINGS_NAME, RunFolder
from l2f_tf.train import (checkpoints, distribution, guard, meta_rl_trainer,  # noqa: F401
                          pretrain, settings, validation)
from l2f_tf.train.experiment import build_learner

# The embedded datasets' generators, for gin: FewShotClassification.root = @ensure_glyphs(),
# FewShotEmbeddings.root = @ensure_glyph_embeddings().
gin.external_configurable(glyphs.ensure_glyphs, "ensure_glyphs")
gin.external_configurable(pretrain.ensure_glyph_embeddings, "ensure_glyph_embeddings")

ConfigMismatchError = settings.ConfigMismatchError


def setup_run(root_dir: str, gin_files: Sequence[str], gin_bindings: Sequence[str],
              resume: bool = False) -> str:
  """Parses and checks the config of a new or resumed run, then writes operative_config.gin;
  returns its path. The chief process holds the folder's RunLock from here on. A trained
  folder resumes with its own config: unless ``resume``, the command must describe the same
  experiment (`l2f_tf.train.settings.RESUMABLE_CHANGES` aside), else a ConfigMismatchError names the
  differences. A run that never trained starts afresh from the command's gin files if any."""
  folder = RunFolder(root_dir)
  stored = os.path.exists(folder.config)
  trained = stored and checkpoints.latest(folder.checkpoints) is not None
  files = list(gin_files) or [config.DEFAULT_GIN_FILE]
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
  config.parse(files, gin_bindings)
  config.check_binding_types()
  folder.prepare()  # Only now: a config error leaves no new folder behind.
  try:
    strategy = gin.query_parameter("run_experiment.strategy")
  except ValueError:
    strategy = "default"
  if distribution.is_chief_task(strategy):  # Other workers write nothing here.
    run_folder.hold_lock(folder.root)
    removed = folder.remove_leftovers()
    if removed:
      logging.info("Removed %d temporary file(s) left in %s by an interrupted run.", removed,
                   root_dir)
    # With the folders of the modules its import lines need (evaluate, compare and analyze
    # parse it again, from any folder). Another worker may be reading it.
    atomic.write_text(folder.config, config.import_path_lines() + gin.config_str())
  return folder.config


def _refuse_other_experiment(folder: RunFolder, gin_files: Sequence[str],
                             gin_bindings: Sequence[str]) -> None:
  """Raises ConfigMismatchError when the command asks for another experiment than the trained
  one in ``folder``."""
  def bindings(files, extra):
    gin.clear_config()
    config.parse(files, extra)
    return config.parsed_bindings()
  differences = settings.differences(bindings([folder.config], []),
                                     bindings(list(gin_files) or [folder.config], gin_bindings))
  gin.clear_config()
  if not differences:
    return
  step = str(checkpoints.latest_step(folder.checkpoints))
  asked = " ".join([f"--gin_file={f}" for f in gin_files] +
                   [f"--gin_bindings='{b}'" for b in gin_bindings]) or "(no --gin_file)"
  raise ConfigMismatchError(settings.mismatch_message(
      folder.root, step, folder.config, f"this command asks for ({asked})", "--root_dir",
      "add --resume to continue the run with its own configuration (command-line bindings "
      "apply on top)", differences))


# A run made in Python records its learner in settings.json (`l2f_tf.train.settings`):
# the learner classes rebuilt from it, the gin factories of the attenuations it may hold, and
# the parameters recorded under another object's name.
_LEARNERS = {"MetaLearner": MetaLearner, "LEO": leo.LEO}
_ATTENUATION_FACTORIES = {
    "TaskConditionedAttenuation": attenuation.task_conditioned_attenuation,
    "TaskIndependentAttenuation": attenuation.task_independent_attenuation,
    "LEOAttenuation": leo.leo_attenuation}
_RECORDED_AS = {("MetaLearner", "inner_lr"): "InnerLearningRates.inner_lr",
                ("MetaLearner", "learn_inner_lr"): "InnerLearningRates.learnable",
                ("MetaLearner", "later_steps_lr"): "InnerLearningRates.later_lr"}
_NOT_BOUND = ("self", "model", "loss_fn", "metric_fn", "seed", "dtype", "kwargs")


def _parameters(fn) -> list:
  target = getattr(fn, "__wrapped__", fn)  # a gin-wrapped factory
  target = target.__init__ if inspect.isclass(target) else target
  return [p for p in inspect.signature(target).parameters if p not in _NOT_BOUND]


def learner_bindings(recorded: Dict[str, str], root_dir: str = "the run") -> List[str]:
  """Gin bindings that make `build_learner` rebuild the learner that ``recorded`` (a run's
  settings.json, :func:`l2f_tf.train.settings.stored`) describes: its class, every constructor
  parameter recorded under its own name, and its attenuation with the attenuation's
  parameters. ValueError for a learner or attenuation of another kind."""
  name = recorded.get("Trainer.learner")
  if name not in _LEARNERS:
    raise ValueError(f"{root_dir} was trained in Python with a {name or 'unknown'} learner, "
                     f"which cannot be rebuilt from its {SETTINGS_NAME} (only "
                     f"{' and '.join(_LEARNERS)} can): train it with the command line "
                     "(python -m l2f_tf --gin_file=...) to use the tools on it.")
  bindings = [f"build_learner.learner_cls = @{name}"]
  for parameter in _parameters(_LEARNERS[name]):
    value = recorded.get(_RECORDED_AS.get((name, parameter), f"{name}.{parameter}"))
    if value is None:
      continue
    if parameter == "attenuation" and value != "None":
      if value not in _ATTENUATION_FACTORIES:
        raise ValueError(f"{root_dir} was trained in Python with a {value} attenuation, which "
                         f"cannot be rebuilt from its {SETTINGS_NAME}: train it with the "
                         "command line to use the tools on it.")
      factory = _ATTENUATION_FACTORIES[value]
      factory_name = factory.__name__
      bindings.append(f"{name}.attenuation = @{factory_name}()")
      bindings += [f"{factory_name}.{p} = {recorded[f'{value}.{p}']}"
                   for p in _parameters(factory) if f"{value}.{p}" in recorded]
    else:
      bindings.append(f"{name}.{parameter} = {value}")
  return bindings


def run_config(root_dir: str, gin_files: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
  """(gin files, bindings) that rebuild the experiment of the run in ``root_dir``: its
  operative_config.gin; or, for a run made in Python (only settings.json), ``gin_files``
  (which build its domain: ``run_experiment.domain = ...``, see docs/your_own_task.md) and the
  learner bindings read from settings.json. ValueError naming the fix otherwise."""
  folder = RunFolder(root_dir)
  if os.path.exists(folder.config):
    return [folder.config], []
  recorded = settings.stored(folder)
  if recorded is None:
    raise ValueError(f"{root_dir} is not a run folder: it has neither {CONFIG_NAME} nor "
                     f"{SETTINGS_NAME}.")
  if not gin_files:
    raise ValueError(f"{root_dir} was made in Python: it has no {CONFIG_NAME} to rebuild its "
                     "domain from. Pass --gin_file=<a gin file that builds its domain> "
                     "(run_experiment.domain = ...; the learner is read from its "
                     f"{SETTINGS_NAME}; docs/your_own_task.md).")
  return list(gin_files), learner_bindings(recorded, root_dir)


def parse_domain(gin_files: Sequence[str], gin_bindings: Sequence[str] = ()):
  """A new instance of ``run_experiment.domain`` of the config ``gin_files`` + ``gin_bindings``,
  parsed afresh (replacing the current gin config)."""
  gin.clear_config()
  config.parse(gin_files, gin_bindings)
  return gin.query_parameter("run_experiment.domain").scoped_configurable_fn()


def restore_learner(root_dir: str, gin_bindings: Sequence[str] = (),
                    step: Optional[int] = None, gin_files: Sequence[str] = ()):
  """(domain, learner) of a finished or running experiment (``gin_bindings`` on top of its
  config, e.g. a dataset root on this machine; the current gin config is replaced), with the
  weights the run exports (`validation.exported_checkpoint`) or, with ``step``, those of that
  meta-iteration (in checkpoints/ or best/). A run made in Python has no config: ``gin_files``
  build its domain and its learner is read from settings.json (:func:`run_config`); both must
  describe the settings it recorded (`settings.check_rebuilt`)."""
  folder = RunFolder(root_dir)
  files, learner_settings = run_config(root_dir, gin_files)
  domain = parse_domain(files, learner_settings + list(gin_bindings))
  learner = build_learner(domain)
  if learner_settings:
    settings.check_rebuilt(folder, learner, domain)
  path = (validation.exported_checkpoint(folder) if step is None else
          _checkpoint_of_step(folder, step))
  if path is None:
    raise ValueError(f"{folder.checkpoints} holds no checkpoint: run_experiment.py has not "
                     f"trained in {root_dir} yet.")
  checkpoints.restore_weights(learner, path)
  return domain, learner


def _checkpoint_of_step(folder: RunFolder, step: int) -> str:
  """The path of the checkpoint of meta-iteration ``step`` in checkpoints/ or best/."""
  found = {}
  for directory in (folder.checkpoints, folder.best):
    for saved in checkpoints.saved_steps(directory):
      found.setdefault(saved, os.path.join(directory, f"ckpt-{saved}"))
  if step not in found:
    raise ValueError(f"{folder.root} has no checkpoint of step {step}; it keeps steps "
                     f"{sorted(found) or 'none'}.")
  return found[step]
