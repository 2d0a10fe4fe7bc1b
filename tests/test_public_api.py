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


def test_importing_every_module_leaves_tensorflows_runtime_unstarted():
  """No module makes a tensor or touches a device at import time: a multi-worker strategy
  must configure TensorFlow's runtime before it starts ("Collective ops must be configured at
  program startup"), and ``run_experiment.py`` imports everything first."""
  code = ("import pkgutil, importlib, l2f_tf\n"
          "for m in pkgutil.walk_packages(l2f_tf.__path__, 'l2f_tf.'):\n"
          "  importlib.import_module(m.name)\n"
          "from tensorflow.python.eager import context\n"
          "print(context.context()._initialized)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "False"
