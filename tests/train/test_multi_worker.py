"""Multi-worker training: two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy from
TF_CONFIG) train like one process on the same global meta-batch, only the chief writes the run
folder, and a killed worker stops the other with a clear error; the same commands resume.

Every worker runs the real command line (``run_experiment.py --strategy=multi_worker``). The
one-process reference runs in this process. Tolerance: 1e-5 absolute on every checkpointed
tensor (weights and Adam moments): the workers all-reduce the same float32 task gradients in
another order, a difference of float32 rounding (measured: below 1e-7)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf import config
from l2f_tf.data import glyphs
from l2f_tf.train import experiment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 150  # seconds for any worker process (they take ~30 s on an idle 2-core CPU)
TOLERANCE = 1e-5

SINUSOID = ("gin/sinusoid/l2f_5shot.gin", [
    "Trainer.num_iterations = 6", "Runner.checkpoint_every = 2", "Trainer.summary_every = 2",
    "Trainer.jit_compile = True", "run_experiment.num_eval_tasks = 6",
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
      "FewShotClassification.eval_batch_size = 2", "FewShotClassification.plot_episodes = 3"])


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def start_workers(root, gin_file, bindings, logs):
  """Both workers of a 2-worker cluster, each running run_experiment.py; worker 0 is chief."""
  ports = free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  command = [sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
             f"--gin_file={os.path.join(REPO, gin_file)}", "--strategy=multi_worker"]
  command += [f"--gin_bindings={b}" for b in bindings]
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    log = open(os.path.join(logs, f"worker{index}.log"), "w")
    workers.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=REPO))
  return workers


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
  config.setup_run(root, [os.path.join(REPO, gin_file)], bindings)
  return experiment.run_experiment(root)


def checkpoint_tensors(root):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(root, "checkpoints")))
  return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
          if not key.startswith("_CHECKPOINTABLE") and "train_seconds" not in key}


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


def only_the_chief_wrote(root, validated):
  names = set(os.listdir(root))
  assert not [n for n in names if n.startswith("workertemp_")], names  # scratch removed
  expected = {"operative_config.gin", "checkpoints", "train", "eval", "results.json",
              "saved_model", "test_tasks.png"} | ({"best"} if validated else set())
  assert expected <= names, names
  # One TensorBoard writer (the chief's) wrote train/.
  assert len(os.listdir(os.path.join(root, "train"))) == 1


def test_two_workers_train_the_sinusoid_like_one_process(tmp_path):
  root, logs, reference = str(tmp_path / "run"), str(tmp_path / "logs"), str(tmp_path / "ref")
  os.makedirs(logs)
  gin_file, bindings = SINUSOID
  workers = start_workers(root, gin_file, bindings, logs)
  results = run_one_process(reference, gin_file, bindings)
  assert wait_all(workers, logs) == [0, 0], read_logs(logs)
  assert_same_training(root, reference)
  only_the_chief_wrote(root, validated=False)
  with open(os.path.join(root, "results.json")) as f:
    assert json.load(f)["meta_iterations"] == results["meta_iterations"] == 6


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
  root, logs, reference = str(tmp_path / "run"), str(tmp_path / "logs"), str(tmp_path / "ref")
  os.makedirs(logs)
  gin_file, bindings = SINUSOID
  endless = bindings + ["Trainer.num_iterations = 1000000", "Runner.checkpoint_every = 4",
                        "Trainer.jit_compile = False", "run_experiment.plot = False"]
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
