"""BUILD has a target for every module, test file and entry point (and nothing stale)."""

import os
import re
import subprocess
import sys

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


def test_deps_follow_imports():
  text = build_targets.render()
  learner_rule = text[text.index('name = "l2f_tf_meta_learner"'):].split(")")[0]
  assert ":l2f_tf_meta_attenuation" in learner_rule
  assert ":l2f_tf_meta_inner_loop" in learner_rule
