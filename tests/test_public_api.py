"""The package-level API resolves lazily to the objects of the modules that define them."""

import importlib
import subprocess
import sys

import pytest

import l2f_tf


@pytest.mark.parametrize("name", sorted(l2f_tf._PUBLIC))  # pylint: disable=protected-access
def test_public_name_is_the_object_its_module_defines(name):
  module = importlib.import_module(l2f_tf._PUBLIC[name])  # pylint: disable=protected-access
  expected = module if name == "export" else getattr(module, name)
  assert getattr(l2f_tf, name) is expected
  assert name in dir(l2f_tf)
  if name != "export":
    assert expected.__module__ == module.__name__  # defined there, not re-exported


def test_unknown_name_raises_attribute_error():
  with pytest.raises(AttributeError, match="NoSuchThing"):
    getattr(l2f_tf, "NoSuchThing")


def test_importing_the_package_does_not_import_tensorflow():
  code = "import sys, l2f_tf; print('tensorflow' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"
