"""The slow tier of tests/train/test_damage_and_redo.py: the fallback to an intact checkpoint
for every other kind of damage, an unreadable state file, every checkpoint damaged, and a
resumed run's TensorBoard points."""

import logging as std_logging
import os

import pytest
import tensorflow as tf

from tests.train.test_damage_and_redo import (DAMAGES, assert_same, check_fallback,  # noqa: F401
                                              copy_of, points, reference, trained_to_8)
from tests.train.test_resume import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["altered_data", "altered_index", "truncated_index",
                                  "missing_shard"])
def test_every_kind_of_damage_falls_back(trained_to_8, reference, tmp_path, caplog, kind):
  check_fallback(trained_to_8, reference, tmp_path, caplog, kind)


def test_an_unreadable_state_file_does_not_restart_the_run(trained_to_8, reference, tmp_path,
                                                           ):
  root = copy_of(trained_to_8, tmp_path)
  (root / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: \x00garbage{{\n")
  written = {step: os.stat(root / "checkpoints" / f"ckpt-{step}.index").st_mtime_ns
             for step in (4, 8)}
  run = train(root, 10)
  # Resumed from ckpt-8: neither checkpoint was written again (a fresh start rewrites both).
  assert written == {step: os.stat(root / "checkpoints" / f"ckpt-{step}.index").st_mtime_ns
                     for step in (4, 8)}
  assert_same(run.values, reference)
  # The rewritten state file lets TensorFlow's manager prune as usual (3 kept).
  assert tf.train.get_checkpoint_state(str(root / "checkpoints")) is not None


def test_with_every_checkpoint_damaged_training_starts_over(trained_to_8, reference, tmp_path,
                                                           caplog):
  root = copy_of(trained_to_8, tmp_path)
  for step in (4, 8):
    DAMAGES["altered_data"](str(root / "checkpoints" / f"ckpt-{step}"))
  with caplog.at_level(std_logging.WARNING):
    run = train(root, 10)
  assert sum("starts from the beginning" in r.getMessage() for r in caplog.records) == 2
  assert_same(run.values, reference)


def test_a_resumed_run_writes_each_summary_point_once(tmp_path):
  train(tmp_path, 6, summary_every=1)
  # As if killed after meta-iteration 6 was summarised but before its checkpoint.
  for name in os.listdir(tmp_path / "checkpoints"):
    if name.startswith("ckpt-6."):
      os.remove(tmp_path / "checkpoints" / name)
  before = points(str(tmp_path / "train"))
  train(tmp_path, 6, summary_every=1)
  after = points(str(tmp_path / "train"))
  assert max(after.values()) == 1, [k for k, n in after.items() if n > 1]
  # (Layer names differ between the two processes' networks; the meta-loss tag does not.)
  assert sorted(s for t, s in after if t == "meta_loss") == list(range(1, 7))
  assert sorted(s for t, s in before if t == "meta_loss") == list(range(1, 7))
