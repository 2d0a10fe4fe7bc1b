"""Reads a run's TensorBoard scalars back into arrays (for figures over meta-iterations).

Summaries are written with ``tf.summary.scalar`` (tensor events). A resumed run has several
event files in one folder; for a step written twice (a crash after the summary, before the
checkpoint) the later file wins, as TensorBoard shows it.
"""

import glob
import os
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

Series = Tuple[np.ndarray, np.ndarray]  # (steps, values), sorted by step


def read_scalars(event_dir: str, prefix: str = "") -> Dict[str, Series]:
  """{tag: (steps, values)} of the scalars whose tag starts with ``prefix`` in ``event_dir``
  (ValueError if it holds no event file)."""
  files = sorted(glob.glob(os.path.join(event_dir, "events.out.tfevents.*")),
                 key=lambda path: (os.path.getmtime(path), path))
  if not files:
    raise ValueError(f"{event_dir} holds no TensorBoard event file: the run has written no "
                     "summaries there yet.")
  points: Dict[str, Dict[int, float]] = {}
  for path in files:
    for event in events(path):
      for value in event.summary.value:
        if not value.tag.startswith(prefix):
          continue
        if value.HasField("tensor"):
          number = tf.make_ndarray(value.tensor)
          if number.size != 1:  # A histogram or an image.
            continue
          number = float(number.reshape(()))
        elif value.HasField("simple_value"):
          number = float(value.simple_value)
        else:
          continue
        points.setdefault(value.tag, {})[int(event.step)] = number
  series = {}
  for tag, by_step in points.items():
    steps = np.array(sorted(by_step), dtype=np.int64)
    series[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
  return series


def events(path: str):
  """The events of one file; a record cut short (a kill while writing) ends the file."""
  try:
    for record in tf.data.TFRecordDataset(path):
      yield tf.compat.v1.Event.FromString(record.numpy())
  except tf.errors.DataLossError:
    return


def per_tensor(series: Dict[str, Series], prefix: str) -> Dict[str, Series]:
  """The series ``<prefix>/<tensor path>`` keyed by tensor path, in the order written."""
  head = prefix.rstrip("/") + "/"
  return {tag[len(head):]: value for tag, value in series.items() if tag.startswith(head)}
