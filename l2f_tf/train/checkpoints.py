"""Checkpoints: what a run saves to resume exactly, and what evaluation and export restore.

A training checkpoint holds the learner's ``checkpoint_parts`` (theta, the attenuator, the inner
learning rates, and LEO's random generator) plus the trainer's state: the outer optimizer for
supervised training (its iteration counter is the step, incremented inside the compiled train
step, so a checkpoint can never hold the weights of step s with a counter of s-1), the
iteration counter for meta-RL. Data streams and the meta-RL sampling noise are stateless
functions of the step; only a learner's own generator (LEO's sampling and dropout) is state.
"""

import os
from typing import Optional

import tensorflow as tf
from absl import logging


def make_checkpoint(learner, **state) -> tf.train.Checkpoint:
  """A checkpoint of the learner's weights plus ``state`` (e.g. ``optimizer=...``); without
  state, the weights only (what evaluation and export need)."""
  return tf.train.Checkpoint(**learner.checkpoint_parts(), **state)


def restore_weights(learner, path: str) -> None:
  """Loads the weights of the checkpoint at ``path`` (a prefix such as ``.../ckpt-500``) into
  ``learner``; optimizer or counter state in the file is ignored (and not warned about)."""
  make_checkpoint(learner).read(path).assert_existing_objects_matched().expect_partial()


def latest(directory: str) -> Optional[str]:
  """The prefix of the newest checkpoint in ``directory``, or None."""
  return tf.train.latest_checkpoint(directory)


def latest_step(directory: str) -> Optional[int]:
  """The meta-iteration of the newest checkpoint in ``directory`` (``ckpt-<step>``), or None."""
  path = latest(directory)
  return None if path is None else int(path.rsplit("-", 1)[-1])


def restore_or_initialize(checkpoint: tf.train.Checkpoint, directory: str,
                          max_to_keep: int = 3,
                          restore_from: Optional[str] = None) -> tf.train.CheckpointManager:
  """A CheckpointManager saving to ``directory`` that has restored the latest checkpoint of
  ``restore_from`` (default: ``directory``), if any.

  A non-chief worker of a multi-worker run saves to a scratch directory (every worker takes
  part in a save, TensorFlow's rule for multi-worker checkpoints) but restores from the
  chief's, so that all workers resume from the same state.
  """
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(directory), max_to_keep)
  restore_from = restore_from or directory
  path = latest(restore_from)
  if path:
    status = checkpoint.restore(path)
    try:
      status.assert_existing_objects_matched()
    except AssertionError as error:
      raise ValueError(
          f"The checkpoint {path} does not match this configuration (was it written with "
          f"another model or learner?). Use a new --root_dir or delete {restore_from}. "
          f"Details: {error}") from error
    logging.info("Resumed from %s", path)
  return manager
