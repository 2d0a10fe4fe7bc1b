"""A default install (no ``rl`` extra) in a fresh process: meta-RL's gin file through the command
line stops with one line naming the install command, the supervised path and a policy export
work. Slow tier: a fresh process imports TensorFlow; tests/test_extras.py checks the same
message in process, and tests/test_install.py runs a real fresh install."""

import os
import subprocess
import sys

import pytest

from l2f_tf import extras
from tests.test_extras import INSTALL, REPO

pytestmark = pytest.mark.slow

RL_MODULES = extras.EXTRAS["rl"] + ("gym", "pygame")  # (tf-agents pulls gym and pygame in)

# Run in a fresh process with the rl extra's modules blocked: meta-RL's gin file through the
# command line (which exits), then the supervised path of a default install and the loading of
# a policy export (argv: the RL run folder, a sinusoid run folder, the policy export).
DEFAULT_INSTALL = f"""
import runpy, sys
import numpy as np
for name in {RL_MODULES!r}:
  sys.modules[name] = None
rl_root, sinusoid_root, policy_path = sys.argv[1:]
sys.argv = ["l2f_tf", "--gin_file=rl/navigation2d_maml.gin", "--root_dir=" + rl_root]
try:
  runpy.run_module("l2f_tf", run_name="__main__", alter_sys=True)
except SystemExit as stop:
  print("exit status", stop.code, flush=True)
import l2f_tf
from l2f_tf import analyze, compare, embed, evaluate, export  # noqa: F401
from l2f_tf.train import restore  # noqa: F401  (registers every configurable, meta-RL's too)
domain = l2f_tf.SinusoidRegression(num_shots=5, meta_batch_size=2)
learner = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1,
                             attenuation=l2f_tf.TaskConditionedAttenuation())
l2f_tf.Trainer(learner, domain, sinusoid_root, num_iterations=1, summary_every=0)
print("sinusoid trainer built", flush=True)
policy = export.load(policy_path)
trajectories = [np.ones([2, 3, 2], np.float32)] * 2 + [np.ones([2, 3], np.float32)] * 2
adapted = policy.adapt_and_act(*trajectories, np.zeros([4, 2], np.float32))
print("policy loaded", type(policy).__name__, adapted["mean"].shape, flush=True)
"""


def test_default_install_runs_supervised_and_names_the_extra_for_meta_rl(tmp_path):
  """One process (~5 s): the command line with meta-RL's gin file exits 1 with the one line and
  removes the folder it made; then the modules of the supervised path import, a sinusoid
  Trainer builds and a policy export (written here, with the rl extra) loads and adapts, none
  of them needing the rl extra."""
  from l2f_tf import export
  from tests.rl.test_maml_trpo import policy_learner
  policy = export.export_policy(policy_learner(l2f=False), str(tmp_path / "policy"),
                                observation_dim=2, action_dim=2, name="Navigation2D")
  root = tmp_path / "rl_run"
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-c", DEFAULT_INSTALL, str(root), str(tmp_path / "sin"),
                         policy], capture_output=True, text=True, cwd=str(tmp_path), env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split("\n")[:3] == ["exit status 1", "sinusoid trainer built",
                                         "policy loaded LoadedPolicy (4, 2)"], done.stdout
  assert "Traceback" not in done.stderr
  errors = [line for line in done.stderr.splitlines() if "needs the 'rl' extra" in line]
  assert len(errors) == 1, done.stderr[-3000:]
  assert errors[0].endswith("Meta-RL (MetaRLDomain) needs the 'rl' extra, which is not installed "
                            f"(missing module: tf_agents): {INSTALL} (without -e for a "
                            "non-editable install).")
  assert not root.exists()
