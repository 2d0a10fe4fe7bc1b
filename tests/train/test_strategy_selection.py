"""Strategy selection by name, TF_CONFIG parsing, the chief rule, the per-replica task shares,
and the clear errors (unknown name, missing TF_CONFIG, meta-RL under a strategy)."""

import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.domains.sinusoid import SinusoidRegression
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.run_folder import RunFolderError, RunLock
from l2f_tf.train import distribution, restore
from l2f_tf.train.trainer import Trainer
from tests.domains.test_few_shot import domain as few_shot_domain
from tests.fake_images import write_class_folders


def cluster(task_type, index, jobs=("worker",)):
  spec = {job: ["127.0.0.1:1", "127.0.0.1:2"] for job in jobs}
  return json.dumps({"cluster": spec, "task": {"type": task_type, "index": index}})


def test_unknown_strategy_names_the_choices():
  with pytest.raises(ValueError, match="one of default, one_device, mirrored, multi_worker, tpu"):
    distribution.make_strategy("mirorred")


@pytest.mark.parametrize("task_type, index, jobs, chief", [
    ("worker", 0, ("worker",), True), ("worker", 1, ("worker",), False),
    ("chief", 0, ("chief", "worker"), True), ("worker", 0, ("chief", "worker"), False)])
def test_the_chief_is_the_chief_task_or_worker_0(monkeypatch, task_type, index, jobs, chief):
  monkeypatch.setenv("TF_CONFIG", cluster(task_type, index, jobs))
  assert distribution.is_chief_task("multi_worker") == chief
  assert distribution.is_chief_task("mirrored")  # TF_CONFIG only matters to multi_worker


def test_multi_worker_without_or_with_a_bad_tf_config_says_what_to_set(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
    distribution.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
  with pytest.raises(ValueError, match="TF_CONFIG is not valid"):
    distribution.is_chief_task("multi_worker")


def test_a_non_chief_worker_does_not_write_the_config(monkeypatch, tmp_path):
  monkeypatch.setenv("TF_CONFIG", cluster("worker", 1))
  restore.setup_run(str(tmp_path), ["gin/sinusoid/l2f_5shot.gin"],
                   ["run_experiment.strategy = 'multi_worker'"])
  assert not (tmp_path / "operative_config.gin").exists()
  gin.clear_config()
  monkeypatch.setenv("TF_CONFIG", cluster("worker", 0))
  restore.setup_run(str(tmp_path), ["gin/sinusoid/l2f_5shot.gin"],
                   ["run_experiment.strategy = 'multi_worker'"])
  assert "run_experiment.strategy = 'multi_worker'" in \
      (tmp_path / "operative_config.gin").read_text()


def test_multi_worker_timeouts_must_be_positive(monkeypatch):
  monkeypatch.setenv("TF_CONFIG", cluster("worker", 0))
  for parameter in ("peer_timeout_seconds", "start_timeout_seconds"):
    with pytest.raises(ValueError, match=f"make_strategy.{parameter} must be > 0, got 0"):
      distribution.make_strategy("multi_worker", **{parameter: 0})


def test_fault_lines_name_the_other_worker_and_its_address(monkeypatch):
  """From TensorFlow's errors of a peer that died, froze, or never joined (texts measured on
  TF 2.21), the one line names the other worker with its TF_CONFIG address and the fix."""
  monkeypatch.setenv("TF_CONFIG", cluster("worker", 1))
  died = tf.errors.UnavailableError(None, None, (
      "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:1/device"
      ":CPU:0}} Collective ops is aborted by: Socket closed\nAdditional GRPC error information "
      "from remote target /job:worker/replica:0/task:0 while calling /tensorflow.WorkerService"))
  line = distribution.worker_lost_message(died, "/r")
  assert line.startswith("A worker of this multi-worker run stopped answering (worker 0 at "
                         "127.0.0.1:1): UnavailableError: Socket closed. ")
  assert line.endswith("Start every worker again with the same command to resume from it.")
  assert "\n" not in line and "{{" not in line
  frozen_leader = tf.errors.DeadlineExceededError(None, None, (
      "Collective ops is aborted by: Deadline Exceeded\n\nRPC: "
      "/tensorflow.CoordinationService/Heartbeat"))
  assert "(worker 0 at 127.0.0.1:1)" in distribution.worker_lost_message(frozen_leader, "/r")
  missing = tf.errors.DeadlineExceededError(None, None, (
      "Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0.\nThe first task at the "
      "barrier: /job:worker/replica:0/task:1. Some timed out task names:\n"
      "/job:worker/replica:0/task:0\n"))
  line = distribution.cluster_failed_message(missing, "worker", 1,
                                             json.loads(cluster("worker", 1))["cluster"], 15)
  assert "within 15 s (make_strategy.start_timeout_seconds) (waiting for worker 0 at " \
         "127.0.0.1:1)" in line and "\n" not in line
  assert "Start every worker with the same command" in line and "TF_CONFIG's addresses" in line


def test_a_non_chief_worker_locks_and_empties_its_scratch_folder(monkeypatch, tmp_path):
  """Before joining: the chief takes no scratch lock; worker 1 locks workertemp_1 and deletes
  what a killed earlier run of it left there (never resumed from)."""
  monkeypatch.setenv("TF_CONFIG", cluster("worker", 0))
  distribution.hold_scratch_lock(str(tmp_path), "multi_worker")
  assert not os.listdir(tmp_path)
  monkeypatch.setenv("TF_CONFIG", cluster("worker", 1))
  scratch = tmp_path / "workertemp_1"
  (scratch / "checkpoints").mkdir(parents=True)
  (scratch / "checkpoints" / "checkpoint").write_text("stale")
  distribution.hold_scratch_lock(str(tmp_path), "multi_worker")
  try:
    assert os.listdir(scratch) == [".lock"]
    with pytest.raises(RunFolderError, match=r"Another run is using .*workertemp_1: PID \d+"):
      RunLock(str(scratch)).acquire()  # (the slow tier starts a second process of worker 1)
  finally:
    distribution.remove_scratch(str(tmp_path), "multi_worker")
  assert not scratch.exists()


def test_one_device_and_default_strategies():
  assert distribution.make_strategy("default") is tf.distribute.get_strategy()
  one = distribution.make_strategy("one_device")
  assert one.num_replicas_in_sync == 1 and distribution.is_chief(one)
  assert distribution.write_root("/r", one) == "/r"


def test_meta_rl_trainer_refuses_a_strategy(tmp_path):
  from l2f_tf.domains.meta_rl import MetaRLDomain
  from l2f_tf.train.meta_rl_trainer import MetaRLTrainer
  with distribution.make_strategy("one_device").scope():
    with pytest.raises(ValueError, match="MetaRLTrainer does not support strategy OneDevice"):
      MetaRLTrainer(learner=None, domain=object.__new__(MetaRLDomain), root_dir=str(tmp_path))


def few_shot_domain_of(root):
  return few_shot_domain(root, meta_batch_size=4)


def shares(trainer, replicas, pipelines, steps=2):
  """Every replica's tasks for ``steps`` meta-iterations, in global replica order."""
  local = replicas // pipelines
  out = []
  for pipeline in range(pipelines):
    context = tf.distribute.InputContext(pipelines, pipeline, replicas)
    elements = [e for e in trainer.replica_dataset(context, start_step=3).take(steps * local)]
    out.append([elements[s * local:(s + 1) * local] for s in range(steps)])
  return [[e for p in range(pipelines) for e in out[p][s]] for s in range(steps)]


@pytest.mark.parametrize("replicas, pipelines", [(2, 1), (2, 2), (4, 2), (4, 1)])
def test_replica_shares_put_together_are_the_meta_batch(tmp_path, replicas, pipelines):
  domain = SinusoidRegression(num_shots=3, meta_batch_size=4)
  learner = MetaLearner(domain.build_model(), domain.loss_fn)
  trainer = Trainer(learner, domain, str(tmp_path), num_val_episodes=0)
  whole = [e for e in domain.train_dataset(trainer.seed, start_step=3).take(2)]
  for step, parts in enumerate(shares(trainer, replicas, pipelines)):
    assert [int(p.support_x.shape[0]) for p in parts] == [4 // replicas] * replicas
    for field in range(4):
      np.testing.assert_array_equal(np.concatenate([p[field] for p in parts]), whole[step][field])


def test_few_shot_workers_read_only_their_episodes(tmp_path):
  root = write_class_folders(str(tmp_path), classes=(6, 5, 5), images_per_class=8, size=16)
  few_shot_domain = few_shot_domain_of(root)
  whole = list(few_shot_domain.train_dataset(seed=5, start_step=2).take(2))
  for first, count in ((0, 2), (2, 2), (1, 3)):
    part = list(few_shot_domain.train_dataset(seed=5, start_step=2, tasks=(first, count)).take(2))
    for step in range(2):
      for field in range(4):
        np.testing.assert_array_equal(part[step][field],
                                      whole[step][field][first:first + count])
  with pytest.raises(ValueError, match="not a share of a meta-batch of 4 tasks"):
    few_shot_domain.train_dataset(seed=5, tasks=(3, 2))


def test_tpu_without_a_tpu_says_so():
  """The TPU path is code only here (no TPU): asking for it fails with a clear message."""
  with pytest.raises(RuntimeError, match="No TPU found for strategy 'tpu'"):
    distribution.make_strategy("tpu")
