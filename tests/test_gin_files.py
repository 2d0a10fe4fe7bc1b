"""Every gin file runs end to end through run_experiment.py with tiny bindings."""

import glob
import json
import os
import subprocess
import sys

import pytest

from l2f_tf.train import experiment, restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder
GIN_FILES = sorted(
    os.path.relpath(p, GIN_PARENT) for p in glob.glob(os.path.join(GIN_PARENT, "gin", "sinusoid", "**",
                                                              "*.gin"), recursive=True)
    if os.path.basename(p) != "setup.gin" and "learners" not in p)
TINY = ["Trainer.num_iterations = 4", "Trainer.summary_every = 2", "Runner.checkpoint_every = 2",
        "Trainer.jit_compile = False", "run_experiment.num_eval_tasks = 6",
        "SinusoidRegression.meta_batch_size = 3", "Runner.log_every_seconds = 0"]


def test_every_sinusoid_experiment_of_the_paper_has_a_gin_file():
  """Table 7 rows and the Table 4 / Table 6 ablations (extra files are welcome)."""
  expected = [f"gin/sinusoid/{m}_{k}shot.gin" for m in ("maml", "l2f") for k in (5, 10, 20)]
  expected += [f"gin/sinusoid/ablations/task_independent_{s}.gin"
               for s in ("network", "layer", "filter", "parameter")]
  expected += [f"gin/sinusoid/ablations/task_conditioned_{t}.gin"
               for t in ("unconstrained", "affine")]
  assert not sorted(set(expected) - set(GIN_FILES))


# The landscape logging (on in gin/sinusoid/setup.gin) costs seconds of tracing per run; it is
# checked end to end on these files and switched off on the others.
LANDSCAPE_CHECKED = ("gin/sinusoid/maml_5shot.gin", "gin/sinusoid/l2f_5shot.gin")


@pytest.mark.parametrize("gin_file", GIN_FILES)
def test_gin_file_runs_end_to_end(gin_file, tmp_path):
  root = str(tmp_path / "run")
  landscape = gin_file in LANDSCAPE_CHECKED
  restore.setup_run(root, [os.path.join(GIN_PARENT, gin_file)],
                   TINY + ([] if landscape else ["Trainer.landscape = False"]))
  results = experiment.run_experiment(root)
  for name in ("operative_config.gin", "results.json", "test_tasks.png",
               "saved_model/saved_model.pb", "checkpoints/checkpoint"):
    assert os.path.exists(os.path.join(root, name)), name
  assert glob.glob(os.path.join(root, "train", "events.out.tfevents.*"))
  figures = results["evaluations"]["test"]
  assert set(figures) == {f"mse_after_{k}_steps" for k in (0, 1, 2, 5)}
  assert figures["mse_after_1_steps"]["n"] == 6
  tags = summary_tags(os.path.join(root, "train"))
  assert {"meta_loss", "outer_lr", "query_loss_after_step/0",
          "query_loss_after_step/1"} <= tags
  assert sum(t.startswith("degree_of_conflict/") for t in tags) == 6
  assert sum(t.startswith("landscape/") for t in tags) == (6 if landscape else 0)
  expected_gammas = 0 if os.path.basename(gin_file).startswith("maml") else 6
  assert sum(t.startswith("gamma/") for t in tags) == expected_gammas


def summary_tags(directory):
  """Tags of every scalar/tensor summary written in a TensorBoard directory."""
  import tensorflow as tf
  tags = set()
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_command_line_runs_and_resumes(tmp_path):
  root = str(tmp_path / "cli")
  args = [sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
          "--gin_file=gin/sinusoid/maml_5shot.gin"] + [f"--gin_bindings={b}" for b in TINY]
  subprocess.run(args, check=True, cwd=REPO, capture_output=True)
  with open(os.path.join(root, "results.json")) as f:
    assert json.load(f)["meta_iterations"] == 4
  # The same command with more iterations continues from step 4, from the saved config.
  more = args + ["--gin_bindings=Trainer.num_iterations = 6"]
  out = subprocess.run(more, check=True, cwd=REPO, capture_output=True, text=True)
  assert "Resumed from" in out.stderr
  with open(os.path.join(root, "results.json")) as f:
    results = json.load(f)
  assert results["meta_iterations"] == 6
  # The evaluation entry point on the SavedModel, with the run's own evaluation seed, reproduces
  # the in-process figure (same tasks, same adaptation).
  from l2f_tf import evaluate
  exported = evaluate.evaluate_saved_model(os.path.join(root, "saved_model"), num_tasks=6,
                                           seed=20200614, distributions=["test"])
  # 0..the exported number of steps (the training setting).
  assert list(exported["test"]) == [f"mse_after_{k}_steps" for k in range(3)]
  assert exported["test"]["mse_after_2_steps"]["mean"] == pytest.approx(
      results["evaluations"]["test"]["mse_after_2_steps"]["mean"], rel=1e-4)
  # Comparing runs: a text table and one figure with every learner.
  from l2f_tf import compare
  assert "MAML [cli] test: mse_after_0_steps=" in compare.results_table([root])
  png = compare.compare_figure([root, root], str(tmp_path / "compare.png"))
  assert os.path.getsize(png) > 10_000


def test_bad_binding_names_the_fix(tmp_path):
  with pytest.raises(ValueError, match="gin_bindings"):
    restore.setup_run(str(tmp_path), ["gin/sinusoid/l2f_5shot.gin"], ["Trainer.num_iteration = 3"])
  with pytest.raises(ValueError, match="does not exist"):
    restore.setup_run(str(tmp_path), ["gin/sinusoid/nope.gin"], [])
