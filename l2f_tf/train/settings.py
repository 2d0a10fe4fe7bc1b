"""What makes two runs the same experiment, for runs made from gin files and from Python alike.

A run folder trained with one experiment must not be continued, evaluated or overwritten by
another: the command line compares gin configs (`l2f_tf.train.restore.setup_run`), and the
:class:`~l2f_tf.train.runner.Runner` compares *settings*, read from the objects themselves so
that a run built in Python is checked the same way. :func:`describe` lists a trainer's settings
as ``"Class.attribute": value`` entries (the trainer, its learner, attenuation, domain and what
they hold from this package, plus the shapes of the network's weights); they are kept in the
run folder's settings.json. :data:`RESUMABLE_CHANGES` names the settings a resumed run may
change; both checks use it. :func:`check_rebuilt` holds a learner and domain rebuilt for a run
made in Python (evaluate, compare, analyze) to the settings.json of that run.
"""

import fnmatch
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

from l2f_tf import atomic, smoke
from l2f_tf.run_folder import RunFolder

FORMAT_VERSION = 2  # 2: records smoke mode
# The settings.json entry that says whether smoke mode (L2F_TF_SMOKE) trained the run.
SMOKE_KEY = "smoke_mode"

# Settings a resumed trained run may change (how long it trains, how it is logged,
# checkpointed, distributed and evaluated, where its data lives): any other makes another run.
# Patterns match "Class.attribute" (gin bindings and described settings alike).
RESUMABLE_CHANGES = (
    "*.num_iterations", "Runner.*", "run_experiment.strategy", "make_strategy.*",
    "run_experiment.num_eval_tasks", "run_experiment.eval_steps", "run_experiment.export_steps",
    "run_experiment.export_max_steps", "run_experiment.plot", "*.summary_every", "*.landscape",
    "*.landscape_multipliers", "*.conflict_every", "*.steps_per_call", "*.jit_compile", "*.root",
    "*.data_root", "*.root_dir", "*.data_dir", "*.cache_dir", "*.directory", "*.num_workers",
    "NonFiniteGuard.*", "*.later_steps_lr", "InnerLearningRates.later_lr",
)

_SIMPLE = (bool, int, float, str, type(None))


class ConfigMismatchError(ValueError):
  """A trained run folder was given a configuration that makes it another experiment."""


def _text(value: Any) -> Optional[str]:
  """The value as a setting's text, or None when it is not a plain setting (an object, a
  tensor, a function)."""
  if isinstance(value, _SIMPLE):
    return repr(value)
  if isinstance(value, tf.dtypes.DType):
    return value.name
  if isinstance(value, (tuple, list)) and all(isinstance(v, _SIMPLE) for v in value):
    return repr(tuple(value))
  if isinstance(value, dict) and all(isinstance(v, _SIMPLE) for v in value.values()):
    return repr(dict(sorted(value.items())))
  if callable(value) and "<locals>" not in getattr(value, "__qualname__", "<locals>"):
    return f"{value.__module__}.{value.__qualname__}"  # a loss or metric function
  return None


def _layer_attributes() -> frozenset:
  """The attributes every Keras layer has (its name, build state, ...): not settings."""
  global _LAYER_ATTRIBUTES  # pylint: disable=global-statement
  if _LAYER_ATTRIBUTES is None:
    _LAYER_ATTRIBUTES = frozenset(vars(keras.layers.Layer()))
  return _LAYER_ATTRIBUTES


_LAYER_ATTRIBUTES = None


def _own(value: Any) -> bool:
  """Whether ``value`` is an object of this package (whose settings are described too)."""
  return type(value).__module__.startswith("l2f_tf.")


def _visit(obj: Any, settings: Dict[str, str], seen: set) -> None:
  """Adds the public plain attributes of ``obj``, and of the objects of this package it holds,
  to ``settings`` as ``"Class.attribute": text``."""
  if id(obj) in seen:
    return
  seen.add(id(obj))
  name = type(obj).__name__
  skip = _layer_attributes() if isinstance(obj, keras.layers.Layer) else ()
  for attribute, value in sorted(getattr(obj, "__dict__", {}).items()):
    if attribute.startswith("_") or attribute in skip:
      continue
    text = _text(value)
    if text is None and _own(value):
      text = type(value).__name__  # and its own settings, visited below
      _visit(value, settings, seen)
    if text is not None:
      settings[f"{name}.{attribute}"] = text


def _weight_shapes(learner: Any) -> Dict[str, str]:
  """The network's weight shapes and batch-norm mode (a layer setting no attribute holds)."""
  model = getattr(learner, "model", None)
  if model is None:
    return {}
  described = {"network.weight_shapes": repr([tuple(w.shape) for w in model.weights])}
  if hasattr(learner, "batch_norm"):
    described["network.batch_norm"] = repr(learner.batch_norm)
  return described


def describe(trainer: Any) -> Dict[str, str]:
  """``{"Class.attribute": text}``: the public plain attributes of ``trainer`` and of the
  objects of this package it holds (learner, attenuation, domain, inner learning rates, ...),
  ``"network.weight_shapes"``: the shapes of the learner's network weights,
  ``"network.batch_norm"``: its batch-norm mode, and :data:`SMOKE_KEY`: whether smoke mode
  (`l2f_tf.smoke`) trains it, so that a smoke folder never grows silently into a real run."""
  settings: Dict[str, str] = {}
  _visit(trainer, settings, set())
  settings.update(_weight_shapes(trainer.learner))
  settings[SMOKE_KEY] = repr(smoke.active())
  return settings


def stored(folder: RunFolder) -> Optional[Dict[str, str]]:
  """The settings recorded in the folder's settings.json, or None (none of this format)."""
  entry = _stored(folder, "its settings are not read")
  return None if entry is None else dict(entry.get("settings", {}))


# Learner settings that do not change what a restored learner computes (what it logs).
_NOT_REBUILT = ("MetaLearner.metric_fn", "LEO.metric_fn")


def check_rebuilt(folder: RunFolder, learner: Any = None, domain: Any = None) -> None:
  """Raises ConfigMismatchError unless a learner and domain rebuilt for the run in ``folder``
  (from a gin file, for a run made in Python) describe what its settings.json records about
  them: their classes, their settings and those of the objects they hold, the network's
  weight shapes (:data:`RESUMABLE_CHANGES` aside). Settings of the trainer are not compared."""
  recorded = stored(folder)
  if recorded is None:
    return
  rebuilt: Dict[str, str] = {}
  seen: set = set()
  for role, obj in (("learner", learner), ("domain", domain)):
    if obj is not None:
      rebuilt[f"Trainer.{role}"] = type(obj).__name__
      _visit(obj, rebuilt, seen)
  if learner is not None:
    rebuilt.update(_weight_shapes(learner))
  classes = {key.split(".")[0] for key in rebuilt} - {"Trainer"}
  old = {key: value for key, value in recorded.items()
         if key in rebuilt or key.split(".")[0] in classes}
  found = [d for d in differences(old, rebuilt) if d[0] not in _NOT_REBUILT]
  if found:
    lines = difference_lines(found)
    raise ConfigMismatchError(
        f"The gin file(s) describe another experiment than the run in {folder.root} (made in "
        f"Python; {folder.settings} records its settings):\n{lines}\nGive --gin_file a file "
        "that builds the run's own domain (the same arrays and settings as in Python).")


def differences(old: Dict[str, str], new: Dict[str, str]) -> List[Tuple[str, str, str]]:
  """(setting, old value, new value) of every setting that differs between two descriptions
  (gin bindings or :func:`describe` entries) and is not a :data:`RESUMABLE_CHANGES`; a
  missing one is "(default)"."""
  return [(key, old.get(key, "(default)"), new.get(key, "(default)"))
          for key in sorted(set(old) | set(new))
          if old.get(key) != new.get(key) and not any(
              fnmatch.fnmatchcase(key.split("/")[-1], p) for p in RESUMABLE_CHANGES)]


def difference_lines(found: List[Tuple[str, str, str]], limit: int = 20) -> str:
  """``  setting: old in the run, new now`` per difference (at most ``limit``, then a count)."""
  lines = [f"  {key}: {before} in the run, {after} now" for key, before, after in found[:limit]]
  if len(found) > limit:
    lines.append(f"  ... and {len(found) - limit} more")
  return "\n".join(lines)


def mismatch_message(root: str, step: str, stored: str, asked: str, new_folder: str,
                     how_to_continue: str, found: List[Tuple[str, str, str]]) -> str:
  """The error of a trained folder asked to run another experiment: what differs (at most 20
  lines) and the two ways on."""
  lines = difference_lines(found)
  return (f"{root} holds a run trained to meta-iteration {step} with another configuration "
          f"({stored}) than {asked}:\n{lines}\nUse a new {new_folder} for the new "
          f"experiment, or {how_to_continue}.")


def _stored(folder: RunFolder, consequence: str = "it is written again") -> Optional[Dict]:
  """settings.json's entry of this format, or None (none, unreadable or another format: a
  warning names the file and ``consequence``, what the caller does about it)."""
  if not os.path.exists(folder.settings):
    return None
  try:
    with open(folder.settings) as f:
      entry = json.load(f)
  except (OSError, ValueError) as error:
    logging.warning("Ignoring the unreadable %s (%s): %s.", folder.settings, error, consequence)
    return None
  if not isinstance(entry, dict) or entry.get("format") != FORMAT_VERSION:
    logging.warning("Ignoring %s: it is not of format %d (an older l2f_tf wrote it); %s.",
                    folder.settings, FORMAT_VERSION, consequence)
    return None
  return entry


def check(folder: RunFolder, settings: Dict[str, str], trained_step: Optional[int],
          resume: bool) -> None:
  """Refuses (ConfigMismatchError) to continue the run trained to ``trained_step`` (None: not
  trained) whose settings.json differs from ``settings``, unless ``resume``."""
  stored = _stored(folder)
  if trained_step is None or stored is None:
    return
  if smoke.active() and stored.get("settings", {}).get(SMOKE_KEY) == repr(False):
    raise ConfigMismatchError(
        f"{folder.root} holds a real run (trained to meta-iteration {trained_step}), and "
        f"{smoke.ENV} is set: this would evaluate it on {smoke.TASKS} tasks and overwrite its "
        f"results with smoke numbers. Unset {smoke.ENV}, or use another root_dir.")
  if resume:
    return
  found = differences(stored.get("settings", {}), settings)
  if found:
    raise ConfigMismatchError(mismatch_message(
        folder.root, str(trained_step), folder.settings, "these objects ask for", "root_dir",
        "pass Runner(..., resume=True) to continue the trained run with these settings "
        "(--resume on the command line)", found))


def record(folder: RunFolder, settings: Dict[str, str]) -> None:
  """Writes ``settings`` to the folder's settings.json (a new run, or a resumed one with its
  changes), unless it holds them already."""
  entry = {"format": FORMAT_VERSION, "settings": settings}
  if _stored(folder) != entry:
    atomic.write_json(folder.settings, entry)
