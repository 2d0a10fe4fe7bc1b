"""The Runner's stages after training are finished once, and Ctrl-C stops a run quickly and
quietly with a checkpoint."""

import os
import signal
import subprocess
import sys
import time
from typing import List

import pytest
import tensorflow as tf

from l2f_tf.run_folder import RunFolder
from l2f_tf.train import guard
from l2f_tf.train import runner as runner_lib
from l2f_tf.train.runner import Chunk, Runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Learner:
  num_inner_steps = 2
  method_name = "fake"
  batch_norm = "none"


class Domain:
  name, metric_name = "fake", "score"


class FakeTrainer:
  """A MetaTrainer whose stages record their calls and can be made to fail once."""

  def __init__(self, root, num_iterations=4, fail_in=None):
    self.folder = RunFolder(str(root))
    self.learner, self.domain = Learner(), Domain()
    self.num_iterations = num_iterations
    self.counter = tf.Variable(0, dtype=tf.int64)
    self.checkpoint = tf.train.Checkpoint(counter=self.counter)
    self.calls: List[str] = []
    self._fail_in = fail_in  # (private: not a setting of the run)

  @property
  def step(self):
    return int(self.counter.numpy())

  def begin(self):
    pass

  def run(self, limit):
    self.counter.assign_add(1)
    return Chunk(1)

  def _call(self, name):
    self.calls.append(name)
    if self._fail_in == name:
      raise RuntimeError(f"crash in {name}")

  def evaluate(self, num_tasks, steps):
    self._call("evaluate")
    return {"test": {"score": {"mean": 1.0 * self.step, "ci95": 0.1, "n": num_tasks}}}, {}

  def use_final_weights(self):
    self.calls.append("use_final_weights")

  def export(self, path, num_steps, config_path, max_steps):
    os.makedirs(path)
    open(os.path.join(path, "saved_model.pb"), "w").close()
    self._call("export")

  def plot(self, folder, evaluations, num_steps):
    path = folder.figure("fake.png")
    open(path, "w").close()
    self._call("plot")
    return path


@pytest.mark.parametrize("crash_in", ["evaluate", "export", "plot"])
def test_a_rerun_finishes_only_the_stages_left(tmp_path, crash_in):
  trainer = FakeTrainer(tmp_path, fail_in=crash_in)
  with pytest.raises(RuntimeError, match=f"crash in {crash_in}"):
    Runner(trainer, checkpoint_every=2).run(num_eval_tasks=5)
  folder = trainer.folder
  if crash_in == "export":  # the half-written export never replaced anything
    assert not os.path.exists(folder.saved_model)
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]
  again = FakeTrainer(tmp_path)
  results = Runner(again, checkpoint_every=2).run(num_eval_tasks=5)
  done = ["evaluate", "export", "plot"]
  assert [c for c in again.calls if c != "use_final_weights"] == done[done.index(crash_in):]
  assert results["evaluations"]["test"]["score"]["mean"] == 4.0
  assert results == folder.read_results()
  assert os.path.exists(os.path.join(folder.saved_model, "saved_model.pb"))
  # Everything done: a third call trains nothing and redoes nothing.
  third = FakeTrainer(tmp_path)
  Runner(third, checkpoint_every=2).run(num_eval_tasks=5)
  assert third.calls == []


def test_new_training_or_new_evaluation_settings_redo_the_stages(tmp_path, monkeypatch):
  lines = []
  monkeypatch.setattr(runner_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  Runner(FakeTrainer(tmp_path), checkpoint_every=2).run(num_eval_tasks=5)
  monkeypatch.undo()
  # The last line says where everything is.
  assert lines[-1] == (f"Done: {tmp_path} holds results.json, saved_model/, fake.png; "
                       f"TensorBoard: tensorboard --logdir {tmp_path}")
  longer = FakeTrainer(tmp_path, num_iterations=6)
  results = Runner(longer, checkpoint_every=2).run(num_eval_tasks=5)
  assert "evaluate" in longer.calls and "export" in longer.calls
  assert results["meta_iterations"] == 6
  more_tasks = FakeTrainer(tmp_path, num_iterations=6)
  Runner(more_tasks, checkpoint_every=2).run(num_eval_tasks=7)
  assert [c for c in more_tasks.calls if c != "use_final_weights"] == ["evaluate", "plot"]


def test_ctrl_c_saves_a_checkpoint_and_exits_quickly_without_a_traceback(tmp_path):
  """A real run: the first Ctrl-C is answered at once, the run stops after the current
  meta-iteration with a checkpoint, and the process exits with 130 and no traceback; the same
  command then resumes from that checkpoint."""
  command = [sys.executable, "run_experiment.py", f"--root_dir={tmp_path}",
             "--gin_file=gin/sinusoid/maml_5shot.gin",
             "--gin_bindings=Trainer.num_iterations = 100000",
             "--gin_bindings=Trainer.jit_compile = False",
             "--gin_bindings=Trainer.steps_per_call = 1",
             "--gin_bindings=Trainer.landscape = False",
             "--gin_bindings=Runner.checkpoint_every = 100000",
             "--gin_bindings=Runner.log_every_seconds = 0.5"]
  run = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
  lines = []
  for line in run.stderr:  # wait until it trains
    lines.append(line)
    if "meta-iteration" in line and "ETA" in line:
      break
  run.send_signal(signal.SIGINT)
  interrupted = time.time()
  rest = run.communicate(timeout=60)[1]
  elapsed = time.time() - interrupted
  stderr = "".join(lines) + rest
  assert run.returncode == 130, stderr
  assert elapsed < 15, stderr
  assert "Ctrl-C: stopping after the current meta-iterations" in stderr
  assert "Interrupted: saved a checkpoint at meta-iteration" in stderr
  assert "Traceback" not in stderr
  step = int(stderr.split("saved a checkpoint at meta-iteration ")[1].split(";")[0])
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith(f"ckpt-{step}")
  # A clean stop releases the folder's lock: the next run has no lock to take over.
  with open(tmp_path / ".lock") as f:
    assert f.read() == ""


def test_a_non_finite_stop_names_the_last_good_checkpoint_and_saves_none(tmp_path):
  trainer = FakeTrainer(tmp_path, num_iterations=10)

  def diverging(limit):
    trainer.counter.assign_add(1)
    if trainer.step == 3:
      raise guard.NonFiniteError(3, consecutive=1, policy="stop")
    return Chunk(1)

  trainer.run = diverging
  with pytest.raises(guard.NonFiniteError, match=r"meta-iteration 3 .*The last good checkpoint "
                                                 r"is .*ckpt-2\.") as error:
    Runner(trainer, checkpoint_every=2).train()
  assert error.value.step == 3 and error.value.last_checkpoint.endswith("ckpt-2")
  assert tf.train.latest_checkpoint(trainer.folder.checkpoints).endswith("ckpt-2")
