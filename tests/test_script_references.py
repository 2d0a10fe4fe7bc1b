"""Every l2f_tf (or sibling benchmark) name the scripts outside the package use exists.

The benchmarks and tools are run by hand, often long after the package code they call moved
(a benchmark once called a function that had moved to another module, and failed only after
its runs had trained). This reads each script's source, without running it, and checks that
every `from l2f_tf... import name` and every `module.attribute` on an imported l2f_tf module
resolves. Names of a sibling benchmark module (`from benchmarks import vision_step` or, run
as a script, `import vision_step`) are read from its source, since importing every benchmark
in one process would define clashing command-line flags.
"""

import ast
import glob
import importlib
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "benchmarks", "*.py"))
                 + glob.glob(os.path.join(REPO, "tools", "*.py"))
                 + [os.path.join(REPO, "run_experiment.py")])


class _SourceNames:
  """The top-level names a benchmark module defines, read from its source (not imported)."""

  def __init__(self, path: str):
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    self.names = set()
    for node in tree.body:
      nodes = node.body + node.orelse if isinstance(node, (ast.If, ast.Try)) else [node]
      for item in nodes:
        if isinstance(item, (ast.FunctionDef, ast.ClassDef)):
          self.names.add(item.name)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
          targets = item.targets if isinstance(item, ast.Assign) else [item.target]
          for target in targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            self.names.update(t.id for t in elements if isinstance(t, ast.Name))
        elif isinstance(item, (ast.Import, ast.ImportFrom)):
          self.names.update((a.asname or a.name).split(".")[0] for a in item.names)

  def __contains__(self, name: str) -> bool:
    return name in self.names


def _sibling(name: str):
  path = os.path.join(REPO, "benchmarks", f"{name}.py")
  return _SourceNames(path) if os.path.exists(path) else None


def _missing_references(path: str):
  """The `l2f_tf` and sibling-benchmark references of the script at `path` that do not
  resolve, as strings."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  modules, missing = {}, []  # local name -> imported l2f_tf module or a sibling's names
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == "benchmarks":
      for alias in node.names:
        modules[alias.asname or alias.name] = _sibling(alias.name)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if "." not in alias.name and _sibling(alias.name) is not None:
          modules[alias.asname or alias.name] = _sibling(alias.name)
        elif alias.name.split(".")[0] == "l2f_tf":
          module = importlib.import_module(alias.name)
          if alias.asname:
            modules[alias.asname] = module
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "l2f_tf":
      module = importlib.import_module(node.module)
      for alias in node.names:
        if hasattr(module, alias.name):
          value = getattr(module, alias.name)
        else:
          try:
            value = importlib.import_module(f"{node.module}.{alias.name}")
          except ModuleNotFoundError:
            missing.append(f"from {node.module} import {alias.name}")
            continue
        if isinstance(value, type(importlib)):
          modules[alias.asname or alias.name] = value
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and isinstance(node.ctx, ast.Load) and modules.get(node.value.id) is not None):
      continue
    module = modules[node.value.id]
    found = node.attr in module if isinstance(module, _SourceNames) else hasattr(module,
                                                                                  node.attr)
    if not found:
      missing.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
  return missing


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_package_name_a_script_uses_exists(path):
  assert _missing_references(path) == [], f"{os.path.relpath(path, REPO)} uses names that moved"


def test_the_check_finds_a_moved_name(tmp_path):
  script = tmp_path / "old.py"
  script.write_text("from l2f_tf.train import restore\nfrom l2f_tf import stats\n"
                    "restore.release_locks()\nstats.mean_and_ci95\n"
                    "from l2f_tf.stats import no_such_thing\n")
  assert _missing_references(str(script)) == [
      "from l2f_tf.stats import no_such_thing", "restore.release_locks (line 3)"]
  script.write_text("from benchmarks import vision_step, peer_code\n"
                    "vision_step.machine_info()\npeer_code.machine_info()\n")
  assert _missing_references(str(script)) == ["vision_step.machine_info (line 2)"]
