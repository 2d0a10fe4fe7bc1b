"""Trainer steps on the sequential (memory-lean) path under reduced precision: conv4 under each
precision, and float16's skipped overflowing step (checks of tests/meta/test_mixed_precision.py,
whose sinusoid and plain-path cases run in the default tier). Slow tier: each case traces a
second-order step of its own; the precisions' meta-gradients of conv4 are compared with float32
and the sequential path with the plain one in the default tier."""

import pytest

from tests.meta.test_mixed_precision import (
    check_float16_dynamic_loss_scale_skips_an_overflowing_step,
    check_trainer_steps_run_and_move_the_weights)
# Autouse: restores the global dtype policy after each test of this file too.
from tests.meta.test_mixed_precision import restore_dtype_policy  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16", "bfloat16_conv"])
def test_conv4_sequential_trainer_steps_run_and_move_the_weights(tmp_path, name):
  check_trainer_steps_run_and_move_the_weights(tmp_path, "conv4-sequential", name)


def test_float16_dynamic_loss_scale_skips_an_overflowing_sequential_step(tmp_path):
  check_float16_dynamic_loss_scale_skips_an_overflowing_step(tmp_path, sequential_tasks=True)
