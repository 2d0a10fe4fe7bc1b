"""Counts the checks of the test suite: every place a test states something that must hold.

  python tools/count_checks.py            # total, per tier
  python tools/count_checks.py --files    # per test file

A check is one assertion site in tests/: an ``assert`` statement, a ``pytest.raises`` /
``pytest.warns`` context, a ``numpy.testing`` / ``tf.debugging`` ``assert_*`` call, or a call of a tests/ helper whose name starts with ``assert`` (counted once
per call site: each call checks a different subject). Sites are counted in the source, so a
parametrized test counts once however many cases it runs, and moving a check from one test
into another leaves the count unchanged: the figure goes down only when a check is removed.
The tier of a file is its module-level ``pytestmark`` (`build_targets.test_tier`).
"""

import argparse
import ast
import glob
import os
import sys
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import build_targets  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTEXT_CHECKS = {"raises", "warns", "deprecated_call"}


def _call_name(node: ast.Call) -> str:
  func = node.func
  if isinstance(func, ast.Attribute):
    return func.attr
  if isinstance(func, ast.Name):
    return func.id
  return ""


def checks_in(source: str) -> int:
  """The number of assertion sites of a test file's source."""
  count = 0
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Assert):
      count += 1
    elif isinstance(node, ast.Call):
      name = _call_name(node)
      if name in CONTEXT_CHECKS or name.startswith("assert"):
        count += 1
  return count


def count(repo: str = REPO) -> Dict[str, Dict[str, int]]:
  """{test file: {"checks": n, "slow": 0/1}} for every file of tests/ (helpers included: a
  helper's assertions are checks the tests run)."""
  found = {}
  for path in sorted(glob.glob(os.path.join(repo, "tests", "**", "*.py"), recursive=True)):
    with open(path) as f:
      source = f.read()
    found[os.path.relpath(path, repo)] = {"checks": checks_in(source), "slow": int(build_targets.test_tier(source) == "slow")}
  return found


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--files", action="store_true", help="one line per file")
  args = parser.parse_args(argv)
  files = count()
  if args.files:
    for path, entry in files.items():
      print(f"{entry['checks']:5d}  {'slow ' if entry['slow'] else '     '} {path}")
  slow = sum(e["checks"] for e in files.values() if e["slow"])
  total = sum(e["checks"] for e in files.values())
  print(f"{total} checks: {total - slow} in the default tier, {slow} in the slow tier")
  return 0


if __name__ == "__main__":
  sys.exit(main())
