"""Gin set-up: the gin files shipped in the package, parsing with messages that name the fix,
modules of one's own imported by gin files, and the check of binding types.

Parsing needs every configurable registered: importing `l2f_tf.train.restore` (which every
entry point does) registers all of l2f_tf's. A gin file can register more with an ``import
my_task`` line (gin's own statement): :func:`parse` makes the folder of such a file, the
current folder, and the folders recorded in the file (:data:`IMPORT_PATH_MARK` lines) importable
first, so ``my_task.py`` next to ``my_task.gin`` needs no PYTHONPATH. A run's
operative_config.gin keeps the ``import`` lines and records with :func:`import_path_lines` where
the modules were found, so that evaluate, compare and analyze, which parse it again, find them
from any folder.
"""

import collections.abc
import difflib
import inspect
import logging as std_logging
import os
import re
import sys
import types
import typing
from typing import Dict, List, Sequence, Tuple

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


# "# l2f_tf import path: <folder>": a line of a gin file (written by the command line into a
# run's operative_config.gin) naming a folder that its ``import`` lines need.
IMPORT_PATH_MARK = "# l2f_tf import path: "
_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w.]+))",
                          re.M)
_INCLUDE_LINE = re.compile(r"""^[ \t]*include[ \t]+['"]([^'"]+)['"]""", re.M)
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
_PLUGIN_FOLDERS = []  # Folders parse() made importable for gin files' imports, in order.


def _read_gin_file(gin_file: str) -> Tuple[List[str], List[str], List[str]]:
  """(modules the gin file imports, folders its IMPORT_PATH_MARK lines name, files it
  includes)."""
  try:
    with open(gin_file) as f:
      text = f.read()
  except OSError:
    return [], [], []
  modules = [a or b for a, b in _IMPORT_LINE.findall(text)]
  folders = [line[len(IMPORT_PATH_MARK):].strip() for line in text.splitlines()
             if line.startswith(IMPORT_PATH_MARK)]
  return ([m for m in modules if not m.startswith("__gin__")], folders,
          _INCLUDE_LINE.findall(text))


def _make_importable(gin_files: Sequence[str]) -> List[str]:
  """Puts on sys.path (first, as Python does for a script's folder) the folders where the
  modules of ``import`` lines may be, for the gin files and the files they include (found as
  gin finds them: as given, or in the package's gin/ folder): each importing file's recorded
  folders and its own folder, and the current folder. Returns the folders looked in."""
  folders, pending, seen = [], list(gin_files), set()
  while pending:
    gin_file = pending.pop(0)
    if os.path.abspath(gin_file) in seen:
      continue
    seen.add(os.path.abspath(gin_file))
    modules, recorded, includes = _read_gin_file(gin_file)
    if modules:
      folders += recorded + [os.path.dirname(os.path.abspath(gin_file))]
    for name in includes:  # The first place gin looks that holds it.
      found = next((p for p in (name, os.path.join(GIN_DIR, name)) if os.path.isfile(p)), None)
      if found:
        pending.append(found)
  if not folders:
    return []
  folders.append(os.getcwd())
  folders = list(dict.fromkeys(os.path.abspath(f) for f in folders))
  for folder in reversed(folders):
    if folder not in sys.path:
      sys.path.insert(0, folder)
  _PLUGIN_FOLDERS.extend(f for f in folders if f not in _PLUGIN_FOLDERS)
  return folders


def _import_error_message(error: ImportError, gin_files: Sequence[str],
                          folders: Sequence[str]) -> str:
  """One line naming the module a gin file imports that cannot be found, and where it was
  looked for (or the module that one imports, when that is what is missing)."""
  text = str(error)
  missing = _MISSING_MODULE.search(text)
  place = re.search(r'In file "([^"]+)"', text)
  statement = _IMPORT_LINE.search(text.split("In file", 1)[-1])  # gin quotes the line
  imported = (statement.group(1) or statement.group(2)) if statement else None
  where = place.group(1) if place else ", ".join(gin_files)
  if missing is None or imported is None:
    return f"{where}: importing a module failed ({text.splitlines()[0]})."
  name = missing.group(1)
  looked_in = ", ".join(folders) if folders else os.getcwd()
  if imported == name or imported.startswith(name + "."):
    return (f"{where} imports the module {imported!r}, which is not installed nor in "
            f"{looked_in}: put {name.split('.')[0]}.py (or its package folder) in one of "
            "these folders.")
  return (f"{where} imports the module {imported!r}, which imports {name!r}: that module is "
          f"not installed (pip install it) nor in {looked_in}.")


def import_path_lines() -> str:
  """:data:`IMPORT_PATH_MARK` lines naming the folders, made importable by :func:`parse`, from
  which the parsed config's ``import`` lines imported their modules (what a run's
  operative_config.gin records); "" when there are none."""
  imports = gin.config._IMPORTS  # pylint: disable=protected-access  (gin has no public API)
  found = []
  for statement in imports:
    top = sys.modules.get(statement.module.split(".")[0])
    origin = getattr(top, "__file__", None)
    if not origin:
      continue
    folder = os.path.dirname(os.path.abspath(origin))
    if os.path.basename(origin) == "__init__.py":
      folder = os.path.dirname(folder)
    if folder in _PLUGIN_FOLDERS and folder not in found:
      found.append(folder)
  return "".join(f"{IMPORT_PATH_MARK}{folder}\n" for folder in found)


def parse(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files and bindings with a message that names what to fix on error (a module
  that an ``import`` line of a gin file names and that cannot be found: the module and the
  folders looked in)."""
  std_logging.getLogger().addFilter(_quiet_gin_includes)  # Added once: addFilter skips a twin.
  gin.add_config_file_search_path(GIN_DIR)
  gin_files = [resolve_gin_file(path) for path in gin_files]
  folders = _make_importable(gin_files)
  try:
    # Not finalized (locked): the modules meta-RL imports on first use (tf-agents, the rl
    # extra) register configurables of their own, which gin refuses once the config is locked.
    gin.parse_config_files_and_bindings(gin_files, list(gin_bindings), finalize_config=False)
  except ImportError as error:
    raise ValueError(_import_error_message(error, gin_files, folders)) from error
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
