"""Which hardware trains a run: the ``tf.distribute`` strategy, named in gin or on the command
line (``--strategy`` / ``run_experiment.strategy``), and what each worker may write.

Strategies (:data:`STRATEGIES`):
* ``default``: TensorFlow's default strategy (one device, no replication);
* ``one_device``: ``OneDeviceStrategy`` on the first GPU, else the CPU;
* ``mirrored``: ``MirroredStrategy`` over all local GPUs, or without GPUs over
  ``num_cpu_devices`` logical CPU devices (to test the multi-replica path on a laptop);
* ``multi_worker``: ``MultiWorkerMirroredStrategy``, the cluster read from ``TF_CONFIG``
  (every worker runs the same command);
* ``tpu``: ``TPUStrategy`` on ``tpu_address`` (untested: no TPU was available).

The supervised trainer splits each meta-batch's tasks across replicas and all-reduces the
meta-gradient, so the update equals the one-device one. In a multi-worker run the chief (task
``chief``, or ``worker`` 0 without one) writes the run folder; the other workers write to a
scratch folder (:func:`scratch_dir`), removed when they finish, and restore checkpoints from the
chief's folder (so the run directory must be on a filesystem every worker sees).
"""

import json
import os
import shutil
import socket
from typing import List

import gin
import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
SCRATCH_PREFIX = "workertemp_"


def _check_name(name: str) -> None:
  if name not in STRATEGIES:
    raise ValueError(f"Unknown strategy {name!r}: --strategy / run_experiment.strategy must be "
                     f"one of {', '.join(STRATEGIES)}.")


def tf_config_task(name: str):
  """(task type, task index, cluster dict) of this process in a multi-worker run, read from
  ``TF_CONFIG`` without initialising TensorFlow; (None, 0, {}) for the other strategies."""
  _check_name(name)
  if name != "multi_worker":
    return None, 0, {}
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable, e.g. "
                     'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\' on the first host (index 1 on '
                     "the second). See docs/scaling.md.")
  try:
    spec = json.loads(raw)
    task, cluster = spec["task"], spec["cluster"]
    return task["type"], int(task["index"]), cluster
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f"TF_CONFIG is not valid ({error}): it must be JSON with a 'cluster' of "
                     "job name -> list of host:port and a 'task' {'type', 'index'}; got "
                     f"{raw!r}.") from error


def is_chief_task(name: str) -> bool:
  """Whether this process writes the run folder, decided from the strategy name and TF_CONFIG
  alone (before any strategy exists; used to write operative_config.gin once)."""
  task_type, index, cluster = tf_config_task(name)
  if task_type in (None, "chief"):
    return True
  return task_type == "worker" and index == 0 and "chief" not in cluster


def local_tf_configs(num_workers: int) -> List[str]:
  """TF_CONFIG values of a ``num_workers``-worker cluster on this machine (127.0.0.1, free
  ports), worker i's at index i: for trying multi-worker training on one machine."""
  sockets = [socket.socket() for _ in range(num_workers)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
  for s in sockets:
    s.close()
  return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
          for i in range(num_workers)]


def _use_logical_cpus(count: int) -> None:
  """Splits the CPU into ``count`` logical devices (must happen before TensorFlow runs)."""
  cpus = tf.config.list_physical_devices("CPU")
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current and len(current) == count:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError as error:
    raise RuntimeError(
        f"Cannot split the CPU into {count} devices: TensorFlow has already started. Create the "
        "strategy (make_strategy) before building models or running any TensorFlow op.") from error


@gin.configurable
def make_strategy(name: str = "default", num_cpu_devices: int = 2,
                  tpu_address: str = "") -> tf.distribute.Strategy:
  """The ``tf.distribute.Strategy`` called ``name`` (see the module docstring).

  Args:
    name: one of :data:`STRATEGIES`.
    num_cpu_devices: for ``mirrored`` without GPUs: logical CPU devices to replicate over.
    tpu_address: for ``tpu``: the TPU's name or grpc:// address ("" = the local TPU VM).

  Under ``multi_worker``, TensorFlow's coordination service notices a dead worker and aborts
  the others' pending all-reduce: they raise (:data:`WORKER_LOST`) instead of waiting forever.
  """
  _check_name(name)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "mirrored":
    if tf.config.list_physical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    if num_cpu_devices < 1:
      raise ValueError(f"make_strategy.num_cpu_devices must be >= 1, got {num_cpu_devices}.")
    _use_logical_cpus(num_cpu_devices)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:num_cpu_devices]
    logging.info("No GPU: mirroring over %d logical CPU devices.", len(devices))
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    tf_config_task(name)  # A clear error when TF_CONFIG is missing or malformed.
    return tf.distribute.MultiWorkerMirroredStrategy()
  # name == "tpu": untested here (no TPU).
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as error:
    raise RuntimeError(f"No TPU found for strategy 'tpu' (make_strategy.tpu_address = "
                       f"{tpu_address!r}): {error}") from error
  return tf.distribute.TPUStrategy(resolver)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run folder (always, except non-chief workers)."""
  return not is_multi_worker(strategy) or strategy.extended.should_checkpoint


def scratch_dir(root_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Where a non-chief worker writes what the chief writes to ``root_dir``."""
  return os.path.join(root_dir, f"{SCRATCH_PREFIX}{strategy.cluster_resolver.task_id}")


def write_root(root_dir: str, strategy: tf.distribute.Strategy) -> str:
  """The folder this process writes its run files to: ``root_dir`` on the chief."""
  return root_dir if is_chief(strategy) else scratch_dir(root_dir, strategy)


def remove_scratch(root_dir: str, strategy: tf.distribute.Strategy) -> None:
  """Deletes a non-chief worker's scratch folder (nothing on the chief)."""
  if not is_chief(strategy):
    shutil.rmtree(scratch_dir(root_dir, strategy), ignore_errors=True)


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has reached it (an all-reduce of ones; a no-op off multi-worker):
  non-chief workers wait here while the chief evaluates and exports, not to look lost."""
  if not is_multi_worker(strategy):
    return

  @tf.function
  def all_reduce_ones():
    ones = strategy.run(tf.ones, args=([],))
    return strategy.reduce("sum", ones, axis=None)

  all_reduce_ones()


WORKER_LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.CancelledError, tf.errors.FailedPreconditionError,
               tf.errors.InternalError)


def worker_lost_message(error: Exception, root_dir: str) -> str:
  """What a worker reports when a collective failed because another worker is gone."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  keys = ("peer", "is down", "Connection", "Deadline", "timed out", "abort")
  detail = next((line for line in lines if any(k in line for k in keys)),
                lines[0] if lines else "")
  return (f"A worker of this multi-worker run stopped answering ({type(error).__name__}: "
          f"{detail}). Training stopped; the last checkpoint in "
          f"{os.path.join(root_dir, 'checkpoints')} is kept. Start every worker again with the "
          "same command to resume from it.")
