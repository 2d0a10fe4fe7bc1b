"""Quiet, honest consoles: loading an exported image model and reopening a trained run's
weights print no TensorFlow warning lines (hundreds of "unsaved custom gradients" lines, one
"could not be found" line per optimizer slot) unless third-party logs are asked for; compare
flags smoke runs (its one-line error: tests/test_quiet_tools_slow.py)."""

import gc
import logging

import pytest

from l2f_tf import compare, console, export
from l2f_tf.run_folder import RunFolder
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.models.conv4 import conv4
from l2f_tf.train import checkpoints
from l2f_tf.train.trainer import Trainer
from tests.domains.test_few_shot import domain as few_shot_domain
from tests.fake_images import write_class_folders

GRADIENT_WARNING = "unsaved custom gradients"
PARTIAL_RESTORE = ("could not be found", "unrestored values")


@pytest.fixture(scope="module")
def conv4_export(tmp_path_factory):
  """A conv4 (batch norm, max pooling: ops with custom gradients) exported with one step."""
  base = tmp_path_factory.mktemp("conv4")
  domain = few_shot_domain(write_class_folders(str(base / "data"), size=16),
                           backbone=lambda **kw: conv4(filters=2, **kw))
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.1)
  return export.export_for_domain(learner, domain, str(base / "saved_model"), max_steps=1)


def warnings_of(caplog, words):
  return [r.getMessage() for r in caplog.records
          if r.levelno >= logging.WARNING and any(w in r.getMessage() for w in words)]


def test_loading_an_image_model_prints_no_gradient_warnings(conv4_export, caplog, monkeypatch):
  monkeypatch.delenv(console.ENV, raising=False)
  with caplog.at_level(logging.WARNING):
    model = export.load(conv4_export)
  assert model.num_steps == 1
  assert warnings_of(caplog, [GRADIENT_WARNING]) == []
  # They are TensorFlow's to show when asked for (and this test would see them).
  caplog.clear()
  monkeypatch.setenv(console.ENV, "1")
  with caplog.at_level(logging.WARNING):
    export.load(conv4_export)
  assert len(warnings_of(caplog, [GRADIENT_WARNING])) > 10


def test_restoring_a_training_checkpoint_into_a_learner_is_silent(tmp_path, caplog):
  """A training checkpoint holds the optimizer's slots, which the learner does not load."""
  root = write_class_folders(str(tmp_path / "data"), size=16)
  domain = few_shot_domain(root, backbone=lambda **kw: conv4(filters=2, **kw))
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1)
  trainer = Trainer(learner, domain, str(tmp_path / "run"), num_iterations=1, jit_compile=False,
                    summary_every=0, num_val_episodes=0)
  path = trainer.checkpoint.save(str(tmp_path / "ckpt"))
  fresh = MetaLearner(domain.build_model(1), domain.loss_fn, num_inner_steps=1)
  with caplog.at_level(logging.WARNING):
    checkpoints.restore_weights(fresh, path)
    gc.collect()  # TensorFlow warns about what was not restored when the status is deleted
  assert warnings_of(caplog, PARTIAL_RESTORE) == []
  for x, y in zip(learner.meta_variables, fresh.meta_variables):
    assert (x.numpy() == y.numpy()).all()


def test_the_results_table_flags_smoke_runs(tmp_path):
  for name, smoke in (("real", False), ("quick", True)):
    results = {"method": "MAML", "evaluations": {"test": {
        "mse_after_1_steps": {"mean": 0.5, "ci95": 0.1, "n": 4}}}}
    if smoke:
      results["smoke"] = True
    RunFolder(str(tmp_path / name)).prepare()
    RunFolder(str(tmp_path / name)).write_results(results)
  table = compare.results_table([str(tmp_path / "real"), str(tmp_path / "quick")]).splitlines()
  assert "smoke" not in table[0]
  assert "MAML (smoke run: tiny loops, numbers mean nothing) [quick]" in table[1]
