"""Meta-gradients of conv4 and ResNet12 with inductive batch norm ("support", TaskNorm-I)
against finite differences in float64: conv4 on the training path (sequential, second order)
and first order here; every other path and ResNet12 in test_gradients_bn_modes_paths.py (slow
tier).

The finite differences evaluate the meta-loss with the query passes normalised by the support
set (``loss_at(..., support_x)``), forward values only: an independent reference for the
gradients of the concatenated support-and-query pass, of the support statistics it takes, and
of TaskNorm's learned blending weights (outer-loop weights, inputs of every recomputed step on
the sequential path). The settings are those of tests/meta/test_gradients_backbones.py.
"""

import numpy as np
import pytest

from tests.gradient_check import analytic_meta_gradient, assert_matches_reference
from tests.meta.test_gradients_backbones import (first_order_meta_gradient, kinds_of_tensors,
                                                 make_case, reference)

MODES = ["support", "task_norm_i"]
# The central difference's round-off (1e-16 * loss / step 1e-6) reaches 1e-9, which is 2.6e-6
# of ResNet12's smallest projected attenuator gradient (8e-4) in support mode; with steps of
# 1e-3..1e-5 the analytic value agrees to 1e-12 there. A missing term errs by 1e-3 or more.
RTOL = 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_second_order_sequential_conv4_matches_finite_differences(mode):
  check_second_order(mode, "conv4", "sequential")


@pytest.mark.parametrize("mode", MODES)
def test_first_order_conv4_matches_finite_differences(mode):
  check_first_order(mode, "conv4", "plain")


def check_second_order(mode, backbone, path):
  learner, batch = make_case(backbone, True, 0, mode)
  assert learner.batch_norm == mode and learner.uses_support_statistics
  kinds = kinds_of_tensors(learner)
  assert {"theta", "bn", "attenuator"} <= set(kinds)
  if mode == "task_norm_i":
    assert any(v.path.endswith("alpha_scale") for v in learner.meta_variables)
  analytic = analytic_meta_gradient(learner, batch, path)
  assert_matches_reference(analytic, reference(backbone, True, 0, mode=mode), RTOL)
  first = first_order_meta_gradient(backbone, True, mode)
  assert max(np.abs(a - f).max() / np.abs(a).max() for a, f in zip(analytic, first)) > 1e-2


def check_first_order(mode, backbone, path):
  learner, batch = make_case(backbone, True, 2, mode)
  analytic = analytic_meta_gradient(learner, batch, path, first_order=True)
  assert_matches_reference(analytic, reference(backbone, True, 2, first_order=True, mode=mode),
                           RTOL)


def test_support_statistics_change_the_meta_gradient():
  """The check has teeth: the same weights and tasks in transductive mode give another
  meta-gradient than the support-mode reference."""
  learner, batch = make_case("conv4", True, 0, "transductive")
  analytic = analytic_meta_gradient(learner, batch, "compiled")
  with pytest.raises(AssertionError, match="analytic vs finite difference"):
    assert_matches_reference(analytic, reference("conv4", True, 0, mode="support"), RTOL)
