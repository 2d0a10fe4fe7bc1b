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


def run(strategy, task_reduction, num_iterations=3, clip=None):
  with strategy.scope():
    keras.utils.set_random_seed(0)
    domain = SinusoidRegression(num_shots=3, meta_batch_size=4)
    learner = MetaLearner(domain.build_model(), domain.loss_fn, task_reduction=task_reduction,
                          attenuation=TaskConditionedAttenuation())
    trainer = Trainer(learner, domain, tempfile.mkdtemp(), num_iterations=num_iterations,
                      jit_compile=False, summary_every=2, outer_lr=0.1, outer_optimizer="sgd",
                      network_grad_clip=clip)
  Runner(trainer).train()
  return np.concatenate([v.numpy().ravel() for v in learner.meta_variables])


def main():
  report = {}
  initial = run(tf.distribute.get_strategy(), "mean", num_iterations=0)
  # A clip of 0.05 is active on many entries: it must act on the summed meta-gradient.
  for reduction, clip in (("mean", None), ("sum", None), ("sum", 0.05)):
    single = run(tf.distribute.get_strategy(), reduction, clip=clip)
    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), reduction, clip=clip)
    diff = np.abs(single - mirrored)
    report[f"{reduction}, clip {clip}"] = {"max_diff": float(diff.max()),
                         "max_change": float(np.abs(single - initial).max())}
  print(json.dumps(report))


if __name__ == "__main__":
  sys.exit(main())
