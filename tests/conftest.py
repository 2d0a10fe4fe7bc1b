"""Shared test set-up: legacy-Keras flag before TensorFlow, gin cleared around every test, and
the two tiers of the suite.

Tiers (docs/testing.md): a test file whose module-level ``pytestmark`` holds ``pytest.mark.slow``
is in the slow tier (end-to-end runs: kill fuzzing, strategy equality, multi-worker, every gin
file, the documentation snippets); every other file is in the default tier, the one to run after
every change. ``--tier=default`` (the default) runs the default tier, ``--tier=slow`` the slow
one, ``--tier=all`` both. BUILD states the same split as each py_test's ``size``.
``--trace-report=FILE`` records each test's tf.function traces (`tests.trace_counts`).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow is imported)

import gin
import pytest

TIERS = ("default", "slow", "all")


def pytest_addoption(parser):
  parser.addoption("--tier", choices=TIERS, default="default",
                   help="which tests to run: default (every change), slow (end-to-end), all")
  parser.addoption("--trace-report", default=None, metavar="FILE",
                   help="append each test's tf.function trace counts to FILE (JSON lines)")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: end-to-end test of the slow tier (--tier=slow)")


def pytest_collection_modifyitems(config, items):
  tier = config.getoption("--tier")
  if tier == "all":
    return
  keep, drop = [], []
  for item in items:
    in_slow_tier = item.get_closest_marker("slow") is not None
    (keep if in_slow_tier == (tier == "slow") else drop).append(item)
  if drop:
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  path = item.config.getoption("--trace-report")
  if not path:
    yield
    return
  from tests import trace_counts
  with trace_counts.recorded(item.nodeid, path):
    yield


@pytest.fixture(autouse=True)
def clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()
