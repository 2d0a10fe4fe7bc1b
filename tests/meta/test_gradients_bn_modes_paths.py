"""The rest of tests/meta/test_gradients_bn_modes.py's matrix (slow tier: tracing second-order
graphs of two backbones on five paths takes minutes): inductive batch norm ("support",
TaskNorm-I) through conv4 and ResNet12, second order on the plain, compiled, vectorized and
sequential paths and first order on the plain and sequential ones, against finite differences
in float64. The Trainer refuses XLA with these modes: the last test shows its second-order
meta-gradients are NaN there (and will fail, saying so, once XLA computes them)."""

import numpy as np
import pytest

from tests.gradient_check import analytic_meta_gradient
from tests.meta.test_gradients_backbones import make_case
from tests.meta.test_gradients_bn_modes import MODES, check_first_order, check_second_order

pytestmark = pytest.mark.slow

CASES = [(backbone, path) for backbone in ("conv4", "resnet12")
         for path in ("plain", "compiled", "vectorized", "sequential")
         if (backbone, path) != ("conv4", "sequential")]


@pytest.mark.parametrize("backbone,path", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_second_order_meta_gradient_matches_finite_differences(mode, backbone, path):
  check_second_order(mode, backbone, path)


@pytest.mark.parametrize("backbone,path", [("conv4", "sequential"), ("resnet12", "plain"),
                                           ("resnet12", "sequential")])
@pytest.mark.parametrize("mode", MODES)
def test_first_order_meta_gradient_matches_finite_differences(mode, backbone, path):
  check_first_order(mode, backbone, path)


@pytest.mark.parametrize("mode", MODES)
def test_xla_second_order_meta_gradients_are_nan_with_inductive_batch_norm(mode):
  """Why XLA is refused: the compiled (non-XLA) path's meta-gradient matches finite differences
  (tests/meta/test_gradients_bn_modes*.py); XLA's is NaN."""
  learner, batch = make_case("xla", False, 0, mode)
  assert np.isfinite(np.concatenate([g.ravel() for g in analytic_meta_gradient(
      learner, batch, "compiled")])).all()
  xla = analytic_meta_gradient(learner, batch, "xla")
  assert np.isnan(np.concatenate([g.ravel() for g in xla])).any()
