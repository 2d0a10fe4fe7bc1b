"""Seconds per meta-iteration and peak memory of few-shot image classification on this CPU.

  python benchmarks/vision_step.py                   # every case, each in a fresh process
  python benchmarks/vision_step.py --case=5,5,0,0,1  # one case: shots, steps, first_order,
                                                     # jit, sequential
  python benchmarks/vision_step.py --precision=mixed_bfloat16  # bfloat16 compute, float32
                                                               # weights (l2f_tf.precision)

Reference configuration (docs/settings.md, section 3): 5-way 5-shot, 15 queries per class,
84x84x3 images, conv4 with 48 filters, meta-batch 2, 5 inner steps, second order, MAML+L2F; also
first order and 1-shot (meta-batch 4). Episodes are random images: the cost does not depend on their content.
Peak memory is the process's maximum resident set size (ru_maxrss), so each case runs alone.
"sequential" is the library's default for images (``Trainer.sequential_tasks``): tasks one at a
time with recomputed inner steps (`l2f_tf.meta.sequential`); "plain" is one tape around
``MetaLearner.meta_loss``.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from l2f_tf import precision
from l2f_tf.data.episode import Episode
from l2f_tf.meta import sequential
from l2f_tf.meta.attenuation import TaskConditionedAttenuation
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv4

CASE = flags.DEFINE_string("case", None,
                           "shots,inner_steps,first_order,jit,sequential (one case).")
REPEATS = flags.DEFINE_integer("repeats", 5, "Timed meta-iterations per case.")
PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                              "Keras dtype policy of the network (mixed_float16 is for GPUs and "
                              "needs the Trainer's loss scaling).")

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


def cross_entropy(y, logits):
  return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))


def measure(shots: int, meta_batch: int, inner_steps: int, first_order: bool, jit: bool,
            sequential_tasks: bool, repeats: int, precision_name: str = "float32"):
  keras.utils.set_random_seed(0)
  with precision.policy_scope(precision_name):
    learner = MetaLearner(conv4(num_classes=WAYS, image_shape=(SIZE, SIZE, 3), filters=48),
                          cross_entropy, num_inner_steps=inner_steps, inner_lr=0.01,
                          attenuation=TaskConditionedAttenuation(), task_reduction="sum")
  optimizer = keras.optimizers.Adam(1e-3)
  rng = np.random.default_rng(0)

  def images(n):
    return rng.normal(size=(meta_batch, n, SIZE, SIZE, 3)).astype(np.float32)

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

  start = time.perf_counter()
  float(step(episode))
  compile_seconds = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    float(step(episode))
    times.append(time.perf_counter() - start)
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"median_s": statistics.median(times), "first_call_s": compile_seconds,
          "peak_mb": peak_mb}


def main(argv):
  del argv
  if CASE.value:
    shots, steps, first_order, jit, lean = (int(v) for v in CASE.value.split(","))
    meta_batch = 2 if shots == 5 else 4
    print(json.dumps(measure(shots, meta_batch, steps, bool(first_order), bool(jit),
                             bool(lean), REPEATS.value, PRECISION.value)))
    return
  print(f"conv4-48, {WAYS}-way, {QUERIES} queries/class, {SIZE}x{SIZE}, 5 inner steps, MAML+L2F, "
        f"{PRECISION.value}, {os.cpu_count()} CPU cores")
  print(f"{'case':>22} {'meta-gradient':>14} {'XLA':>5} {'s/meta-iteration':>17} "
        f"{'first call s':>13} {'peak MB':>8}")
  for label, shots, _, steps, first_order, jit, lean in CASES:
    out = subprocess.run([sys.executable, os.path.abspath(__file__),
                          f"--case={shots},{steps},{int(first_order)},{int(jit)},{int(lean)}",
                          f"--repeats={REPEATS.value}", f"--precision={PRECISION.value}"],
                         capture_output=True, text=True)
    kind = "sequential" if lean else "plain"
    if out.returncode:
      print(f"{label:>22} {kind:>14} {str(jit):>5} failed: "
            f"{out.stderr.strip().splitlines()[-1]}")
      continue
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{label:>22} {kind:>14} {str(jit):>5} {r['median_s']:>17.2f} "
          f"{r['first_call_s']:>13.1f} {r['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
  app.run(main)
