"""Multi-worker training: two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy from
TF_CONFIG) train like one process on the same global meta-batch, only the chief writes the run
folder, and a killed worker stops the other with a clear error; the same commands resume.

Every worker runs the real command line (``run_experiment.py --strategy=multi_worker``); the
one-process reference runs in this process (tolerance: `tests.train.distributed_runs`)."""

import json
import os
import signal
import time

import pytest
import tensorflow as tf

from l2f_tf.data import glyphs
from tests.train.distributed_runs import (SINUSOID, TIMEOUT, assert_same_training, glyph_run,
                                          read_logs, run_one_process, start_workers, wait_all)

pytestmark = pytest.mark.slow


def only_the_chief_wrote(root, validated, chief_runs=1):
  names = set(os.listdir(root))
  assert not [n for n in names if n.startswith("workertemp_")], names  # scratch removed
  expected = {"operative_config.gin", "checkpoints", "train", "eval", "results.json",
              "saved_model", "test_tasks.png"} | ({"best"} if validated else set())
  assert expected <= names, names
  # One TensorBoard writer per run of the chief wrote train/ (the others wrote to scratch).
  assert len(os.listdir(os.path.join(root, "train"))) == chief_runs


def test_two_workers_train_few_shot_like_one_process(tmp_path):
  cache = str(tmp_path / "glyphs")
  glyphs.ensure_glyphs(cache_dir=cache, num_classes=40, instances_per_class=10)
  root, logs, reference = str(tmp_path / "run"), str(tmp_path / "logs"), str(tmp_path / "ref")
  os.makedirs(logs)
  gin_file, bindings = glyph_run(cache)
  workers = start_workers(root, gin_file, bindings, logs)
  run_one_process(reference, gin_file, bindings)
  assert wait_all(workers, logs) == [0, 0], read_logs(logs)
  assert_same_training(root, reference)
  only_the_chief_wrote(root, validated=True)
  with open(os.path.join(root, "best", "scores.json")) as f, \
       open(os.path.join(reference, "best", "scores.json")) as g:
    got, want = json.load(f), json.load(g)
  assert [e["step"] for e in got["best"]] == [e["step"] for e in want["best"]]


def test_a_killed_worker_stops_the_other_and_the_same_commands_resume(tmp_path):
  """Sinusoid (no XLA, for time): the survivor stops with a clear error; the resumed
  two-worker run ends with the weights of an uninterrupted one-process run; only the chief
  wrote the run folder."""
  root, logs, reference = str(tmp_path / "run"), str(tmp_path / "logs"), str(tmp_path / "ref")
  os.makedirs(logs)
  gin_file, bindings = SINUSOID
  endless = bindings + ["Trainer.num_iterations = 1000000", "Runner.checkpoint_every = 4"]
  workers = start_workers(root, gin_file, endless, logs)
  state = os.path.join(root, "checkpoints", "checkpoint")
  deadline = time.time() + TIMEOUT
  while not os.path.exists(state) and time.time() < deadline and workers[0].poll() is None:
    time.sleep(0.5)
  assert os.path.exists(state), read_logs(logs)
  workers[1].send_signal(signal.SIGKILL)
  started = time.time()
  codes = wait_all(workers, logs)
  stopped_after = time.time() - started
  assert codes[0] == 1 and codes[1] == -signal.SIGKILL, (codes, read_logs(logs))
  assert stopped_after < 60, stopped_after
  log = read_logs(logs)
  assert "A worker of this multi-worker run stopped answering" in log, log
  assert "Start every worker again with the same command" in log
  # Re-running the commands (here with a finite length) resumes from the last checkpoint and
  # ends where an uninterrupted one-process run of that length ends.
  last = int(tf.train.latest_checkpoint(os.path.dirname(state)).rsplit("-", 1)[1])
  assert last >= 4
  finite = endless + [f"Trainer.num_iterations = {last + 4}"]
  os.makedirs(os.path.join(logs, "resume"))
  workers = start_workers(root, gin_file, finite, os.path.join(logs, "resume"))
  run_one_process(reference, gin_file, finite)
  assert wait_all(workers, os.path.join(logs, "resume")) == [0, 0], read_logs(logs)
  for index in range(2):  # Both restored the chief's last checkpoint.
    with open(os.path.join(logs, "resume", f"worker{index}.log")) as f:
      assert f"Resumed from {os.path.join(root, 'checkpoints', f'ckpt-{last}')}" in f.read()
  assert_same_training(root, reference)
  only_the_chief_wrote(root, validated=False, chief_runs=2)  # the first run and the resume


def test_two_workers_run_several_meta_iterations_per_call_like_one_process(tmp_path):
  """``Trainer.steps_per_call > 1`` (the shipped sinusoid files use 100): the compiled loop
  reads the distributed iterator itself, where the per-replica episodes have no static task
  count unless the trainer gives them one; the run must equal a one-process run."""
  root, logs, reference = str(tmp_path / "run"), str(tmp_path / "logs"), str(tmp_path / "ref")
  os.makedirs(logs)
  gin_file, bindings = SINUSOID
  looped = bindings + ["Trainer.steps_per_call = 3", "Runner.checkpoint_every = 3",
                       "Trainer.summary_every = 100"]
  workers = start_workers(root, gin_file, looped, logs)
  run_one_process(reference, gin_file, looped)
  assert wait_all(workers, logs) == [0, 0], read_logs(logs)
  with open(os.path.join(logs, "worker0.log")) as f:
    assert "Compiled the loop" in f.read(), read_logs(logs)  # the loop ran, not single steps
  assert_same_training(root, reference)
  only_the_chief_wrote(root, validated=False)
