"""BUILD states the real import graph: a target for every module, test file and entry point,
deps equal to the imports, no cycle."""

import ast
import os
import re
import subprocess
import sys

import pytest

from tools import build_targets

REPO = build_targets.REPO


def test_build_file_is_in_sync():
  result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "build_targets.py"),
                           "--check"], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def test_every_module_and_test_file_has_a_target():
  with open(os.path.join(REPO, "BUILD")) as f:
    srcs = set(re.findall(r'srcs = \["([^"]+)"\]', f.read()))
  for folder in ("l2f_tf", "tests"):
    for root, _, files in os.walk(os.path.join(REPO, folder)):
      for name in files:
        path = os.path.relpath(os.path.join(root, name), REPO)
        is_test = folder == "tests" and name.startswith("test_")
        if name.endswith(".py") and (folder == "l2f_tf" or is_test):
          assert path in srcs, f"{path} has no target in BUILD"
  assert "run_experiment.py" in srcs


@pytest.fixture(scope="module")
def rendered():
  """What BUILD should hold, rendered once for the module's tests (a second each)."""
  return build_targets.render()


def test_deps_follow_imports(rendered):
  text = rendered
  learner_rule = text[text.index('name = "l2f_tf_meta_learner"'):].split(")")[0]
  assert ":l2f_tf_meta_attenuation" in learner_rule
  assert ":l2f_tf_meta_inner_loop" in learner_rule


def test_the_check_fails_when_build_and_imports_disagree(rendered):
  text = rendered
  rule = text[text.index('name = "l2f_tf_meta_learner"'):].split(")")[0]
  missing = text.replace(rule, rule.replace('":l2f_tf_meta_attenuation", ', ""))
  assert missing != text
  assert build_targets.problems(missing, text) == [
      "BUILD is out of date: run python tools/build_targets.py"]
  assert build_targets.problems(text, text) == []


def test_the_library_graph_has_no_cycle_and_the_check_catches_one():
  with open(os.path.join(REPO, "BUILD")) as f:
    graph = build_targets.dependency_graph(f.read())
  assert graph["l2f_tf_meta_learner"] == ["l2f_tf_meta_attenuation", "l2f_tf_meta_contract",
                                          "l2f_tf_meta_inner_loop", "l2f_tf_precision",
                                          "l2f_tf_support_set"]
  assert build_targets.cycles(graph) == []
  # A planted cycle: the algorithm core importing the trainer that imports it.
  graph["l2f_tf_meta_contract"] = graph["l2f_tf_meta_contract"] + ["l2f_tf_train_trainer"]
  found = build_targets.cycles(graph)
  assert len(found) == 1 and {"l2f_tf_meta_contract", "l2f_tf_train_trainer"} <= set(found[0])
  assert build_targets.cycles({"a": ["a"]}) == [["a"]]


def test_layers_import_only_downwards():
  """meta/ imports no data, model, RL, training or domain code; data/ and models/ import no
  algorithm; rl/ does not import train/ (targets are named after their folders)."""
  with open(os.path.join(REPO, "BUILD")) as f:
    graph = build_targets.dependency_graph(f.read())
  forbidden = {"l2f_tf_meta_": ("data", "models", "rl", "train", "domains"),
               "l2f_tf_data_": ("meta", "rl", "train", "domains"),
               "l2f_tf_models_": ("meta", "rl", "train", "domains", "data"),
               "l2f_tf_rl_": ("train", "domains"),
               "l2f_tf_domains_": ("train",)}
  for target, deps in graph.items():
    for prefix, parts in forbidden.items():
      if target.startswith(prefix):
        bad = [d for d in deps if any(d.startswith(f"l2f_tf_{p}") for p in parts)]
        assert not bad, f"{target} imports {bad}"


def test_each_py_test_size_states_its_files_tier():
  """medium = the default tier, large = the slow tier (module-level ``pytestmark``)."""
  with open(os.path.join(REPO, "BUILD")) as f:
    sizes = dict(re.findall(r'py_test\(\n    name = "[^"]+",\n    srcs = \["([^"]+)"\],\n'
                            r'    size = "(\w+)"', f.read()))
  assert sizes and set(sizes.values()) == {"medium", "large"}, set(sizes.values())
  for path, size in sizes.items():
    with open(os.path.join(REPO, path)) as f:
      tier = build_targets.test_tier(f.read())
    assert size == build_targets.SIZES[tier], f"{path}: size {size}, tier {tier}"
  assert build_targets.test_tier("import pytest\npytestmark = pytest.mark.slow\n") == "slow"
  assert build_targets.test_tier("pytestmark = [pytest.mark.slow]\ndef test_a(): pass\n") == "slow"
  assert build_targets.test_tier("def test_a(): pass\n") == "default"


def test_the_slow_marker_is_set_per_file_only():
  """A tier is a file's (BUILD sizes files): no test function or class carries ``slow``."""
  for root, _, files in os.walk(os.path.join(REPO, "tests")):
    for name in files:
      if name.startswith("test_") and name.endswith(".py"):
        with open(os.path.join(root, name)) as f:
          tree = ast.parse(f.read())
        for node in ast.walk(tree):
          if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            marks = [ast.unparse(d) for d in node.decorator_list]
            assert not [m for m in marks if "mark.slow" in m], f"{name}: {node.name}"


class _Config:
  """What tests/conftest.py's collection hook reads of pytest's config."""

  def __init__(self, tier):
    self.tier, self.deselected = tier, []
    self.hook = self

  def getoption(self, name):
    assert name == "--tier"
    return self.tier

  def pytest_deselected(self, items):
    self.deselected += items


class _Item:
  def __init__(self, name, slow):
    self.name, self.slow = name, slow

  def get_closest_marker(self, name):
    return object() if name == "slow" and self.slow else None


def test_the_tier_option_selects_the_tests_of_its_tier():
  from tests import conftest
  fast, slow = _Item("fast", False), _Item("slow", True)
  for tier, kept in (("default", [fast]), ("slow", [slow]), ("all", [fast, slow])):
    config, items = _Config(tier), [fast, slow]
    conftest.pytest_collection_modifyitems(config, items)
    assert items == kept, tier
    assert config.deselected == [i for i in (fast, slow) if i not in kept], tier


def test_pytest_knows_the_tier_option():
  files = [os.path.join(REPO, "tests", "test_kill_resume.py"),
           os.path.join(REPO, "tests", "test_count_checks.py")]
  out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--tier=slow"]
                       + files, capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 0, out.stdout[-2000:]
  assert {line.split("::")[0] for line in out.stdout.splitlines() if "::" in line} == {
      "tests/test_kill_resume.py"}
