"""tools/count_checks.py counts every kind of assertion site once, and knows each file's tier."""

from tools import count_checks

SOURCE = '''
import numpy as np
import pytest
import tensorflow as tf

from tests.train.distributed_runs import assert_same_training


def test_a(x):
  assert x == 1, "message"
  with pytest.raises(ValueError, match="bad"):
    f()
  with pytest.warns(UserWarning):
    g()
  np.testing.assert_allclose(x, 1.0)
  tf.debugging.assert_equal(x, 1)
  assert_same_training("a", "b")
  for y in range(3):
    assert y >= 0  # one site, however many times it runs
  h(x)  # not a check


def helper():
  return pytest.approx(1.0)  # part of an assert elsewhere, not a check by itself
'''


def test_each_kind_of_assertion_site_counts_once():
  assert count_checks.checks_in(SOURCE) == 7


def test_the_suite_is_counted_per_tier():
  files = count_checks.count()
  assert files["tests/test_count_checks.py"]["slow"] == 0
  assert files["tests/test_kill_resume.py"]["slow"] == 1
  assert sum(entry["checks"] for entry in files.values()) > 1000
