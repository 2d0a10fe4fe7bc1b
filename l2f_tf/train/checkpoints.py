"""Checkpointing of everything a meta-learning run needs to resume exactly.

The step is the optimizer's iteration counter, incremented inside the compiled train step, so a
checkpoint can never hold weights of step s with a counter of s-1. Data streams are stateless
functions of the step, so no RNG state is needed.
"""

import os

import tensorflow as tf
from absl import logging


def make_checkpoint(learner, optimizer) -> tf.train.Checkpoint:
  parts = {"model": learner.model, "inner_lrs": learner.inner_lrs, "optimizer": optimizer}
  if learner.attenuation is not None:
    parts["attenuation"] = learner.attenuation
  return tf.train.Checkpoint(**parts)


def make_weights_checkpoint(learner) -> tf.train.Checkpoint:
  """The learner's weights only (no optimizer state): what evaluation and export need."""
  parts = {"model": learner.model, "inner_lrs": learner.inner_lrs}
  if learner.attenuation is not None:
    parts["attenuation"] = learner.attenuation
  return tf.train.Checkpoint(**parts)


def restore_or_initialize(checkpoint: tf.train.Checkpoint, directory: str,
                          max_to_keep: int = 3) -> tf.train.CheckpointManager:
  """A CheckpointManager on ``directory`` that has restored the latest checkpoint, if any."""
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(directory), max_to_keep)
  if manager.latest_checkpoint:
    status = checkpoint.restore(manager.latest_checkpoint)
    try:
      status.assert_existing_objects_matched()
    except AssertionError as error:
      raise ValueError(
          f"The checkpoint {manager.latest_checkpoint} does not match this configuration "
          f"(was it written with another model or learner?). Use a new --root_dir or delete "
          f"{directory}. Details: {error}") from error
    logging.info("Resumed from %s", manager.latest_checkpoint)
  return manager
