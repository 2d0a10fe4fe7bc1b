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

Faults of a multi-worker run end every worker in bounded time with one line
(:class:`ClusterError`, exit status 1): a worker that does not join within
``make_strategy.start_timeout_seconds``, a worker that stops answering for
``make_strategy.peer_timeout_seconds`` (killed, frozen, its machine lost). Ctrl-C on one worker
stops them all at the same step with a checkpoint (:class:`SharedInterrupts`). Each worker holds
a lock (the chief on the run folder, the others on their scratch folder), so a worker started
twice is refused.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from typing import Dict, Iterator, List, Optional

import gin
import tensorflow as tf
from absl import logging
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.eager import context

from l2f_tf import run_folder
from l2f_tf.train import interrupts

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


class ClusterError(RuntimeError):
  """A multi-worker run cannot go on: a worker did not join, or stopped answering. The message
  is one line naming the fix; the command line prints it and exits with status 1."""


@gin.configurable
def make_strategy(name: str = "default", num_cpu_devices: int = 2, tpu_address: str = "",
                  peer_timeout_seconds: float = 10.0,
                  start_timeout_seconds: float = 300.0) -> tf.distribute.Strategy:
  """The ``tf.distribute.Strategy`` called ``name`` (see the module docstring).

  Args:
    name: one of :data:`STRATEGIES`.
    num_cpu_devices: for ``mirrored`` without GPUs: logical CPU devices to replicate over.
    tpu_address: for ``tpu``: the TPU's name or grpc:// address ("" = the local TPU VM).
    peer_timeout_seconds: for ``multi_worker``: how long a worker may stop answering (killed,
      frozen, its machine lost) before the others give up on it; 10 is TensorFlow's own
      default. A killed worker is often noticed at once, by a connection it closes. Also
      bounds how long a worker waits for the others at exit.
    start_timeout_seconds: for ``multi_worker``: how long the workers wait at start-up for
      every worker of TF_CONFIG's cluster to join (when the workers start far apart, e.g.
      queued by a scheduler, raise it).

  Under ``multi_worker``, TensorFlow's coordination service (configured here with both
  timeouts) notices a dead worker and aborts the others' pending all-reduce: they raise
  (:data:`WORKER_LOST`) instead of waiting forever; a cluster that does not form raises
  :class:`ClusterError`.
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
    return _multi_worker(peer_timeout_seconds, start_timeout_seconds)
  # name == "tpu": untested here (no TPU).
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as error:
    raise RuntimeError(f"No TPU found for strategy 'tpu' (make_strategy.tpu_address = "
                       f"{tpu_address!r}): {error}") from error
  return tf.distribute.TPUStrategy(resolver)


def _multi_worker(peer_timeout_seconds: float,
                  start_timeout_seconds: float) -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy with bounded waits; ClusterError when the cluster does not
  form within ``start_timeout_seconds``."""
  for parameter, value in (("peer_timeout_seconds", peer_timeout_seconds),
                           ("start_timeout_seconds", start_timeout_seconds)):
    if not value > 0:
      raise ValueError(f"make_strategy.{parameter} must be > 0, got {value}.")
  task_type, index, cluster = tf_config_task("multi_worker")  # clear error on a bad TF_CONFIG
  configure_coordination(cluster, peer_timeout_seconds, start_timeout_seconds)
  logging.info("Waiting up to %s s for the %d workers of TF_CONFIG's cluster to join "
               "(make_strategy.start_timeout_seconds; Ctrl-C quits).", start_timeout_seconds,
               sum(len(hosts) for hosts in cluster.values()))
  # TensorFlow holds Python's GIL while it waits, so the thread that copies stderr
  # (`l2f_tf.console`) could not print the line above until the wait ends: let it run first.
  time.sleep(0.2)
  try:
    with _ctrl_c_kills():
      return tf.distribute.MultiWorkerMirroredStrategy()
  except tf.errors.OpError as error:
    raise ClusterError(cluster_failed_message(error, task_type, index, cluster,
                                              start_timeout_seconds)) from None


@contextlib.contextmanager
def _ctrl_c_kills() -> Iterator[None]:
  """Ctrl-C ends the process at once inside the block (the system's default action for
  SIGINT): TensorFlow holds Python's GIL while it waits for the cluster, so no Python handler
  (`l2f_tf.train.interrupts`) could answer before the wait ends. Nothing is half-written then."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


def configure_coordination(cluster: Dict[str, List[str]], peer_timeout_seconds: float,
                           start_timeout_seconds: float) -> None:
  """Configures TensorFlow's coordination service before MultiWorkerMirroredStrategy starts it
  (the strategy then keeps this configuration; by default it waits for missing workers forever).

  * ``heartbeat_timeout``: a worker whose heartbeats stop for this long is declared lost and
    every other worker's collectives are aborted;
  * ``cluster_register_timeout`` with ``cluster_register_with_barrier``: every worker, the
    leader included, gives up registering when the cluster is not complete within the start
    timeout (without the barrier the leader would wait forever);
  * ``shutdown_barrier_timeout``: the wait for the other workers at exit.

  A per-collective timeout (``CommunicationOptions.timeout_seconds``) is not used: a non-chief
  worker waits in an all-reduce while the chief evaluates, which may take longer than any
  peer timeout. Configuring twice (several strategies in one process) keeps the first.
  """
  ctx = context.context()
  if ctx.coordination_service is not None:
    logging.info("TensorFlow's coordination service is already configured; "
                 "make_strategy's timeouts do not apply.")
    return
  jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
          for job in ("chief", "worker") if job in cluster]
  ctx.configure_coordination_service(
      service_type="standalone", service_leader=_leader(cluster),
      cluster_register_timeout_in_ms=int(start_timeout_seconds * 1000),
      heartbeat_timeout_in_ms=int(peer_timeout_seconds * 1000),
      shutdown_barrier_timeout_in_ms=int(peer_timeout_seconds * 1000),
      coordinated_jobs=jobs)
  ctx.coordination_service.cluster_register_with_barrier = True


def joined_cluster() -> bool:
  """Whether this process configured (and so joined) a multi-worker cluster."""
  return context.context().coordination_service is not None


def _leader(cluster: Dict[str, List[str]]) -> str:
  """The coordination service's leader task: the chief, else worker 0 (as TensorFlow picks)."""
  return f"/job:{'chief' if 'chief' in cluster else 'worker'}/replica:0/task:0"


def _tasks_named(error: Exception, cluster: Dict[str, List[str]], this_task=None) -> List[str]:
  """The tasks TensorFlow's error names ("/job:worker/replica:0/task:1"), other than
  ``this_task`` (type, index), as "worker 1 at <its TF_CONFIG address>"."""
  named = []
  for job, task in re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", str(error)):
    hosts = cluster.get(job, [])
    name = f"{job} {task}" + (f" at {hosts[int(task)]}" if int(task) < len(hosts) else "")
    if (job, int(task)) != this_task and name not in named:
      named.append(name)
  return named


def cluster_failed_message(error: Exception, task_type: str, index: int,
                           cluster: Dict[str, List[str]], start_timeout_seconds: float) -> str:
  """The line a worker reports when the cluster did not form: which workers it waited for (the
  tasks TensorFlow's error names, with their TF_CONFIG addresses) and what to do."""
  named = _tasks_named(error, cluster, (task_type, index))
  waited = f" (waiting for {', '.join(named)})" if named else ""
  addresses = ", ".join(f"{job}: {' '.join(hosts)}" for job, hosts in cluster.items())
  return (f"The multi-worker cluster did not form within {start_timeout_seconds:g} s "
          f"(make_strategy.start_timeout_seconds){waited}: {type(error).__name__}. Start every "
          "worker with the same command, each with its own TF_CONFIG task, and check TF_CONFIG's "
          f"addresses ({addresses}): every worker must reach them.")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run folder (always, except non-chief workers)."""
  return not is_multi_worker(strategy) or strategy.extended.should_checkpoint


def scratch_path(root_dir: str, task_index: int) -> str:
  """The scratch folder of the non-chief worker with TF_CONFIG task index ``task_index``."""
  return os.path.join(root_dir, f"{SCRATCH_PREFIX}{task_index}")


def scratch_dir(root_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Where a non-chief worker writes what the chief writes to ``root_dir``."""
  return scratch_path(root_dir, strategy.cluster_resolver.task_id)


def write_root(root_dir: str, strategy: tf.distribute.Strategy) -> str:
  """The folder this process writes its run files to: ``root_dir`` on the chief."""
  return root_dir if is_chief(strategy) else scratch_dir(root_dir, strategy)


def hold_scratch_lock(root_dir: str, name: str) -> None:
  """On a non-chief worker (``name`` is the strategy; nothing otherwise): takes the lock of its
  scratch folder for the rest of the process, before it joins the cluster, so that a second
  process started as the same worker is refused with one line instead of disturbing the
  running one; then empties the folder (what a killed earlier run of this worker left there
  is never resumed from: every worker restores the chief's checkpoints). The chief's lock is
  the run folder's (`l2f_tf.train.restore.setup_run`, `l2f_tf.train.runner.Runner`)."""
  if is_chief_task(name):
    return
  task_type, index, _ = tf_config_task(name)
  folder = run_folder.RunFolder(scratch_path(root_dir, index))
  folder.prepare()
  run_folder.hold_lock(folder.root, fix=(
      f"This worker ({task_type} {index} of TF_CONFIG) is already running: stop that process, "
      "or give each worker its own TF_CONFIG task."))
  for entry in os.listdir(folder.root):
    path = os.path.join(folder.root, entry)
    if entry == run_folder.LOCK_NAME:
      continue
    if os.path.isdir(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def remove_scratch(root_dir: str, name: str) -> None:
  """On a non-chief worker (``name`` is the strategy; nothing otherwise): releases the lock of
  its scratch folder and deletes the folder."""
  if not is_chief_task(name):
    path = scratch_path(root_dir, tf_config_task(name)[1])
    run_folder.release_lock(path)
    shutil.rmtree(path, ignore_errors=True)


_ALL_REDUCE_SUM: Dict[tf.distribute.Strategy, tf.types.experimental.GenericFunction] = {}


def all_reduce_sum(strategy: tf.distribute.Strategy, value: float) -> float:
  """The sum of ``value`` over every replica of every worker (one collective: every worker
  must call it at the same point of its program; traced once per strategy)."""
  if strategy not in _ALL_REDUCE_SUM:
    _ALL_REDUCE_SUM[strategy] = tf.function(
        lambda x: strategy.reduce("sum", strategy.run(tf.identity, args=(x,)), axis=None))
  return float(_ALL_REDUCE_SUM[strategy](tf.constant(value, tf.float32)))


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has reached it (an all-reduce; a no-op off multi-worker):
  non-chief workers wait here while the chief evaluates and exports, not to look lost."""
  if is_multi_worker(strategy):
    all_reduce_sum(strategy, 1.0)


class SharedInterrupts(interrupts.InterruptWatcher):
  """Ctrl-C on one worker of a multi-worker run stops every worker at the same meta-iteration.

  The Runner polls :attr:`requested` once per chunk of meta-iterations, at the same point on
  every worker; here that poll all-reduces the workers' Ctrl-C flags, so that all of them see
  a Ctrl-C from any one, save the checkpoint of that step together (a save may need every
  worker) and stop. Alone, the interrupted worker would stop and the others would wait in the
  next all-reduce until they noticed it gone, without a checkpoint of the stopping step.
  """

  QUIT_MESSAGE = ("Ctrl-C: quitting now. Training is finished and saved; start every worker "
                  "again with the same command to let the chief finish the evaluation, export "
                  "and figures.")

  def __init__(self, strategy: tf.distribute.Strategy, last_checkpoint):
    super().__init__(last_checkpoint)
    self._strategy = strategy

  def active(self, graceful: bool, quit_message: Optional[str] = None):
    """As `InterruptWatcher.active`; an immediate stop tells to start every worker again."""
    return super().active(graceful, quit_message or self.QUIT_MESSAGE)

  @property
  def here(self) -> bool:
    """Whether the Ctrl-C was pressed on this worker (not on another one)."""
    return interrupts.InterruptWatcher.requested.fget(self)

  @property
  def requested(self) -> bool:
    return all_reduce_sum(self._strategy, float(self.here)) > 0


WORKER_LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.CancelledError, tf.errors.FailedPreconditionError,
               tf.errors.InternalError)


def _detail(error: Exception) -> str:
  """What a TensorFlow error says happened: its first line that does (else its first line),
  with the line after it when it ends with a colon (the list it announces)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  keys = ("peer", "is down", "Connection", "Deadline", "timed out", "abort", "heartbeat")
  found = next((i for i, line in enumerate(lines) if any(k in line for k in keys)), 0)
  picked = lines[found:found + 1]
  if picked and picked[0].endswith(":"):
    picked = lines[found:found + 2]
  detail = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", " ".join(picked))
  return detail.replace("Collective ops is aborted by: ", "")


def worker_lost_message(error: Exception, root_dir: str) -> str:
  """What a worker reports when a collective failed because another worker is gone (named
  with its TF_CONFIG address when TensorFlow's error names it)."""
  task_type, index, cluster = tf_config_task("multi_worker")
  named = _tasks_named(error, cluster, (task_type, index))
  if not named and "CoordinationService" in str(error):  # The leader's service did not answer.
    named = _tasks_named(_leader(cluster), cluster, (task_type, index))
  who = f" ({', '.join(named)})" if named else ""
  return (f"A worker of this multi-worker run stopped answering{who}: "
          f"{type(error).__name__}: {_detail(error)}. Training stopped; the last checkpoint in "
          f"{os.path.join(root_dir, 'checkpoints')} is kept. Start every worker again with the "
          "same command to resume from it.")


def finished_without_worker_message(error: Exception) -> str:
  """What the chief reports when it finished the run but a worker was gone at the final wait
  (nothing is lost: training ended on every worker before the chief's evaluation)."""
  return (f"The run is finished, but another worker stopped answering while the chief "
          f"evaluated ({type(error).__name__}: {_detail(error)}); nothing is lost.")


def interrupted_message(here: bool, step: int, root_dir: str) -> str:
  """What each worker reports after a Ctrl-C stopped them all at meta-iteration ``step``."""
  who = "Interrupted" if here else "Another worker of this multi-worker run was interrupted"
  return (f"{who}: every worker stopped at meta-iteration {step} with a checkpoint in "
          f"{os.path.join(root_dir, 'checkpoints')}. Start every worker again with the same "
          "command to resume.")
