"""docs/api.md stays true to the code: every public name, signature, gin name and CLI flag.

The page's conventions, which these tests read:

* every name of ``l2f_tf._PUBLIC`` has a heading ``### `Name` ``; its section (up to the next
  heading) has a line ``Gin: `configurable` `` or ``Gin: none``;
* every ```` ```python ```` block holds signatures only, written as calls:
  ``Name(arg, kw=default, **kwargs)`` for a public class or function, ``Name.method(...)``
  (without ``self``) for a method, ``export.load(...)`` / ``export.export_policy(...)``
  for module functions. Parameter names, their order, which have defaults and the defaults'
  values must equal ``inspect.signature`` of the object. Usage examples go in ```` ```py ````
  blocks, which are not checked;
* each command-line tool has a heading ``### `python -m l2f_tf.<tool>` `` (or
  ``### `python -m l2f_tf` ``) with a table ``| `--flag` | `default` | meaning |``
  listing exactly the flags its ``define_flags()`` (and ``console.define_flag()``) define,
  with their defaults.

Importing the public names imports TensorFlow (seconds); nothing builds a model or a graph.
The flags are defined on a fresh ``absl.flags.FlagValues``, never on the global ``FLAGS``.
"""

import ast
import functools
import importlib
import importlib.util
import inspect
import math
import os
import re
from typing import Dict, List, Tuple
from unittest import mock

import gin
import pytest
from absl import flags as absl_flags

import l2f_tf
from l2f_tf import analyze, compare, console, embed, evaluate, predict
from l2f_tf.train import restore  # noqa: F401  (registers every gin configurable)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "api.md")
PUBLIC = sorted(l2f_tf._PUBLIC)  # pylint: disable=protected-access
# Heading of each tool's section -> its module (``python -m l2f_tf`` runs a ``__main__``: its
# path). Importing the modules defines no flag: they define them under ``__main__``.
TOOLS = {
    "python -m l2f_tf": "l2f_tf/__main__.py",
    "python -m l2f_tf.evaluate": evaluate,
    "python -m l2f_tf.predict": predict,
    "python -m l2f_tf.compare": compare,
    "python -m l2f_tf.analyze": analyze,
    "python -m l2f_tf.embed": embed,
}


@functools.lru_cache(maxsize=None)
def doc_text() -> str:
  with open(DOC) as f:
    return f.read()


def sections() -> Dict[str, str]:
  """``### `title` `` heading -> the text up to the next heading of any level."""
  found = {}
  for match in re.finditer(r"^### `([^`]+)`\n(.*?)(?=^#{1,3} |\Z)", doc_text(), re.M | re.S):
    assert match.group(1) not in found, f"docs/api.md has two sections {match.group(1)!r}"
    found[match.group(1)] = match.group(2)
  return found


# --- signatures ----------------------------------------------------------------------------------
class Documented:
  """One signature of the page: the dotted name and its parameters as written."""

  def __init__(self, call: ast.Call, source: str):
    self.name = ast.unparse(call.func)
    self.line = ast.get_source_segment(source, call).splitlines()[0]
    self.params: List[Tuple[str, object]] = []  # (name, default source or None)
    for arg in call.args:
      if isinstance(arg, ast.Starred):
        self.params.append(("*" + ast.unparse(arg.value), None))
      else:
        assert isinstance(arg, ast.Name), f"{self.line}: a parameter must be a plain name"
        self.params.append((arg.id, None))
    for keyword in call.keywords:
      if keyword.arg is None:
        self.params.append(("**" + ast.unparse(keyword.value), None))
      else:
        self.params.append((keyword.arg, ast.unparse(keyword.value)))


@functools.lru_cache(maxsize=None)
def documented_signatures() -> Tuple[Documented, ...]:
  found = []
  for block in re.findall(r"^```python\n(.*?)^```", doc_text(), re.M | re.S):
    tree = ast.parse(block)
    for statement in tree.body:
      assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call), (
          "```python blocks of docs/api.md hold signatures only (write examples in ```py "
          f"blocks): {ast.get_source_segment(block, statement)!r}")
      found.append(Documented(statement.value, block))
  return tuple(found)


def resolve(dotted: str):
  """The object a documented name stands for: ``Name`` and ``Name.attr`` start from the
  package's public names, ``l2f_tf.x.y.z`` from its modules."""
  parts = dotted.split(".")
  if parts[0] == "l2f_tf":
    for end in range(len(parts), 0, -1):
      try:
        obj = importlib.import_module(".".join(parts[:end]))
        break
      except ImportError:
        continue
    rest = parts[end:]
  else:
    assert parts[0] in l2f_tf._PUBLIC, (  # pylint: disable=protected-access
        f"{dotted}: {parts[0]} is not a public name of l2f_tf")
    obj, rest = getattr(l2f_tf, parts[0]), parts[1:]
  for part in rest:
    obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, (staticmethod, classmethod)):
      obj = obj.__func__
  return obj


def code_parameters(obj) -> List[inspect.Parameter]:
  """inspect.signature's parameters, without the ``self`` of a method looked up on its class."""
  params = list(inspect.signature(obj).parameters.values())
  if params and params[0].name == "self" and not inspect.isclass(obj):
    params = params[1:]
  return params


def default_namespace() -> Dict[str, object]:
  """Names the page's defaults may use besides literals."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from l2f_tf.models.conv4 import conv4  # pylint: disable=import-outside-toplevel
  from l2f_tf.models.linear import linear_classifier  # pylint: disable=import-outside-toplevel
  from l2f_tf.models.mlp import mlp, mlp_classifier  # pylint: disable=import-outside-toplevel
  return {"math": math, "gin": gin, "tf": tf, "conv4": conv4,
          "linear_classifier": linear_classifier, "mlp": mlp, "mlp_classifier": mlp_classifier,
          "Trainer": l2f_tf.Trainer}


def same_default(documented, actual) -> bool:
  return type(documented) is type(actual) and (documented is actual or documented == actual)


def test_every_public_name_has_a_section():
  missing = [name for name in PUBLIC if name not in sections()]
  assert not missing, f"docs/api.md has no '### `Name`' section for {missing}"


def test_every_public_class_and_function_has_its_signature():
  names = {d.name for d in documented_signatures()}
  missing = [name for name in PUBLIC if name != "export" and name not in names]
  assert not missing, f"docs/api.md has no ```python signature for {missing}"
  assert "export.load" in names


@pytest.mark.parametrize("documented", documented_signatures(), ids=lambda d: d.name)
def test_signature_matches_the_code(documented):
  obj = resolve(documented.name)
  params = code_parameters(obj)
  prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
  expected = [prefix.get(p.kind, "") + p.name for p in params]
  written = [name for name, _ in documented.params]
  assert written == expected, (f"docs/api.md: {documented.line}... lists {written}, the code "
                               f"has {expected}")
  namespace = default_namespace()
  for (name, source), param in zip(documented.params, params):
    has_default = param.default is not inspect.Parameter.empty
    assert (source is not None) == has_default, (
        f"{documented.name}: {name} has {'a' if has_default else 'no'} default in the code")
    if has_default:
      value = eval(source, namespace)  # pylint: disable=eval-used
      assert same_default(value, param.default), (
          f"{documented.name}: {name}={source} in docs/api.md, {param.default!r} in the code")


# --- gin names -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PUBLIC)
def test_gin_name(name):
  """``Gin: `x` `` names a configurable that is the object, wraps it, builds it or supplies
  its defaults (a function with ``configures``, e.g. BatchNorm's mode); ``Gin: none`` a name
  that gin does not know."""
  section = sections()[name]
  match = re.search(r"^Gin: (?:`([A-Za-z_][\w.]*)`|(none))", section, re.M)
  assert match, f"the section of {name} has no line 'Gin: `...`' or 'Gin: none'"
  obj = getattr(l2f_tf, name)
  if match.group(2):
    try:
      known = gin.config.get_configurable(name)
    except ValueError:
      return
    # tf_agents, once meta-RL has imported it, registers a configurable Learner: not ours.
    assert name == "Learner" and known is not obj, f"gin knows {name}"
    return
  configurable = gin.config.get_configurable(match.group(1))
  wrapped = getattr(configurable, "__wrapped__", None)
  assert (configurable is obj or wrapped is obj
          or inspect.signature(configurable).return_annotation is obj
          or getattr(wrapped, "configures", None) is obj), (
              f"gin's {match.group(1)} is not {name}, a wrapper of it, a factory of it, nor "
              "the configurable of its defaults")


# --- command-line flags --------------------------------------------------------------------------
class _FlagsOn:
  """Stands in for the ``absl.flags`` module inside an entry module: every ``DEFINE_*``
  defines on ``flag_values`` instead of the global FLAGS."""

  def __init__(self, flag_values: absl_flags.FlagValues):
    self.FLAGS = flag_values  # pylint: disable=invalid-name

  def __getattr__(self, name):
    attr = getattr(absl_flags, name)
    if name.startswith("DEFINE"):
      return functools.partial(attr, flag_values=self.FLAGS)
    return attr


def entry_module(target):
  """The module of an entry point: ``target`` itself, or the script at that path, loaded
  under another name."""
  if not isinstance(target, str):
    return target
  spec = importlib.util.spec_from_file_location("run_experiment_script",
                                                os.path.join(REPO, target))
  module = importlib.util.module_from_spec(spec)
  # The script filters stderr when imported; not in the test process.
  with mock.patch.object(console, "quiet_third_party", lambda *args: False):
    spec.loader.exec_module(module)
  return module


def defined_flags(target) -> absl_flags.FlagValues:
  """The flags of an entry point, as its ``__main__`` defines them, on a fresh FlagValues."""
  module = entry_module(target)
  flag_values = absl_flags.FlagValues()
  stand_in = _FlagsOn(flag_values)
  with mock.patch.object(module, "flags", stand_in), \
      mock.patch.object(console, "flags", stand_in):
    module.define_flags()
    console.define_flag()
  return flag_values


def shown_default(default) -> str:
  """How the page writes a flag's default."""
  if isinstance(default, list):
    return ",".join(str(v) for v in default) if default else "[]"
  return str(default)


def documented_flags(heading: str) -> Dict[str, str]:
  rows = re.findall(r"^\| `--(\w+)` \| `([^`]*)` \|", sections()[heading], re.M)
  assert rows, f"the section of {heading} has no flag table"
  assert len(rows) == len(dict(rows)), f"{heading}: a flag is listed twice"
  return dict(rows)


@pytest.mark.parametrize("heading", sorted(TOOLS))
def test_flags_of_each_tool(heading):
  global_flags = set(absl_flags.FLAGS)
  flag_values = defined_flags(TOOLS[heading])
  assert set(absl_flags.FLAGS) == global_flags  # Nothing was defined on the global FLAGS.
  defined = {name: shown_default(flag_values[name].default) for name in flag_values}
  documented = documented_flags(heading)
  assert sorted(documented) == sorted(defined), (
      f"{heading}: docs/api.md lists {sorted(documented)}, define_flags() defines "
      f"{sorted(defined)}")
  for name, default in defined.items():
    assert documented[name] == default, (
        f"{heading}: --{name} defaults to `{default}`, docs/api.md says `{documented[name]}`")


def test_every_tool_has_a_section():
  assert set(TOOLS) <= set(sections())
