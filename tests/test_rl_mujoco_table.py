"""``benchmarks/rl_mujoco.py --table``: the markdown tables of finished MAML / MAML+L2F pairs,
read from run folders this test writes in the layout the training writes (a separate process:
the script's absl flags would clash with other benchmarks' in a test worker)."""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pair(root, env, seed, maml, l2f):
  """<root>/<env>/{summary.json, maml/results.json, l2f/results.json} with per-task returns
  (before, after) of each learner; L2F also theta's return before attenuation."""
  folder = os.path.join(root, env)
  for prefix, (before, after) in (("maml", maml), ("l2f", l2f)):
    test = {"return_after_0_steps": {"per_task": before},
            "return_after_1_steps": {"per_task": after}}
    if prefix == "l2f":
      test["return_after_0_steps_without_attenuation"] = {"per_task": [b - 1.0 for b in before]}
    os.makedirs(os.path.join(folder, prefix))
    with open(os.path.join(folder, prefix, "results.json"), "w") as f:
      json.dump({"meta_iterations": 125, "evaluations": {"test": test}}, f)
  with open(os.path.join(folder, "summary.json"), "w") as f:
    json.dump({"env": env, "seed": seed}, f)


def table(root):
  return subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "rl_mujoco.py"),
                         "--table", f"--root_dir={root}"], capture_output=True, text=True,
                        check=False, cwd=REPO)


def test_table_rows_per_seed_and_the_mean_over_seeds(tmp_path):
  maml0, l2f0 = ([0.0, 2.0, 4.0], [1.0, 3.0, 5.0]), ([1.0, 2.0, 6.0], [3.0, 2.0, 9.0])
  maml1, l2f1 = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), ([0.0, 1.0, 2.0], [2.0, 0.0, 4.0])
  write_pair(str(tmp_path / "seed0"), "halfcheetah_vel", 0, maml0, l2f0)
  write_pair(str(tmp_path / "seed1"), "halfcheetah_vel", 1, maml1, l2f1)
  done = table(str(tmp_path))
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  # Seed 0, MAML: 0 steps 2.00 (CI 1.96 * 2 / sqrt 3), 1 step 3.00, improvement exactly 1.
  assert "| halfcheetah_vel | 0 | MAML | 125 | 2.00 +- 2.26 | 3.00 +- 2.26 | 1.00 +- 0.00 |  |" in lines
  theta = np.array([0.0, 1.0, 5.0])  # L2F's before - 1
  theta_cell = f"{theta.mean():.2f} +- {1.96 * theta.std(ddof=1) / np.sqrt(3):.2f}"
  assert any(line.startswith("| halfcheetah_vel | 0 | MAML+L2F | 125 | 3.00 +- ") and
             line.endswith(f"| {theta_cell} |") for line in lines)
  # Paired differences after one step: seed 0 [2, -1, 4], seed 1 [1, -1, 3]; their mean
  # [1.5, -1, 3.5] is ahead on 2 of 3 tasks.
  after_mean = np.mean([[2, -1, 4], [1, -1, 3]], axis=0)
  ci = 1.96 * after_mean.std(ddof=1) / np.sqrt(3)
  mean_row = [line for line in lines if line.startswith("| halfcheetah_vel | mean of 2 |")]
  assert len(mean_row) == 1
  assert f"| {after_mean.mean():.2f} +- {ci:.2f} |" in mean_row[0]
  assert mean_row[0].endswith("| 2 of 3 |")


def test_table_without_finished_pairs_names_what_to_do(tmp_path):
  done = table(str(tmp_path))
  assert done.returncode != 0
  assert f"No finished pair (summary.json) under {tmp_path}: train one first." in done.stderr
