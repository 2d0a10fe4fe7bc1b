"""The rest of tests/meta/test_gradients_bn_modes.py's matrix (slow tier: tracing second-order
graphs of two backbones on five paths takes minutes): inductive batch norm ("support",
TaskNorm-I) through conv4 and ResNet12, second order on the plain, compiled, vectorized,
sequential and XLA paths and first order on the plain and sequential ones, against finite
differences in float64."""

import pytest

from tests.meta.test_gradients_bn_modes import MODES, check_first_order, check_second_order

pytestmark = pytest.mark.slow

CASES = [(backbone, path) for backbone in ("conv4", "resnet12")
         for path in ("plain", "compiled", "vectorized", "sequential", "xla")
         if (backbone, path) != ("conv4", "sequential") and (backbone, path) != ("resnet12", "xla")]


@pytest.mark.parametrize("backbone,path", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_second_order_meta_gradient_matches_finite_differences(mode, backbone, path):
  check_second_order(mode, "xla" if path == "xla" else backbone, path)


@pytest.mark.parametrize("backbone,path", [("conv4", "sequential"), ("resnet12", "plain"),
                                           ("resnet12", "sequential")])
@pytest.mark.parametrize("mode", MODES)
def test_first_order_meta_gradient_matches_finite_differences(mode, backbone, path):
  check_first_order(mode, backbone, path)
