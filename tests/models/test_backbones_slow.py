"""ResNet12 overfits one episode (the learner contract of tests/models/test_backbones.py, whose
conv4 case runs in the default tier). Slow tier: tracing ResNet12's second-order step twice is
most of the cost; ResNet12's meta-gradients are checked against finite differences on every
path in the default tier (tests/meta/test_gradients_backbones.py)."""

import pytest

from tests.models.test_backbones import check_learner_can_overfit_one_episode

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("l2f", [False, True])
def test_resnet12_learner_can_overfit_one_episode(l2f):
  check_learner_can_overfit_one_episode("resnet12", l2f)
