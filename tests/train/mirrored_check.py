"""Run by test_distribution.py in a fresh process: the train step under MirroredStrategy on two
logical CPUs matches the default strategy (tasks split across replicas, gradients summed).

Plain SGD is used so that the weights differ exactly by lr times the gradient difference (Adam
would amplify float round-off of near-zero gradients to steps of about lr)."""

import l2f_tf  # noqa: F401

import json
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from l2f_tf.domains.sinusoid import SinusoidRegression  # noqa: E402
from l2f_tf.meta.attenuation import TaskConditionedAttenuation  # noqa: E402
from l2f_tf.meta.learner import MetaLearner  # noqa: E402
from l2f_tf.train.runner import Runner  # noqa: E402
from l2f_tf.train.trainer import Trainer  # noqa: E402


def run(strategy, task_reduction, num_iterations=3, clip=None, sequential=False,
        meta_batch_size=4, jit_compile=False):
  with strategy.scope():
    keras.utils.set_random_seed(0)
    domain = SinusoidRegression(num_shots=3, meta_batch_size=meta_batch_size)
    # XLA compiles the unrolled task loop (the trainer ignores jit_compile for vectorized
    # tasks), so the XLA case unrolls.
    learner = MetaLearner(domain.build_model(), domain.loss_fn, task_reduction=task_reduction,
                          attenuation=TaskConditionedAttenuation(),
                          vectorize_tasks=not jit_compile)
    trainer = Trainer(learner, domain, tempfile.mkdtemp(), num_iterations=num_iterations,
                      jit_compile=jit_compile, summary_every=2, outer_lr=0.1,
                      outer_optimizer="sgd", network_grad_clip=clip,
                      sequential_tasks=sequential, steps_per_call=2)
  Runner(trainer).train()
  return np.concatenate([v.numpy().ravel() for v in learner.meta_variables])


def main():
  report = {}
  initial = run(tf.distribute.get_strategy(), "mean", num_iterations=0)
  mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  # A clip of 0.05 is active on many entries: it must act on the summed meta-gradient. The
  # task-by-task (sequential) path and the XLA-compiled step are split the same way.
  # (reduction, clip, sequential, jit, the one-device run it must equal): the XLA case is
  # compared with the one-device run of its reduction and clip (vectorized, not compiled: the
  # same update up to float32 round-off, far below the tolerance) rather than with a one-device
  # XLA run, whose compilation was a quarter of this script's time (and a one-device XLA step
  # that went wrong the same way as the mirrored one would now be caught too).
  cases = [("mean", None, False, False, None), ("sum", 0.05, False, False, None),
           ("mean", 0.05, True, False, None), ("sum", 0.05, False, True, "sum, clip 0.05")]
  singles = {}
  for reduction, clip, sequential, jit, reference in cases:
    name = f"{reduction}, clip {clip}" + (", sequential" if sequential else "") + \
        (", jit" if jit else "")
    if reference is None:
      singles[name] = run(tf.distribute.get_strategy(), reduction, clip=clip,
                          sequential=sequential, jit_compile=jit)
    single = singles[reference or name]
    mirrored = run(mirrored_strategy, reduction, clip=clip, sequential=sequential,
                   jit_compile=jit)
    diff = np.abs(single - mirrored)
    report[name] = {"max_diff": float(diff.max()),
                    "max_change": float(np.abs(single - initial).max())}
  try:  # 3 tasks cannot be split over 2 replicas.
    run(mirrored_strategy, "mean", meta_batch_size=3)
    report["indivisible_error"] = ""
  except ValueError as error:
    report["indivisible_error"] = str(error)
  print(json.dumps(report))


if __name__ == "__main__":
  sys.exit(main())
