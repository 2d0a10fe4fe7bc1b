"""Seconds per meta-iteration and peak memory of few-shot image classification on this CPU.

  python benchmarks/vision_step.py                   # every case, each in a fresh process
  python benchmarks/vision_step.py --case=5,5,0,0,1  # one case: shots, steps, first_order,
                                                     # jit, sequential
  python benchmarks/vision_step.py --precision=mixed_bfloat16  # bfloat16 compute, float32
                                                               # weights (l2f_tf.precision)
  python benchmarks/vision_step.py --precision=bfloat16_conv   # only convolutions in bfloat16
  python benchmarks/vision_step.py --compare_reference  # l2f_tf and the authors' PyTorch code,
                                                       # same configuration, same run
  python benchmarks/vision_step.py --compare_reference --rounds=3  # three times, median ratio
  python benchmarks/vision_step.py --batch_norm=support  # every case, batch norm in that mode
  python benchmarks/vision_step.py --compare_batch_norm --rounds=3  # the three batch-norm modes
                                                     # at the reference case, interleaved
  python benchmarks/vision_step.py --compare_reference --backbone=resnet12  # the authors'
                                                     # ResNet12 5-way 5-shot configuration

Reference configuration (docs/settings.md, section 3): 5-way 5-shot, 15 queries per class,
84x84x3 images, conv4 with 48 filters, meta-batch 2, 5 inner steps, second order, MAML+L2F; also
first order and 1-shot (meta-batch 4). ``--backbone=resnet12``: the ResNet12 of the paper
(64, 128, 256, 512 channels) at the authors' ResNet12 5-way 5-shot configuration, meta-batch 1
(also for 1-shot cases). Episodes are random images: the cost does not depend on their content.
Peak memory is the process's maximum resident set size (ru_maxrss), so each case runs alone.
"sequential" is the library's default for images (``Trainer.sequential_tasks``): tasks one at a
time with recomputed inner steps (`l2f_tf.meta.sequential`); "plain" is one tape around
``MetaLearner.meta_loss``.

``--compare_reference`` times the authors' published PyTorch L2F (github.com/baiksung/L2F) and
l2f_tf (sequential, plain, and sequential with ``--precision=bfloat16_conv``) at the 5-shot
second-order configuration, each in its own process, one after the other, and prints the
ratios. The authors' code and a venv with torch 2.13 (CPU
wheel), numpy, tqdm and pillow go to a scratch folder outside the repository (``--reference_dir``,
default ~/.cache/l2f_tf/reference); the code comes from ``git clone --depth 1`` or, without
network, from a local git snapshot (``--reference_git_dir``, extracted with ``git archive``).
benchmarks/reference_step_driver.py, run by that venv's Python, builds their system and times
their training iteration. If any of it fails, one line says so and l2f_tf is timed alone.

TensorFlow is imported only in the processes that time l2f_tf (``measure``): the parent process
only launches cases, and its pure-Python helpers load without TensorFlow.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from absl import app, flags

if __package__:  # imported as benchmarks.vision_step (the tests, other benchmarks)
  from benchmarks import peer_code
else:  # run as a script: its folder is on sys.path
  import peer_code  # The scratch copy of the authors' code and its venv.

CASE = flags.DEFINE_string("case", None,
                           "shots,inner_steps,first_order,jit,sequential (one case).")
REPEATS = flags.DEFINE_integer("repeats", 5, "Timed meta-iterations per case.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed meta-iterations before the timed ones (the "
                              "first one traces; its time is reported as 'first call').")
SIZE_FLAG = flags.DEFINE_integer("size", 84, "Image height and width (84 is the reference; "
                                 "smaller only for smoke runs).")
PRECISION = flags.DEFINE_enum("precision", "float32",
                              ["float32", "mixed_bfloat16", "bfloat16_conv"],
                              "Precision of the network (l2f_tf.precision; mixed_float16 is for "
                              "GPUs and needs the Trainer's loss scaling).")
AUTHORS_FOLDER, AUTHORS_URL = "reference", "https://github.com/baiksung/L2F"
REFERENCE_SETUP = flags.DEFINE_boolean("reference_setup", False,
                                       "Only fetch the authors' code and make its venv, then exit.")
BATCH_NORM_MODES = ("transductive", "support", "task_norm_i")  # l2f_tf.models.batch_norm.MODES
BATCH_NORM = flags.DEFINE_enum("batch_norm", "transductive", BATCH_NORM_MODES,
                               "BatchNorm.mode of conv4 (l2f_tf.models.batch_norm).")
COMPARE_BATCH_NORM = flags.DEFINE_boolean(
    "compare_batch_norm", False, "Time every batch-norm mode at the reference case (5-shot, "
    "second order, sequential), each in its own process, the modes interleaved within each of "
    "--rounds rounds, and print each mode's time and memory over the transductive one's.")
BACKBONES = ("conv4", "resnet12")
BACKBONE = flags.DEFINE_enum("backbone", "conv4", BACKBONES, "conv4 (48 filters) or resnet12 "
                             "(meta-batch 1, the authors' ResNet12 configuration).")
MEMORY_CAP_GB = flags.DEFINE_float(
    "memory_cap_gb", 20.0, "A timed process whose resident memory exceeds this is stopped and "
    "reported as not fitting (the machine has no swap: past its memory the kernel would kill "
    "something else).")
THREADS = flags.DEFINE_integer("threads", 0, "torch.set_num_threads for the authors' code; 0 = "
                               "the logical CPUs the process may use (what TensorFlow uses by "
                               "default).")

WAYS, QUERIES, SIZE = 5, 15, 84
CASES = [  # (label, shots, meta-batch, inner steps, first order, jit, sequential)
    ("5-shot, second order", 5, 2, 5, False, False, True),
    ("5-shot, first order", 5, 2, 5, True, False, True),
    ("1-shot, second order", 1, 4, 5, False, False, True),
    ("5-shot, second order", 5, 2, 5, False, False, False),
    ("5-shot, first order", 5, 2, 5, True, False, False),
    ("1-shot, second order", 1, 4, 5, False, False, False),
    ("5-shot, second order", 5, 2, 5, False, True, False),
]
# The l2f_tf side of --compare_reference: 5-shot, 5 inner steps, second order, no XLA.
COMPARED = [  # (label, case, precision)
    ("l2f_tf default (sequential)", "5,5,0,0,1", "float32"),
    ("l2f_tf plain (one tape)", "5,5,0,0,0", "float32"),
    ("l2f_tf default, precision bfloat16_conv", "5,5,0,0,1", "bfloat16_conv")]
AUTHORS = "authors (baiksung/L2F, PyTorch)"
TORCH_REQUIREMENTS = ["torch==2.13.0", "numpy", "tqdm", "pillow"]  # what their modules import
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_step_driver.py")


def meta_batch_size(shots: int, backbone: str = "conv4") -> int:
  """Tasks per meta-iteration: the authors' configurations (conv4: 2 for 5-shot, 4 for 1-shot;
  ResNet12: 1)."""
  if backbone == "resnet12":
    return 1
  return 2 if shots == 5 else 4


def build_step(shots: int, meta_batch: int, inner_steps: int, first_order: bool, jit: bool,
               sequential_tasks: bool, precision_name: str = "float32", size: int = SIZE,
               batch_norm: str = "transductive", backbone: str = "conv4"):
  """(step, episode): one meta-iteration of the reference configuration as a tf.function
  (meta-gradient, clipping, Adam) and a fixed batch of random episodes to feed it."""
  import gin
  import keras
  import numpy as np
  import tensorflow as tf

  from l2f_tf import precision
  from l2f_tf.data.episode import Episode
  from l2f_tf.meta import sequential
  from l2f_tf.meta.attenuation import TaskConditionedAttenuation
  from l2f_tf.meta.learner import MetaLearner
  from l2f_tf.models.conv4 import conv4
  from l2f_tf.models.resnet12 import resnet12

  def cross_entropy(y, logits):
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits,
                                                                       from_logits=True))

  keras.utils.set_random_seed(0)
  with gin.unlock_config():
    gin.bind_parameter("BatchNorm.mode", batch_norm)
  with precision.policy_scope(precision_name):
    if backbone == "resnet12":
      network = resnet12(num_classes=WAYS, image_shape=(size, size, 3))
    else:
      network = conv4(num_classes=WAYS, image_shape=(size, size, 3), filters=48)
    network = precision.convert(network, precision_name)
    learner = MetaLearner(network, cross_entropy, num_inner_steps=inner_steps, inner_lr=0.01,
                          attenuation=TaskConditionedAttenuation(), task_reduction="sum")
  optimizer = keras.optimizers.Adam(1e-3)
  rng = np.random.default_rng(0)

  def images(n):
    return rng.normal(size=(meta_batch, n, size, size, 3)).astype(np.float32)

  labels = lambda k: np.tile(np.repeat(np.arange(WAYS), k), (meta_batch, 1))
  episode = Episode(tf.constant(images(WAYS * shots)), tf.constant(labels(shots)),
                    tf.constant(images(WAYS * QUERIES)), tf.constant(labels(QUERIES)))

  @tf.function(jit_compile=jit)
  def step(batch):
    if sequential_tasks:
      loss, grads, _ = sequential.meta_gradients(learner, batch, first_order)
    else:
      with tf.GradientTape() as tape:
        loss, _ = learner.meta_loss(batch, first_order=first_order)
      grads = tape.gradient(loss, learner.meta_variables)
    num_network = len(learner.network_variables)
    grads = [tf.clip_by_value(g, -10, 10) if i < num_network else g for i, g in enumerate(grads)]
    optimizer.apply_gradients(zip(grads, learner.meta_variables))
    return loss

  return step, episode


def parse_case(case: str) -> Tuple[int, int, bool, bool, bool]:
  """``--case``, "shots,inner_steps,first_order,jit,sequential", as (shots, inner steps,
  first order, jit, sequential)."""
  shots, steps, first_order, jit, sequential = (int(v) for v in case.split(","))
  return shots, steps, bool(first_order), bool(jit), bool(sequential)


def build_flag_step(default_case: str = "5,5,0,0,1"):
  """(step, episode, meta-batch size) of ``build_step`` for this process's flags: ``--case``
  (``default_case`` when unset), ``--precision``, ``--size``, ``--batch_norm`` and
  ``--backbone`` (the step that vision_profile.py and vision_floor.py examine)."""
  shots, steps, first_order, jit, sequential = parse_case(CASE.value or default_case)
  meta_batch = meta_batch_size(shots, BACKBONE.value)
  step, episode = build_step(shots, meta_batch, steps, first_order, jit, sequential,
                             PRECISION.value, SIZE_FLAG.value, BATCH_NORM.value, BACKBONE.value)
  return step, episode, meta_batch


def time_step(step, episode, repeats: int, warmup: int) -> Tuple[List[float], float]:
  """(seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones, seconds of
  the first call, which traces)."""
  start = time.perf_counter()
  float(step(episode))
  first_call = time.perf_counter() - start
  for _ in range(warmup - 1):
    float(step(episode))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    float(step(episode))
    times.append(time.perf_counter() - start)
  return times, first_call


def measure(shots: int, meta_batch: int, inner_steps: int, first_order: bool, jit: bool,
            sequential_tasks: bool, repeats: int, precision_name: str = "float32",
            warmup: int = 2, size: int = SIZE, batch_norm: str = "transductive",
            backbone: str = "conv4"):
  import keras
  import tensorflow as tf
  from tensorflow.python.util import _pywrap_util_port

  step, episode = build_step(shots, meta_batch, inner_steps, first_order, jit,
                             sequential_tasks, precision_name, size, batch_norm, backbone)
  times, compile_seconds = time_step(step, episode, repeats, warmup)
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "times": times, "first_call_s": compile_seconds, "peak_mb": peak_mb,
          "tensorflow": tf.__version__, "keras": keras.__version__,
          "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
          "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
          "onednn": bool(_pywrap_util_port.IsMklEnabled())}


class MemoryCapExceeded(RuntimeError):
  """A timed process grew past the memory cap and was stopped; ``peak_mb`` is what it reached."""

  def __init__(self, peak_mb: float, cap_mb: float):
    super().__init__(f"did not fit: stopped at {peak_mb / 1024:.1f} GB resident, past the "
                     f"{cap_mb / 1024:.1f} GB cap (--memory_cap_gb)")
    self.peak_mb, self.cap_mb = peak_mb, cap_mb


def resident_mb(pid: int) -> float:
  """The resident memory of process ``pid`` in MB (0 once it has exited)."""
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024
  except (OSError, ValueError, IndexError):
    pass
  return 0.0


def run_capped(command: List[str], cap_mb: Optional[float], poll_s: float = 0.2,
               rss: Callable[[int], float] = resident_mb) -> subprocess.CompletedProcess:
  """``subprocess.run(command, capture_output=True, text=True)``, except that the process is
  killed once its resident memory exceeds ``cap_mb`` (MemoryCapExceeded), so that a case that
  cannot fit is reported instead of taking the machine's memory from everything else."""
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  peak = 0.0
  while True:
    try:
      stdout, stderr = process.communicate(timeout=poll_s)
      return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
      peak = max(peak, rss(process.pid))
      if cap_mb and peak > cap_mb:
        process.kill()
        process.communicate()
        raise MemoryCapExceeded(peak, cap_mb) from None


def run_case(case: str, repeats: int, precision_name: str = "float32", warmup: int = 2,
             size: int = SIZE, batch_norm: str = "transductive", backbone: str = "conv4",
             cap_mb: Optional[float] = None) -> Dict:
  """One case in a fresh process (peak RSS is per process); raises RuntimeError if it fails
  (MemoryCapExceeded if it outgrew ``cap_mb``)."""
  out = run_capped([sys.executable, os.path.abspath(__file__), f"--case={case}",
                    f"--repeats={repeats}", f"--precision={precision_name}",
                    f"--warmup={warmup}", f"--size={size}", f"--batch_norm={batch_norm}",
                    f"--backbone={backbone}"], cap_mb)
  if out.returncode:
    lines = out.stderr.strip().splitlines() or ["no output"]
    raise RuntimeError(lines[-1])
  return json.loads(out.stdout.strip().splitlines()[-1])


# --- --compare_reference: machine facts, the authors' code and venv, the table ---------------

def reference_location() -> Tuple[str, Optional[str], str]:
  """(scratch folder, local snapshot, URL) of the authors' code, from the shared flags."""
  return peer_code.location(AUTHORS_FOLDER, AUTHORS_URL)


def setup_reference(folder: str, git_dir: Optional[str], url: str,
                    run: Callable = subprocess.run) -> Tuple[str, str, str]:
  """(venv python, path of the authors' code, where it came from); raises peer_code.ReferenceUnavailable."""
  return peer_code.setup(folder, git_dir, url, "few_shot_learning_system.py", TORCH_REQUIREMENTS,
                         "torch, numpy, tqdm, PIL", run)


def run_reference(python: str, src: str, repeats: int, warmup: int, threads: int, size: int,
                  run: Callable = subprocess.run, backbone: str = "conv4",
                  inner_steps: int = 0) -> Dict:
  """The authors' training iteration timed by benchmarks/reference_step_driver.py in the scratch
  venv (``inner_steps`` 0: their configuration's 5); ``run`` may raise MemoryCapExceeded."""
  out = peer_code.checked(run, [python, DRIVER, f"--source={src}", f"--repeats={repeats}",
                       f"--warmup={warmup}", f"--threads={threads}", f"--size={size}",
                       f"--config={backbone}", f"--inner_steps={inner_steps}"],
                 "the authors' training iteration")
  try:
    return json.loads(out.stdout.strip().splitlines()[-1])
  except (ValueError, IndexError) as error:
    raise peer_code.ReferenceUnavailable(f"unreadable driver output: {error}") from error


def unavailable_line(reason: str) -> str:
  return f"Authors' reference unavailable ({reason}); l2f_tf figures only."


def format_row(label: str, result: Dict) -> str:
  return (f"| {label} | {result['median_s']:.2f} ({result['min_s']:.2f}-{result['max_s']:.2f}) "
          f"| {result['peak_mb'] / 1024:.2f} GB |")


def ratio_line(label: str, ours: Dict, authors: Dict) -> str:
  return f"{label} / authors: {ours['median_s'] / authors['median_s']:.2f}x"


def summarise_rounds(rounds: List[Dict], echo: Callable = print) -> Dict[str, float]:
  """After several --compare_reference rounds: for each l2f_tf row, its ratio to the authors'
  time in each round (both measured minutes apart) and the median ratio; returns
  {label: median ratio}. Rounds without the authors' figure are left out."""
  paired = [r for r in rounds if AUTHORS in r]
  medians = {}
  for label, _, _ in COMPARED:
    ratios = [r[label]["median_s"] / r[AUTHORS]["median_s"] for r in paired if label in r]
    if not ratios:
      continue
    medians[label] = statistics.median(ratios)
    echo(f"{label} / authors over {len(ratios)} rounds: median {medians[label]:.2f}x "
         f"(rounds: {', '.join(f'{x:.2f}x' for x in ratios)})")
  if not paired:
    echo("No round has the authors' figure: no ratios.")
  return medians


def tf_line(result: Dict, info: Dict) -> str:
  threads = (f"intra-op {result['intra_op_threads']}, inter-op {result['inter_op_threads']}")
  if not result["intra_op_threads"] and not result["inter_op_threads"]:
    threads += f" (0 = TF default: {info['usable_cpus']} threads, one per logical CPU)"
  return (f"l2f_tf: TensorFlow {result['tensorflow']}, Keras {result['keras']}; TF threads "
          f"{threads}; oneDNN: TF_ENABLE_ONEDNN_OPTS={info['TF_ENABLE_ONEDNN_OPTS']}, TF reports "
          f"{'on' if result['onednn'] else 'off'}")


def torch_line(result: Dict, origin: str) -> str:
  return (f"authors: torch {result['torch']}; torch.set_num_threads({result['threads_set']}), "
          f"torch.get_num_threads() = {result['torch_threads']}, interop threads "
          f"{result['torch_interop_threads']}; their config as run: "
          f"{result.get('architecture', '4CONV')}, "
          f"{result.get('filters')} filters, {result.get('ways')}-way {result.get('shots')}-shot, "
          f"{result.get('queries')} queries, meta-batch {result.get('meta_batch')}, "
          f"{result.get('inner_steps')} inner steps, second order {result['second_order']}, "
          f"attenuation {result.get('attenuate')}; code: {origin}")


def capped_run(cap_mb: Optional[float]) -> Callable:
  """A ``subprocess.run`` look-alike (for ``run_reference``) that stops the process past
  ``cap_mb`` of resident memory (MemoryCapExceeded)."""
  return lambda command, **kwargs: run_capped(command, cap_mb)


def compare_reference(repeats: int, warmup: int, size: int, folder: str, git_dir: Optional[str],
                      url: str, threads: int, run_l2f: Callable = run_case,
                      setup: Callable = setup_reference, run_authors: Callable = run_reference,
                      echo: Callable = print, busy: Callable = peer_code.busy_cpus,
                      backbone: str = "conv4", cap_mb: Optional[float] = None) -> Dict:
  """Times l2f_tf (sequential, plain, and sequential with bfloat16 convolutions) and the
  authors' code one after another, prints the table; returns {label: result}. Never raises
  because of the reference side; a side that outgrows ``cap_mb`` is reported as not fitting,
  with the memory it had reached."""
  info, busy_now = peer_code.machine_info(), busy()
  network = "ResNet12 (64-128-256-512)" if backbone == "resnet12" else "conv4-48"
  echo(f"{network}, {WAYS}-way 5-shot, {QUERIES} queries/class, {size}x{size}x3, meta-batch "
       f"{meta_batch_size(5, backbone)}, 5 inner steps, second order, MAML+L2F, Adam; random "
       f"images; median of {repeats} meta-iterations after {warmup} warm-up, each "
       f"implementation in its own process")
  echo(f"machine: {info['cpu_model']}, {info['physical_cores']} physical cores / "
       f"{info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable); "
       f"{busy_now:.2f} CPUs busy at start")
  if busy_now >= 0.5:
    echo("warning: the machine is busy; these times are not comparable with an idle machine's")
  threads = threads or info["usable_cpus"]
  results, authors, origin = {}, None, ""
  try:
    python, src, origin = setup(folder, git_dir, url)
  except peer_code.ReferenceUnavailable as error:
    echo(unavailable_line(str(error)))
    python = None
  for label, case, precision_name in COMPARED:
    try:
      results[label] = run_l2f(case, repeats, precision_name, warmup, size, backbone=backbone,
                               cap_mb=cap_mb)
    except RuntimeError as error:
      echo(f"{label}: failed: {error}")
  if python:
    try:
      authors = run_authors(python, src, repeats, warmup, threads, size,
                            run=capped_run(cap_mb), backbone=backbone)
      results[AUTHORS] = authors
    except MemoryCapExceeded as error:
      echo(f"{AUTHORS}: {error}")
    except peer_code.ReferenceUnavailable as error:
      echo(unavailable_line(str(error)))
  ours = [label for label, _, _ in COMPARED if label in results]
  if ours:
    echo(tf_line(results[ours[0]], info))
  if authors:
    echo(torch_line(authors, origin))
  echo("| implementation | s / meta-iteration (median, range) | peak memory |")
  echo("| --- | --- | --- |")
  for label in ours + ([AUTHORS] if authors else []):
    echo(format_row(label, results[label]))
  if authors:
    for label in ours:
      echo(ratio_line(label, results[label], authors))
  return results


def compare_batch_norm(rounds: int, repeats: int, warmup: int, size: int,
                       echo: Callable = print) -> Dict[str, Dict[str, float]]:
  """Each batch-norm mode at the reference case (5-shot, second order, sequential), the modes
  interleaved within each round; prints every measurement and returns, per inductive mode, the
  median over rounds of its time and peak memory over the transductive ones of its round."""
  case = "5,5,0,0,1"
  echo(f"conv4-48, {WAYS}-way 5-shot, {QUERIES} queries/class, {size}x{size}, 5 inner steps, "
       f"second order, sequential, MAML+L2F, {os.cpu_count()} CPU cores; {rounds} round(s)")
  ratios: Dict[str, Dict[str, List[float]]] = {
      m: {"time": [], "memory": []} for m in BATCH_NORM_MODES[1:]}
  for index in range(rounds):
    results = {}
    for mode in BATCH_NORM_MODES:
      results[mode] = r = run_case(case, repeats, "float32", warmup, size, mode)
      echo(f"round {index + 1} {mode:>13}: {r['median_s']:.2f} s/meta-iteration (min "
           f"{r['min_s']:.2f}, max {r['max_s']:.2f}), first call {r['first_call_s']:.1f} s, "
           f"peak {r['peak_mb']:.0f} MB", flush=True)
    base = results["transductive"]
    for mode in BATCH_NORM_MODES[1:]:
      ratios[mode]["time"].append(results[mode]["median_s"] / base["median_s"])
      ratios[mode]["memory"].append(results[mode]["peak_mb"] / base["peak_mb"])
  summary = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in ratios.items()}
  for mode, figures in summary.items():
    echo(f"{mode} / transductive: time x{figures['time']:.2f}, peak memory "
         f"x{figures['memory']:.2f} (median over {rounds} round(s))")
  return summary


def main(argv):
  del argv
  if COMPARE_BATCH_NORM.value:
    compare_batch_norm(peer_code.ROUNDS.value, REPEATS.value, WARMUP.value, SIZE_FLAG.value)
    return
  if REFERENCE_SETUP.value:
    try:
      python, src, origin = setup_reference(*reference_location())
      print(f"authors' code: {src} ({origin}); venv python: {python}")
    except peer_code.ReferenceUnavailable as error:
      print(f"Authors' reference could not be set up ({error}).")
    return
  if peer_code.COMPARE.value:
    rounds = []
    for index in range(peer_code.ROUNDS.value):
      if peer_code.ROUNDS.value > 1:
        print(f"--- round {index + 1} of {peer_code.ROUNDS.value}", flush=True)
      rounds.append(compare_reference(REPEATS.value, WARMUP.value, SIZE_FLAG.value,
                                      *reference_location(), THREADS.value,
                                      backbone=BACKBONE.value,
                                      cap_mb=MEMORY_CAP_GB.value * 1024))
    if peer_code.ROUNDS.value > 1:
      summarise_rounds(rounds)
    return
  if CASE.value:
    shots, steps, first_order, jit, lean = parse_case(CASE.value)
    print(json.dumps(measure(shots, meta_batch_size(shots, BACKBONE.value), steps,
                             first_order, jit, lean, REPEATS.value,
                             PRECISION.value, WARMUP.value, SIZE_FLAG.value, BATCH_NORM.value,
                             BACKBONE.value)))
    return
  size = SIZE_FLAG.value
  network = "resnet12 (meta-batch 1)" if BACKBONE.value == "resnet12" else "conv4-48"
  print(f"{network}, {WAYS}-way, {QUERIES} queries/class, {size}x{size}, 5 inner steps, "
        f"MAML+L2F, {PRECISION.value}, batch norm {BATCH_NORM.value}, {os.cpu_count()} CPU "
        "cores")
  print(f"{'case':>22} {'meta-gradient':>14} {'XLA':>5} {'s/meta-iteration':>17} "
        f"{'first call s':>13} {'peak MB':>8}")
  for label, shots, _, steps, first_order, jit, lean in CASES:
    kind = "sequential" if lean else "plain"
    try:
      r = run_case(f"{shots},{steps},{int(first_order)},{int(jit)},{int(lean)}",
                   REPEATS.value, PRECISION.value, WARMUP.value, size, BATCH_NORM.value,
                   BACKBONE.value, MEMORY_CAP_GB.value * 1024)
    except RuntimeError as error:
      print(f"{label:>22} {kind:>14} {str(jit):>5} failed: {error}")
      continue
    print(f"{label:>22} {kind:>14} {str(jit):>5} {r['median_s']:>17.2f} "
          f"{r['first_call_s']:>13.1f} {r['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
  app.run(main)
