"""Installs by need: the default install (no ``rl`` extra) runs everything but meta-RL, and
meta-RL without the extra stops with one line naming the install command.

A missing extra is simulated, not uninstalled: ``None`` in ``sys.modules`` makes a module's
import fail (and ``importlib.util.find_spec`` report it missing), as on a default install.
"""

import configparser
import os
import sys

import pytest

from l2f_tf import extras

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = 'pip install -e ".[rl]" in the l2f_tf source folder'

def blocked(monkeypatch, *names):
  for name in names:
    monkeypatch.setitem(sys.modules, name, None)


def test_meta_rl_domain_names_the_extra_in_one_line(monkeypatch):
  from l2f_tf.domains.meta_rl import MetaRLDomain
  blocked(monkeypatch, "gymnasium")
  with pytest.raises(extras.MissingExtraError) as raised:
    MetaRLDomain(env_name="Navigation2D")
  error = raised.value
  assert isinstance(error, ValueError) and isinstance(error, ImportError)  # CLI: one line
  first = str(error).split("\n")[0]  # (gin appends "In call to configurable ...")
  assert first == extras.message("rl", "Meta-RL (MetaRLDomain)", "gymnasium")
  assert "missing module: gymnasium" in first and INSTALL in first


def test_require_names_the_first_missing_module(monkeypatch):
  assert extras.missing("rl") is None  # (the test extra installs the rl extra)
  blocked(monkeypatch, "mujoco", "tf_keras")
  with pytest.raises(ImportError) as raised:
    extras.require("rl", "Meta-RL")
  assert raised.value.name == "mujoco"


def test_policy_distribution_names_the_extra_without_tensorflow_probability(monkeypatch):
  """The policy export traces the learner's loss, the first user of tensorflow-probability."""
  import numpy as np
  from l2f_tf.rl import policy_gradient as pg
  blocked(monkeypatch, "tensorflow_probability")
  with pytest.raises(extras.MissingExtraError, match=r"missing module: tensorflow_probability\)"):
    pg.distribution(np.zeros([1, 4], np.float32))


def test_other_import_errors_are_not_reported_as_a_missing_extra(monkeypatch):
  blocked(monkeypatch, "numpy")
  with pytest.raises(ModuleNotFoundError) as raised:
    extras.import_module("rl", "numpy", "Meta-RL")
  assert not isinstance(raised.value, extras.MissingExtraError)


def test_setup_cfg_puts_meta_rl_in_the_rl_extra_and_tests_get_everything():
  config = configparser.ConfigParser()
  config.read(os.path.join(REPO, "setup.cfg"))
  requirements = lambda key, section="options.extras_require": config[section][key].split()
  rl, test = requirements("rl"), requirements("test")
  default = requirements("install_requires", "options")
  assert set(rl) <= set(test)  # .ci/run installs ".[test]": the whole suite runs
  assert not set(rl) & set(default)
  names = {r.split("[")[0].split("=")[0].replace("-", "_") for r in rl}
  assert names == {"tf_agents", "tensorflow_probability", "gymnasium", "tf_keras"}
  assert set(extras.EXTRAS["rl"]) == names | {"mujoco"}  # (gymnasium[mujoco] brings mujoco)
