"""TensorBoard event files of a run: dropping the points of work that is being redone.

A resumed run repeats the meta-iterations after its last checkpoint, and a repeated stage
(an evaluation killed before it was recorded, or asked again with other settings) writes its
points again. TensorBoard would then show two points at one step. Before redoing such work,
the run rewrites each event file that holds points of it without them (atomically; files with
nothing to drop are left untouched, so a writer that is open in this process is never
disturbed).
"""

import glob
import os
from typing import Callable

import tensorflow as tf

from l2f_tf import atomic
from l2f_tf.analysis import summaries

PATTERN = "events.out.tfevents.*"
# The suffix of the event files of a run's final evaluation (one file per evaluation).
EVALUATION_SUFFIX = ".evaluation"


def drop_points(directory: str, drop: Callable[[int, str], bool],
                pattern: str = PATTERN) -> int:
  """Removes from the event files ``pattern`` in ``directory`` every point (step, tag) for
  which ``drop`` is true; returns how many points were dropped. A file left with no point is
  deleted."""
  dropped = 0
  for path in sorted(glob.glob(os.path.join(glob.escape(directory), pattern))):
    kept, removed, points = [], 0, 0
    for event in summaries.events(path):
      values = event.summary.value
      if values and any(drop(int(event.step), value.tag) for value in values):
        removed += 1
        continue
      points += len(values)
      kept.append(event)
    if not removed:
      continue
    dropped += removed
    if not points:
      os.remove(path)
      continue
    with atomic.path_for(path) as tmp:
      with tf.io.TFRecordWriter(tmp) as writer:
        for event in kept:
          writer.write(event.SerializeToString())
  return dropped


def drop_after(directory: str, step: int) -> int:
  """Drops every point after ``step`` (the step a run resumes from) in ``directory``."""
  if not os.path.isdir(directory):
    return 0
  return drop_points(directory, lambda s, _: s > step)


def drop_evaluations_from(directory: str, step: int) -> int:
  """Drops the points of final evaluations at ``step`` or later (superseded by the one about to
  be written); validation points in the same folder stay."""
  if not os.path.isdir(directory):
    return 0
  return drop_points(directory, lambda s, _: s >= step, PATTERN + EVALUATION_SUFFIX)
