"""Gin set-up: the gin files shipped in the package, parsing with messages that name the fix,
and the check of binding types.

Parsing needs every configurable registered: importing `l2f_tf.train.restore` (which every
entry point does) registers all of l2f_tf's.
"""

import collections.abc
import difflib
import inspect
import logging as std_logging
import os
import re
import types
import typing
from typing import Dict, Sequence

import gin

GIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gin")
DEFAULT_GIN_FILE = os.path.join(GIN_DIR, "sinusoid", "l2f_5shot.gin")


def _quiet_gin_includes(record: std_logging.LogRecord) -> bool:
  """gin logs "Path not found" at ERROR for every include it then finds on the search path."""
  return record.module != "resource_reader"


def resolve_gin_file(path: str) -> str:
  """The gin file ``path`` names: as given, or relative to the package's gin/ folder
  (``sinusoid/quick.gin``) or to its parent (``gin/sinusoid/quick.gin``), from any directory."""
  for candidate in (path, os.path.join(GIN_DIR, path),
                    os.path.join(os.path.dirname(GIN_DIR), path)):
    if os.path.isfile(candidate):
      return candidate
  raise ValueError(f"--gin_file {path} does not exist (the gin files of l2f_tf are in "
                   f"{GIN_DIR}).")


def parse(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files and bindings with a message that names what to fix on error."""
  std_logging.getLogger().addFilter(_quiet_gin_includes)  # Added once: addFilter skips a twin.
  gin.add_config_file_search_path(GIN_DIR)
  gin_files = [resolve_gin_file(path) for path in gin_files]
  try:
    # Not finalized (locked): the modules meta-RL imports on first use (tf-agents, the rl
    # extra) register configurables of their own, which gin refuses once the config is locked.
    gin.parse_config_files_and_bindings(gin_files, list(gin_bindings), finalize_config=False)
  except (ValueError, KeyError, TypeError, SyntaxError) as error:
    raise ValueError(f"Bad gin configuration ({error}).{_suggestion(str(error))} Check the "
                     f"--gin_bindings and gin files {gin_files}; every binding must name "
                     "a configurable of l2f_tf, e.g. Trainer.num_iterations = 1000.") from error


def _gin_state():
  """(the parsed bindings {(scope, selector): {parameter: value}}, the registry of
  configurables): private attributes of gin, read here only (gin has no public API for them)."""
  return gin.config._CONFIG, gin.config._REGISTRY  # pylint: disable=protected-access


def _signature_target(match):
  return match.wrapped.__init__ if inspect.isclass(match.wrapped) else match.wrapped


def _suggestion(message: str) -> str:
  """" Did you mean ...?" for a misspelt configurable or parameter in a gin error message."""
  registry = _gin_state()[1]
  parameter = re.search(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'",
                        message)
  configurable = re.search(r"No configurable matching '([\w.]+)'", message)
  match = registry.get_match(parameter.group(1)) if parameter else None
  if match is not None:
    names = list(inspect.signature(_signature_target(match)).parameters)
    close = difflib.get_close_matches(parameter.group(2), names, n=3)
  elif configurable:
    names = sorted({m.name for _, m in registry.items()})
    close = difflib.get_close_matches(configurable.group(1), names, n=3)
  else:
    close = []
  return f" Did you mean {' or '.join(close)}?" if close else ""


def _bindings():
  """(``[scope/]Configurable``, its registration or None, parameter, value) of every binding
  of the parsed config."""
  parsed, registry = _gin_state()
  for (scope, selector), params in parsed.items():
    match = registry.get_match(selector)
    name = (f"{scope}/" if scope else "") + (match.name if match is not None else selector)
    for param, value in params.items():
      yield name, match, param, value


def parsed_bindings() -> Dict[str, str]:
  """``[scope/]Configurable.parameter`` -> the value as gin prints it, for every binding of the
  parsed config."""
  return {f"{name}.{param}": repr(value) for name, _, param, value in _bindings()}


def check_binding_types() -> None:
  """Raises ValueError naming every binding whose value does not match the type annotation of
  its parameter (``Trainer.num_iterations = '200'``), before anything runs or is written.
  References (``@name``, ``%MACRO``) and unannotated parameters are not checked."""
  problems = []
  for name, match, param, value in _bindings():
    expected = _type_hints(match).get(param) if match is not None else None
    if expected is not None and not _matches(value, expected):
      hint = ""
      if isinstance(value, float) and value.is_integer() and _matches(int(value), expected):
        hint = f" (write {int(value)}: 2e3 and 2000.0 are floats in gin)"
      problems.append(f"{name}.{param} = {value!r} is a {type(value).__name__}, but it must be "
                      f"{_type_name(expected)}{hint}")
  if problems:
    raise ValueError("Bad gin binding type: " + "; ".join(problems) + ". Fix the binding: "
                     "numbers without quotes (200, not '200'), True/False for switches, text "
                     "in quotes.")


def _type_hints(match) -> Dict[str, object]:
  try:
    return typing.get_type_hints(_signature_target(match))
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
  if expected in (bool, str, type(None)):
    return isinstance(value, expected)
  if expected in (int, float):
    return isinstance(value, (int, expected)) and not isinstance(value, bool)
  if origin in (list, tuple, collections.abc.Sequence):
    args = [a for a in typing.get_args(expected) if a is not Ellipsis]
    return isinstance(value, (list, tuple)) and (
        len(args) != 1 or all(_matches(v, args[0]) for v in value))
  return True


def _type_name(expected) -> str:
  if typing.get_origin(expected) in (typing.Union, types.UnionType):
    return " or ".join(_type_name(a) for a in typing.get_args(expected))
  if typing.get_origin(expected) is None:
    return "None" if expected is type(None) else getattr(expected, "__name__", str(expected))
  return str(expected).replace("typing.", "").replace("collections.abc.", "")
