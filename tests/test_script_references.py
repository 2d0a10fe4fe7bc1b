"""Every l2f_tf name the scripts outside the package use exists.

The benchmarks and tools are run by hand, often long after the package code they call moved
(a benchmark once called a function that had moved to another module, and failed only after
its runs had trained). This reads each script's source, without running it, and checks that
every `from l2f_tf... import name` and every `module.attribute` on an imported l2f_tf module
resolves.
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


def _missing_references(path: str):
  """The `l2f_tf` references of the script at `path` that do not resolve, as strings."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  modules, missing = {}, []  # local name -> imported l2f_tf module
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "l2f_tf":
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
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in modules and not hasattr(modules[node.value.id], node.attr)):
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
