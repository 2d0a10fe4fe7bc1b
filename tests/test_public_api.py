"""The package-level API resolves lazily and names real objects."""

import pytest

import l2f_tf


def test_public_names_resolve():
  from l2f_tf.meta.learner import MetaLearner
  assert l2f_tf.MetaLearner is MetaLearner
  assert callable(l2f_tf.export.load)
  for name in l2f_tf._PUBLIC:  # pylint: disable=protected-access
    assert getattr(l2f_tf, name) is not None
  with pytest.raises(AttributeError):
    getattr(l2f_tf, "NoSuchThing")
