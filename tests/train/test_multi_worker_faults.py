"""Faults of a multi-worker run: every worker ends in bounded time with one line, and running
every worker's command again ends with the weights of an uninterrupted run.

* a frozen worker (SIGSTOP: a lost machine, which closes no connection) is given up within
  ``make_strategy.peer_timeout_seconds``, whichever worker it is;
* a worker started alone gives up after ``make_strategy.start_timeout_seconds``;
* a second process started as the same worker is refused (the non-chief's scratch lock), and
  Ctrl-C ends a wait for the cluster at once;
* SIGKILL of the chief or of the other worker at a random moment (before the first checkpoint
  too), and Ctrl-C on one worker: the others stop, the re-run resumes (or starts afresh).

Two-worker clusters on 127.0.0.1 run the real command line (``run_experiment.py
--strategy=multi_worker``); moments are drawn from seeded generators. The one-process
reference (tolerance: `tests.train.distributed_runs`) is trained once, in this process.
"""

import os
import random
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest

from l2f_tf.train import distribution
from tests.train.distributed_runs import (SINUSOID, TIMEOUT, assert_same_training, read_logs,
                                          run_one_process, start_worker, start_workers,
                                          wait_all)

pytestmark = pytest.mark.slow

PEER_TIMEOUT = 10  # seconds: make_strategy.peer_timeout_seconds of the runs here
START_TIMEOUT = 15  # seconds: make_strategy.start_timeout_seconds
SLACK = 15  # seconds a stopping worker may take beyond its timeout on a loaded 2-core machine

GIN_FILE = SINUSOID[0]
# 200 meta-iterations of one compiled step each (no summaries: one trace instead of two),
# checkpoints at 100 and 200: the first checkpoint comes 100 meta-iterations (2.5 s or more)
# after tracing (3 s or more), which leaves room for a kill before it.
RUN = SINUSOID[1] + [
    "Trainer.num_iterations = 200", "Runner.checkpoint_every = 100",
    "Trainer.summary_every = 0", "Trainer.steps_per_call = 1",
    f"make_strategy.peer_timeout_seconds = {PEER_TIMEOUT}",
    f"make_strategy.start_timeout_seconds = {START_TIMEOUT}"]
ENDLESS = RUN + ["Trainer.num_iterations = 1000000"]

LOST = "A worker of this multi-worker run stopped answering"
NOT_FORMED = "The multi-worker cluster did not form within"

_REFERENCE = {}


def reference(tmp_path_factory):
  """The checkpoint folder of RUN trained in one process (trained once, on first use)."""
  if "root" not in _REFERENCE:
    root = str(tmp_path_factory.mktemp("reference"))
    run_one_process(root, GIN_FILE, RUN)
    _REFERENCE["root"] = root
  return _REFERENCE["root"]


def folders(tmp_path, name="run"):
  root, logs = str(tmp_path / name), str(tmp_path / f"{name}_logs")
  os.makedirs(logs)
  return root, logs


def checkpoint_state(root):
  return os.path.join(root, "checkpoints", "checkpoint")


def wait_for(condition, workers, logs, what):
  """Polls ``condition`` until true; fails if a worker ended first or TIMEOUT passed."""
  deadline = time.time() + TIMEOUT
  while not condition():
    if time.time() > deadline or any(w.poll() is not None for w in workers):
      pytest.fail(f"waiting for {what}:\n{read_logs(logs)}")
    time.sleep(0.1)


def wait_one(worker, seconds, logs):
  """The exit code of ``worker`` and how long it took to end, at most ``seconds``."""
  started = time.time()
  try:
    code = worker.wait(timeout=seconds)
  except subprocess.TimeoutExpired:
    worker.kill()
    worker.wait()
    pytest.fail(f"a worker did not stop within {seconds} s:\n{read_logs(logs)}")
  return code, time.time() - started


def exit_times(workers, seconds, logs):
  """{index: (exit code, time.time() at exit)} of ``workers`` (a dict), polled until all have
  ended; fails after ``seconds``."""
  ended, deadline = {}, time.time() + seconds
  while len(ended) < len(workers):
    for index, worker in workers.items():
      if index not in ended and worker.poll() is not None:
        ended[index] = (worker.returncode, time.time())
    if time.time() > deadline:
      pytest.fail(f"a worker did not stop within {seconds} s:\n{read_logs(logs)}")
    time.sleep(0.05)
  return ended


def l2f_lines(log_path):
  """What l2f_tf logged at WARNING and above, and whether a traceback was printed."""
  with open(log_path) as f:
    text = f.read()
  lines = [l for l in text.splitlines() if re.match(r"[WEF]\d{4} .* [\w.]+\.py:\d+\]", l)]
  return lines, "Traceback" in text


def assert_one_line(log_path, expected):
  """The worker ended with exactly one error line, containing ``expected``, and no traceback."""
  lines, traceback = l2f_lines(log_path)
  errors = [l for l in lines if l.startswith("E")]
  assert not traceback and len(errors) == 1 and expected in errors[0], (lines, log_path)
  return errors[0]


def logged_at(log_path, text):
  """The time (seconds of the day) of the first absl log line containing ``text``."""
  with open(log_path) as f:
    for line in f:
      if text in line:
        stamp = datetime.strptime(line.split()[1], "%H:%M:%S.%f")
        return stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6
  raise AssertionError(f"{text!r} is not in {log_path}")


def rerun_matches_reference(root, logs, tmp_path_factory, resumed):
  """Runs both workers again on ``root``: they finish, resume (or start afresh) as
  ``resumed`` says, and end with the weights of the one-process reference run."""
  again = os.path.join(logs, "rerun")
  os.makedirs(again)
  workers = start_workers(root, GIN_FILE, RUN, again)
  want = reference(tmp_path_factory)
  assert wait_all(workers, again) == [0, 0], read_logs(again)
  for index in range(2):
    with open(os.path.join(again, f"worker{index}.log")) as f:
      assert ("Resumed from" in f.read()) == resumed, read_logs(again)
  assert_same_training(root, want)
  assert not [n for n in os.listdir(root) if n.startswith("workertemp_")]


def test_a_frozen_worker_is_given_up_after_the_peer_timeout(tmp_path):
  """SIGSTOP (a lost machine: no connection closes) of the chief in one cluster and of the
  other worker in another, whose peer timeouts differ: each survivor stops within its own
  timeout (heartbeats go every half timeout, so half to all of it after the freeze, plus the
  time to notice), with one line naming the lost worker, and status 1."""
  timeouts = {0: 8, 1: 14}  # frozen worker -> the peer timeout of its cluster
  clusters = {}
  for frozen, seconds in timeouts.items():
    root, logs = folders(tmp_path, f"frozen{frozen}")
    bindings = ENDLESS + [f"make_strategy.peer_timeout_seconds = {seconds}"]
    clusters[frozen] = (root, logs, start_workers(root, GIN_FILE, bindings, logs))
  try:
    frozen_at = {}
    for frozen, (root, logs, workers) in clusters.items():
      wait_for(lambda: os.path.exists(checkpoint_state(root)), workers, logs,
               "the first checkpoint")
      workers[frozen].send_signal(signal.SIGSTOP)
      frozen_at[frozen] = time.time()
    survivors = {frozen: workers[1 - frozen] for frozen, (_, _, workers) in clusters.items()}
    ended = exit_times(survivors, max(timeouts.values()) + SLACK + 10, str(tmp_path))
    for frozen, (root, logs, workers) in clusters.items():
      survivor = 1 - frozen
      code, at = ended[frozen]
      took = at - frozen_at[frozen]
      line = assert_one_line(os.path.join(logs, f"worker{survivor}.log"), LOST)
      print(f"frozen worker {frozen}: worker {survivor} stopped after {took:.1f} s "
            f"(peer timeout {timeouts[frozen]} s): {line}")
      assert code == 1, read_logs(logs)
      # Heartbeats go every half timeout: the last one came up to half a timeout before.
      assert timeouts[frozen] / 2 - 1 <= took <= timeouts[frozen] + SLACK, took
      assert f"worker {frozen} at 127.0.0.1:" in line  # names the lost worker
  finally:
    for _, _, workers in clusters.values():
      for worker in workers:
        worker.kill()
        worker.wait()


def test_a_worker_started_alone_gives_up_after_the_start_timeout(tmp_path):
  """The chief alone and the other worker alone (each in a cluster of its own) wait
  START_TIMEOUT for the missing worker, then stop with one line naming it and the fix, and
  leave no folder behind."""
  started = []
  for index in range(2):
    root, logs = folders(tmp_path, f"alone{index}")
    tf_config = distribution.local_tf_configs(2)[index]
    log = os.path.join(logs, f"worker{index}.log")
    started.append((root, logs, log, start_worker(root, GIN_FILE, RUN, tf_config, log)))
  for index, (root, logs, log, worker) in enumerate(started):
    code, _ = wait_one(worker, START_TIMEOUT + TIMEOUT, logs)
    line = assert_one_line(log, NOT_FORMED)
    waited = logged_at(log, NOT_FORMED) - logged_at(log, "Waiting up to")
    print(f"worker {index} alone gave up after {waited:.1f} s: {line}")
    assert code == 1
    assert START_TIMEOUT - 1 <= waited <= START_TIMEOUT + SLACK, waited
    assert f"waiting for worker {1 - index} at 127.0.0.1:" in line
    assert "Start every worker with the same command" in line
    assert "check TF_CONFIG's addresses" in line
    assert not os.path.exists(root), os.listdir(root)


def test_a_second_process_of_the_same_worker_is_refused_and_ctrl_c_ends_a_wait(tmp_path):
  """Worker 1 started twice into one run folder: the second process stops at once with one
  line (the scratch folder's lock), without joining the cluster; the first one is untouched.
  Ctrl-C then ends the first one's wait for the cluster at once (TensorFlow holds the GIL
  there, so SIGINT's default action ends the process)."""
  root, logs = folders(tmp_path)
  tf_config = distribution.local_tf_configs(2)[1]
  waits = RUN + ["make_strategy.start_timeout_seconds = 300"]  # until the Ctrl-C
  first_log = os.path.join(logs, "first.log")
  first = start_worker(root, GIN_FILE, waits, tf_config, first_log)
  try:
    lock = os.path.join(root, "workertemp_1", ".lock")
    wait_for(lambda: os.path.exists(lock) and f"PID {first.pid} " in open(lock).read(),
             [first], logs, "the first process's lock")
    second_log = os.path.join(logs, "second.log")
    second = start_worker(root, GIN_FILE, waits, tf_config, second_log)
    code, took = wait_one(second, TIMEOUT, logs)
    line = assert_one_line(second_log, f"Another run is using {os.path.dirname(lock)}")
    print(f"the second worker 1 stopped after {took:.1f} s: {line}")
    assert code == 1
    assert f"PID {first.pid} " in line and "already running" in line
    assert "Waiting up to" not in open(second_log).read()  # it never joined the cluster
    assert first.poll() is None
    # It waits for the cluster a moment after its lock (its log line may lag: TensorFlow
    # holds the GIL while it waits, see distribution._multi_worker).
    deadline = time.time() + 5
    while "Waiting up to" not in open(first_log).read() and time.time() < deadline:
      time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    code, took = wait_one(first, SLACK, logs)
    print(f"Ctrl-C ended the first worker's wait after {took:.1f} s (status {code})")
    # Killed by SIGINT (the shell's status 130), or, just before the wait, status 130.
    assert code in (-signal.SIGINT, 130) and took < 5, read_logs(logs)
    assert "Traceback" not in open(first_log).read()
  finally:
    first.kill()
    first.wait()


@pytest.mark.parametrize("victim, seed, before_first_checkpoint", [
    (0, 1, False),  # the chief, at a random moment after the first checkpoint
    (1, 2, True)])  # the other worker, at a random moment before it
def test_a_worker_killed_at_a_random_moment_stops_the_other_and_the_rerun_resumes(
    tmp_path, tmp_path_factory, victim, seed, before_first_checkpoint):
  """SIGKILL of one worker at a moment drawn from a seeded generator: before the first
  checkpoint, 0-3 s after the victim starts joining the cluster (joining, building the
  learner, tracing, the first meta-iterations: tracing alone takes 3 s and the first
  checkpoint 100 meta-iterations more); after it, 0-4 s after the first checkpoint (training,
  or the chief's evaluation and export). The survivor stops with one line and status 1 within
  the bound (the peer timeout, or the start timeout when the victim had not joined yet); both
  commands again end like one process, resuming or (killed before the first checkpoint)
  starting afresh."""
  rng = random.Random(seed)
  root, logs = folders(tmp_path)
  workers = start_workers(root, GIN_FILE, RUN, logs)
  survivor = 1 - victim
  if before_first_checkpoint:
    victim_log = os.path.join(logs, f"worker{victim}.log")
    wait_for(lambda: "Waiting up to" in open(victim_log).read(), workers, logs,
             "the victim to join")
    time.sleep(rng.uniform(0, 3))
    assert not os.path.exists(checkpoint_state(root)), "the first checkpoint came too early"
  else:
    wait_for(lambda: os.path.exists(checkpoint_state(root)), workers, logs,
             "the first checkpoint")
    time.sleep(rng.uniform(0, 4))
  workers[victim].send_signal(signal.SIGKILL)
  code, took = wait_one(workers[survivor], max(PEER_TIMEOUT, START_TIMEOUT) + SLACK, logs)
  workers[victim].wait()
  assert code == 1, read_logs(logs)
  line = assert_one_line(os.path.join(logs, f"worker{survivor}.log"),
                         NOT_FORMED if " did not form " in read_logs(logs) else LOST)
  print(f"worker {victim} killed; worker {survivor} stopped after {took:.1f} s: {line}")
  rerun_matches_reference(root, logs, tmp_path_factory, resumed=not before_first_checkpoint)


def test_ctrl_c_on_one_worker_stops_every_worker_at_one_step_and_the_rerun_resumes(
    tmp_path, tmp_path_factory):
  """SIGINT on the non-chief worker 0-1.5 s (seeded) after the first checkpoint, in training:
  every worker stops at the same meta-iteration, the chief with a checkpoint of it, each with
  one line and status 130; both commands again resume from it and end like one process."""
  rng = random.Random(3)
  root, logs = folders(tmp_path)
  workers = start_workers(root, GIN_FILE, RUN, logs)
  wait_for(lambda: os.path.exists(checkpoint_state(root)), workers, logs, "the first checkpoint")
  time.sleep(rng.uniform(0, 1.5))
  workers[1].send_signal(signal.SIGINT)
  started = time.time()
  assert wait_all(workers, logs) == [130, 130], read_logs(logs)
  took = time.time() - started
  lines = {index: l2f_lines(os.path.join(logs, f"worker{index}.log")) for index in range(2)}
  print(f"Ctrl-C on worker 1: both stopped within {took:.1f} s: {lines}")
  assert not any(traceback for _, traceback in lines.values())
  stops = {index: [l for l in found if "stopped at meta-iteration" in l]
           for index, (found, _) in lines.items()}
  assert "] Interrupted: every worker stopped" in stops[1][0], stops
  assert "] Another worker of this multi-worker run was interrupted" in stops[0][0], stops
  step = int(re.search(r"meta-iteration (\d+)", stops[0][0]).group(1))
  assert f"meta-iteration {step} " in stops[1][0] and 100 < step < 200, stops
  with open(checkpoint_state(root)) as f:
    assert f'model_checkpoint_path: "ckpt-{step}"' in f.read()
  assert took < SLACK
  rerun_matches_reference(root, logs, tmp_path_factory, resumed=True)
