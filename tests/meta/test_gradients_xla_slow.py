"""XLA's second-order meta-gradient of conv4 with batch norm is NaN (TensorFlow 2.21): why the
Trainer refuses XLA for convolutional networks at second order. Slow tier: it tracks a
TensorFlow bug rather than checking l2f_tf's own gradients, which
tests/meta/test_gradients_backbones.py checks on every path in the default tier (the case
and the finite-difference reference are that file's)."""

import numpy as np
import pytest

from tests.gradient_check import analytic_meta_gradient, assert_matches_reference
from tests.meta.test_gradients_backbones import make_case, reference

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("l2f", [False, True], ids=["maml", "l2f"])
def test_xla_compiled_second_order_meta_gradient_is_nan(l2f):
  """Why the Trainer refuses XLA for a convolutional network at second order (TensorFlow 2.21,
  float64 here, float32 too): XLA's meta-gradient is NaN where the compiled path's matches
  finite differences, while each layer's second derivative alone (batch norm, max pooling,
  conv) is exact under XLA (tests/models/test_layers.py). This test fails, saying so, once XLA
  computes it; then lift the refusal in Trainer.__init__."""
  learner, batch = make_case("xla", l2f, 0)
  assert np.isnan(np.concatenate([g.ravel() for g in analytic_meta_gradient(
      learner, batch, "xla")])).any()
  assert_matches_reference(analytic_meta_gradient(learner, batch, "compiled"),
                           reference("xla", l2f, 0))
