"""Checkpoints: what a run saves to resume exactly, and what evaluation and export restore.

A training checkpoint holds the learner's ``checkpoint_parts`` (theta, the attenuator, the inner
learning rates, and LEO's random generator) plus the trainer's state: the outer optimizer for
supervised training (its iteration counter is the step, incremented inside the compiled train
step, so a checkpoint can never hold the weights of step s with a counter of s-1), the
iteration counter for meta-RL. Data streams and the meta-RL sampling noise are stateless
functions of the step; only a learner's own generator (LEO's sampling and dropout) is state.
"""

import glob
import os
import re
from typing import List, Optional, Tuple

import tensorflow as tf
from absl import logging

from l2f_tf import atomic

DAMAGED_FOLDER = "damaged"
STATE_NAME = "checkpoint"  # TensorFlow's list of a folder's checkpoints


def make_checkpoint(learner, **state) -> tf.train.Checkpoint:
  """A checkpoint of the learner's weights plus ``state`` (e.g. ``optimizer=...``); without
  state, the weights only (what evaluation and export need)."""
  return tf.train.Checkpoint(**learner.checkpoint_parts(), **state)


def restore_weights(learner, path: str) -> None:
  """Loads the weights of the checkpoint at ``path`` (a prefix such as ``.../ckpt-500``) into
  ``learner``; optimizer or counter state in the file is ignored (and not warned about). A
  damaged checkpoint is a ValueError naming it (re-running the run's command sets it aside)."""
  why = damage(path)
  if why is not None:
    raise ValueError(f"The checkpoint {path} is damaged ({why}). Run the run's command again: "
                     "it sets damaged checkpoints aside and falls back to an intact one.")
  make_checkpoint(learner).read(path).assert_existing_objects_matched().expect_partial()


def saved_steps(directory: str) -> List[int]:
  """The meta-iterations of the checkpoints ``ckpt-<step>`` in ``directory`` that have an index
  file, ascending (listed in TensorFlow's ``checkpoint`` state file or not)."""
  steps = []
  for index in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")):
    number = os.path.basename(index)[len("ckpt-"):-len(".index")]
    if number.isdigit():
      steps.append(int(number))
  return sorted(steps)


def _listed_steps(directory: str) -> Optional[List[int]]:
  """The steps TensorFlow's state file lists, ascending; None when there is no readable one."""
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError):
    return None
  if state is None or not state.model_checkpoint_path:
    return None
  steps = set()
  for path in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]:
    number = os.path.basename(path)[len("ckpt-"):]
    if number.isdigit():
      steps.add(int(number))
  return sorted(steps)


def _candidates(directory: str) -> Tuple[List[int], List[int]]:
  """(steps to resume from, newest first; steps of saves cut short). A checkpoint counts once
  TensorFlow's state file lists it (it does so only once the checkpoint is complete); files
  of newer steps are a save that a kill or a full disk cut short. Without a readable state
  file (lost, or damaged by a bad copy: that must not look like a run that never trained),
  every checkpoint on disk is a candidate."""
  on_disk, listed = saved_steps(directory), _listed_steps(directory)
  if listed is None:
    return on_disk[::-1], []
  return ([s for s in on_disk if s in listed][::-1],
          [s for s in on_disk if s > max(listed)])


def latest(directory: str) -> Optional[str]:
  """The prefix of the newest checkpoint in ``directory``, or None."""
  step = latest_step(directory)
  return None if step is None else os.path.join(directory, f"ckpt-{step}")


def latest_step(directory: str) -> Optional[int]:
  """The meta-iteration of the newest checkpoint in ``directory`` (``ckpt-<step>``), or None."""
  candidates, _ = _candidates(directory)
  return candidates[0] if candidates else None


def damage(path: str) -> Optional[str]:
  """None when the checkpoint at ``path`` reads back whole, else what is wrong with it (one
  line). Every tensor is read, so TensorFlow checks each one against the checksum stored in the
  index: a truncated or altered data file, an altered or truncated index and a missing shard
  are all found here, before anything is restored from them."""
  try:
    reader = tf.train.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except (tf.errors.OpError, IndexError, ValueError) as error:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return re.sub(r"^\{\{[^}]*\}\}\s*", "", lines[0] if lines else type(error).__name__)
  return None


def set_aside(path: str) -> str:
  """Moves the files of the checkpoint at ``path`` into ``damaged/`` beside it (kept for a
  look, out of every later run's way); returns that folder."""
  folder = os.path.join(os.path.dirname(path), DAMAGED_FOLDER)
  os.makedirs(folder, exist_ok=True)
  for name in glob.glob(glob.escape(path) + ".*"):
    os.replace(name, os.path.join(folder, os.path.basename(name)))
  return folder


def newest_intact(directory: str, tidy: bool = True) -> Optional[str]:
  """The prefix of the newest checkpoint in ``directory`` that reads back whole (None: none).

  Newer damaged checkpoints are skipped with a one-line warning each. With ``tidy`` (the
  folder's own process, which holds its lock) they are moved to ``damaged/``, the files of a
  save cut short are deleted, and TensorFlow's ``checkpoint`` state file is rewritten when it
  was unreadable or named a damaged checkpoint, so that no later save, prune or reader meets
  them again.
  """
  candidates, unfinished = _candidates(directory)
  found, damaged = None, []
  for step in candidates:
    path = os.path.join(directory, f"ckpt-{step}")
    why = damage(path)
    if why is None:
      found = path
      break
    damaged.append((path, why))
  fallback = (f"resuming from {found} instead" if found else
              "no intact checkpoint is left, so training starts from the beginning")
  for path, why in damaged:
    where = f": moved it to {set_aside(path)}/" if tidy else ""
    logging.warning("The checkpoint %s is damaged (%s)%s; %s.", path, why, where, fallback)
  if tidy:
    for step in unfinished:
      for name in glob.glob(os.path.join(glob.escape(directory), f"ckpt-{step}.*")):
        os.remove(name)
      logging.info("Removed %s: a save that was cut short.",
                   os.path.join(directory, f"ckpt-{step}"))
    if damaged or _listed_steps(directory) is None:
      _write_state(directory, [s for s in reversed(candidates)
                               if found and s <= int(found.rsplit("-", 1)[1])])
  return found


def _write_state(directory: str, steps: List[int]) -> None:
  """TensorFlow's ``checkpoint`` state file listing ``steps`` (the last is the latest), with
  paths relative to ``directory`` and the times they were saved, as CheckpointManager writes
  them."""
  path = os.path.join(directory, STATE_NAME)
  if not steps:
    if os.path.exists(path):
      os.remove(path)
    return
  lines = [f'model_checkpoint_path: "ckpt-{steps[-1]}"']
  lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
  # The manager prunes only checkpoints saved after the last "preserved" time (0 here): without
  # their times it would keep these forever.
  lines += [f"all_model_checkpoint_timestamps: "
            f"{os.path.getmtime(os.path.join(directory, f'ckpt-{s}.index')):.6f}" for s in steps]
  atomic.write_text(path, "\n".join(lines) + "\n")


def restore_or_initialize(checkpoint: tf.train.Checkpoint, directory: str,
                          max_to_keep: int = 3,
                          restore_from: Optional[str] = None) -> tf.train.CheckpointManager:
  """A CheckpointManager saving to ``directory`` that has restored the newest intact
  checkpoint of ``restore_from`` (default: ``directory``), if any (:func:`newest_intact`).

  A non-chief worker of a multi-worker run saves to a scratch directory (every worker takes
  part in a save, TensorFlow's rule for multi-worker checkpoints) but restores from the
  chief's, so that all workers resume from the same state; it leaves the chief's damaged
  checkpoints where they are (the chief sets them aside).
  """
  restore_from = restore_from or directory
  own = os.path.abspath(restore_from) == os.path.abspath(directory)
  path = newest_intact(restore_from, tidy=own) if os.path.isdir(restore_from) else None
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(directory), max_to_keep)
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
