"""Run by test_nonfinite.py in a fresh process (``python -m tests.train.nonfinite_mirrored_check``
from the repository): the non-finite guard under MirroredStrategy on two logical CPUs.

Meta-batches 1 and 3 have an inf in task 0, which only the first replica holds: both replicas
must skip those steps together (the decision is taken on the all-reduced meta-gradient, so the
two copies of every variable stay equal). (tests/train/mirrored_check.py runs the compiled
multi-step loop under the same strategy.)"""

import l2f_tf  # noqa: F401

import json
import sys
import tempfile

import numpy as np
import tensorflow as tf

CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from l2f_tf.train.guard import NonFiniteError, NonFiniteGuard  # noqa: E402
from tests.train.test_nonfinite import make_trainer, state  # noqa: E402


def replicas_agree(trainer) -> bool:
  """Whether both replicas hold the same value of every weight and optimizer variable."""
  for variable in trainer.learner.meta_variables + trainer.optimizer.variables:
    copies = [c.numpy() for c in trainer.strategy.experimental_local_results(variable.value)]
    if len(copies) != 2 or not np.array_equal(copies[0], copies[1]):
      return False
  return True


def same(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(a, b))


def main():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    trainer = make_trainer(tempfile.mkdtemp(), bad_steps=(1, 3))
  trainer.run(1)
  after_1 = state(trainer)
  trainer.run(1)  # Meta-batch 1: skipped.
  report = {"replicas": trainer.strategy.num_replicas_in_sync,
            "skipped_step_unchanged": same(state(trainer), after_1)}
  trainer.run(1)  # Meta-batch 2.
  after_3 = state(trainer)
  report.update(step=trainer.step, skipped=trainer.guard.total,
                moved=not same(after_3, after_1), replicas_agree=replicas_agree(trainer))
  trainer.guard = NonFiniteGuard("stop")
  try:
    trainer.run(1)  # Meta-batch 3 is bad.
    report["stop"] = "not raised"
  except NonFiniteError as error:
    report["stop"] = {"step": error.step, "unchanged": same(state(trainer), after_3),
                      "replicas_agree": replicas_agree(trainer)}
  print(json.dumps(report))


if __name__ == "__main__":
  sys.exit(main())
