"""Helpers of the distributed-training tests: worker processes of a 2-worker cluster on
127.0.0.1 running the real command line, a one-process reference run, and the comparison of
their checkpoints.

Tolerance: 1e-5 absolute on every checkpointed tensor (weights and Adam moments): replicas
all-reduce the same float32 task gradients in another order, a difference of float32 rounding
(measured: below 1e-7)."""

import os
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.train import distribution, experiment, restore, runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 240  # seconds for any worker process (they take ~30 s on an idle 2-core CPU)
TOLERANCE = 1e-5

SINUSOID = ("gin/sinusoid/l2f_5shot.gin", [
    "Trainer.num_iterations = 6", "Runner.checkpoint_every = 2", "Trainer.summary_every = 2",
    "Trainer.jit_compile = False", "run_experiment.num_eval_tasks = 6",
    "SinusoidRegression.meta_batch_size = 4", "Runner.log_every_seconds = 0"])


def glyph_run(cache_dir):
  """Tiny 2-way glyphs with validation and best/ (few-shot path: conv4 with batch norm)."""
  return ("gin/glyphs/l2f_1shot.gin", [
      f"ensure_glyphs.cache_dir = '{cache_dir}'", "ensure_glyphs.num_classes = 40",
      "ensure_glyphs.instances_per_class = 10", "FewShotClassification.num_ways = 2",
      "Trainer.num_iterations = 4", "Trainer.first_order_until = 2",
      "Trainer.validate_every = 2", "Runner.checkpoint_every = 2", "Trainer.summary_every = 2",
      "Trainer.num_val_episodes = 3", "run_experiment.num_eval_tasks = 4",
      "MetaLearner.num_inner_steps = 2", "conv4.filters = 4", "Runner.log_every_seconds = 0",
      "FewShotClassification.eval_batch_size = 2", "FewShotClassification.plot_episodes = 3",
      # Logging only, and seconds of tracing per process; the sinusoid runs keep it on under
      # every strategy, and tests/test_gin_files_vision.py checks it on the glyphs.
      "Trainer.landscape = False",
      # The SavedModel's steps signature adapts up to export_max_steps (default 10): tracing
      # it, with the gradients of its batch-norm and pooling ops, was a fifth of the chief's
      # run. Only the files the chief wrote are checked here.
      "run_experiment.export_max_steps = 2"])


def worker_command(root, gin_file, bindings):
  """The command line every worker of a multi-worker run runs."""
  command = [sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
             f"--gin_file={gin_file}", "--strategy=multi_worker"]
  return command + [f"--gin_bindings={b}" for b in bindings]


def start_worker(root, gin_file, bindings, tf_config, log_path):
  """One worker process with its TF_CONFIG, its output (stdout and stderr) in ``log_path``."""
  env = dict(os.environ, TF_CONFIG=tf_config)
  with open(log_path, "w") as log:
    return subprocess.Popen(worker_command(root, gin_file, bindings), env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=REPO)


def start_workers(root, gin_file, bindings, logs):
  """Both workers of a 2-worker cluster, each running run_experiment.py; worker 0 is chief."""
  return [start_worker(root, gin_file, bindings, tf_config,
                       os.path.join(logs, f"worker{index}.log"))
          for index, tf_config in enumerate(distribution.local_tf_configs(2))]


def wait_all(workers, logs):
  """Exit codes of the workers; kills them all if one outlives TIMEOUT."""
  deadline = time.time() + TIMEOUT
  codes = []
  try:
    for worker in workers:
      codes.append(worker.wait(timeout=max(1, deadline - time.time())))
  except subprocess.TimeoutExpired:
    pytest.fail(f"a worker hung for {TIMEOUT} s:\n{read_logs(logs)}")
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
        worker.wait()
  return codes


def read_logs(logs):
  text = []
  for name in sorted(os.listdir(logs)):
    if os.path.isdir(os.path.join(logs, name)):
      continue
    with open(os.path.join(logs, name)) as f:
      lines = [l for l in f.read().splitlines() if not l.startswith(("I0000", "W0000"))]
    text.append(f"--- {name}\n" + "\n".join(lines[-30:]))
  return "\n".join(text)


def run_one_process(root, gin_file, bindings):
  """Trains the experiment in this process as run_experiment.py does with the default strategy,
  and stops there: the tests compare its checkpoints and best/ with the distributed run's, not
  its evaluation, SavedModel or figure (a third of its time, which the distributed run's
  chief still spends)."""
  restore.setup_run(root, [gin_file], bindings)
  domain = gin.query_parameter("run_experiment.domain").scoped_configurable_fn()
  trainer = gin.query_parameter("run_experiment.trainer").scoped_configurable_fn
  runner.Runner(trainer(learner=experiment.build_learner(domain), domain=domain,
                        root_dir=root)).train()


def checkpoint_tensors(root):
  """The training state in the latest checkpoint of ``root``: not the training time, nor how
  many checkpoints were saved (a Ctrl-C saves one more)."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(root, "checkpoints")))
  return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
          if not key.startswith(("_CHECKPOINTABLE", "save_counter")) and
          "train_seconds" not in key}


def assert_same_training(root, reference):
  got, want = checkpoint_tensors(root), checkpoint_tensors(reference)
  assert set(got) == set(want)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, atol=TOLERANCE, rtol=0, err_msg=key)
  # Adam's first moments are far from 0, so the weights moved by many tolerances per step:
  # the equality is not that of untouched weights.
  moments = [np.abs(v).max() for k, v in want.items() if "optimizer" in k and
             np.issubdtype(np.asarray(v).dtype, np.floating) and np.ndim(v) > 0]
  assert moments and max(moments) > 1e-3, moments


