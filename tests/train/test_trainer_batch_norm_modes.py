"""A Trainer of a convolutional network (any batch-norm mode) compiles without XLA at second
order: the default turns XLA off and asking for it is one line naming the fix, because XLA's
second-order meta-gradients are NaN there (tests/meta/test_gradients_xla_slow.py and, for the
inductive modes, test_gradients_bn_modes_paths.py show it). First order may use XLA."""

import gin
import numpy as np
import pytest

import l2f_tf
from l2f_tf import run_folder
from l2f_tf.models.conv4 import conv4


@pytest.fixture(autouse=True)
def release_locks():
  yield
  run_folder.release_locks()


def conv_trainer(root, mode, **options):
  gin.parse_config(f"BatchNorm.mode = '{mode}'")  # (conftest clears gin after each test)
  rng = np.random.default_rng(0)
  split = lambda: (rng.normal(size=(12, 16, 16, 1)).astype(np.float32), np.repeat(np.arange(3), 4))
  domain = l2f_tf.ArrayClassification(
      {"train": split(), "test": split()}, num_ways=3, num_shots=1, num_queries=1,
      meta_batch_size=1,
      network=lambda num_classes, input_shape: conv4(num_classes, input_shape, filters=2))
  learner = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn)
  return l2f_tf.Trainer(learner, domain, root, num_iterations=1, summary_every=0, **options)


@pytest.mark.parametrize("mode", ["transductive", "support", "task_norm_i"])
def test_xla_is_off_by_default_for_a_convolutional_network(tmp_path, mode):
  assert not conv_trainer(str(tmp_path / "a"), mode).jit_compile
  assert conv_trainer(str(tmp_path / "b"), mode, always_first_order=True).jit_compile


@pytest.mark.parametrize("mode", ["transductive", "support"])
def test_asking_for_xla_at_second_order_names_the_fix(tmp_path, mode):
  with pytest.raises(ValueError, match=r"Trainer.jit_compile = True gives NaN second-order "
                                       r"meta-gradients for a convolutional network.*set "
                                       r"Trainer.jit_compile = False \(or "
                                       r"Trainer.always_first_order = True\)"):
    conv_trainer(str(tmp_path), mode, jit_compile=True)
  assert conv_trainer(str(tmp_path / "b"), mode, jit_compile=True,
                      always_first_order=True).jit_compile
