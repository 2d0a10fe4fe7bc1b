"""Runs and exports that several test files only read, made once per test session.

Training a run or tracing a SavedModel's signatures is most of the time of the tests that read
one, so each is built once, with tiny settings, in a folder that the session's pytest-xdist
workers share (the parent of a worker's base temp folder; without xdist the base temp folder
itself): the first process that needs it builds it under a file lock and writes a marker last,
the others wait for the lock and read it. A test must not write into these folders (copy one
first, as test_compare_paired does).
"""

import fcntl
import os
import shutil
from typing import Callable, List

import gin
import keras
import numpy as np

from l2f_tf import export, run_folder
from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import experiment, restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder

# MAML and L2F sinusoid runs for analyze and compare (the settings of analyze's test, where
# compare's differed in settings its checks do not read): summaries (with the landscape) and
# checkpoints at meta-iterations 2 and 4; 6 evaluation tasks, two meta-batches of 3, at 0, 1
# and 2 steps; no figure; SavedModels with max_steps 3, not the default 10.
SINUSOID_RUN_BINDINGS = [
    "Trainer.num_iterations = 4", "Trainer.summary_every = 2", "Runner.checkpoint_every = 2",
    "Trainer.jit_compile = False", "Trainer.steps_per_call = 1", "Trainer.landscape = True",
    "SinusoidRegression.meta_batch_size = 3", "run_experiment.num_eval_tasks = 6",
    "run_experiment.eval_steps = [1, 2]", "run_experiment.plot = False",
    "run_experiment.export_max_steps = 3", "Runner.log_every_seconds = 0"]
SINUSOID_RUN_STEPS = [2, 4]  # Their summary and checkpoint steps.
SINUSOID_RUN_TASKS = 6
SINUSOID_RUN_MAX_STEPS = 3

# A sinusoid SavedModel in a finished-looking run folder (no training): 3 inner steps exported,
# up to 5 in the step-count signatures.
SINUSOID_CONFIG = ("run_experiment.domain = @SinusoidRegression()\n"
                   "SinusoidRegression.num_shots = 5\n")
SINUSOID_EXPORT_STEPS = 3
SINUSOID_EXPORT_MAX_STEPS = 5


def shared_folder(tmp_path_factory, name: str, build: Callable[[str], None]) -> str:
  """The path of the folder ``name`` that ``build(path)`` writes, built once per session."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # The session's folder, shared by its workers.
  path = os.path.join(str(base), "shared_runs", name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes, also on an error.
    if not os.path.exists(path + ".done"):
      shutil.rmtree(path, ignore_errors=True)  # What a build that failed left.
      build(path)
      open(path + ".done", "w").close()
  return path


def _train_sinusoid_runs(path: str) -> None:
  for method in ("maml", "l2f"):
    root = os.path.join(path, method)
    restore.setup_run(root, [os.path.join(GIN_PARENT, f"gin/sinusoid/{method}_5shot.gin")],
                      SINUSOID_RUN_BINDINGS)
    try:
      experiment.run_experiment(root)
    finally:
      run_folder.release_locks()  # Other workers read the folders.
      gin.clear_config()  # A session fixture runs outside the per-test clearing.


def sinusoid_runs(tmp_path_factory) -> List[str]:
  """[maml, l2f]: the run folders of two tiny finished sinusoid runs (MAML, then L2F) trained
  with :data:`SINUSOID_RUN_BINDINGS`, evaluated on the same tasks."""
  path = shared_folder(tmp_path_factory, "sinusoid_runs", _train_sinusoid_runs)
  return [os.path.join(path, "maml"), os.path.join(path, "l2f")]


def sinusoid_learner():
  """(domain, learner): a small L2F sinusoid learner with theta moved away from its
  initialisation (so that comparisons are not trivial); the same weights at every call, in
  every process."""
  keras.utils.set_random_seed(3)
  domain = SinusoidRegression(num_shots=5)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=2,
                        inner_lr=0.05, attenuation=TaskConditionedAttenuation())
  for v in learner.meta_variables:
    v.assign(v.numpy() + np.random.default_rng(0).normal(0, 0.05, v.shape).astype(np.float32))
  return domain, learner


def _export_sinusoid_run(path: str) -> None:
  folder = RunFolder(path)
  os.makedirs(folder.root)
  with open(folder.config, "w") as f:
    f.write(SINUSOID_CONFIG)
  domain, learner = sinusoid_learner()
  export.export_for_domain(learner, domain, folder.saved_model, num_steps=SINUSOID_EXPORT_STEPS,
                           config_path=folder.config, max_steps=SINUSOID_EXPORT_MAX_STEPS)


def sinusoid_export_run(tmp_path_factory) -> RunFolder:
  """A finished-looking sinusoid run folder (:data:`SINUSOID_CONFIG`) whose saved_model/ is
  :func:`sinusoid_learner` exported with :data:`SINUSOID_EXPORT_STEPS` inner steps and
  max_steps :data:`SINUSOID_EXPORT_MAX_STEPS`."""
  return RunFolder(shared_folder(tmp_path_factory, "sinusoid_export", _export_sinusoid_run))
