"""Which rows of a batch are the task's support set: what inductive normalisation layers read.

A query pass of a network whose batch norm takes its statistics from the support set feeds the
support set followed by the queries, inside :func:`support_rows`; the layers read
:func:`current_support_rows` when they are called (traced). The learners (``l2f_tf.meta``) and
the layers (``l2f_tf.models``) both use this module, so neither imports the other. A layer
that normalises declares ``batch_norm_mode`` and ``uses_support_statistics``;
:func:`mode_of` and :func:`uses_support_statistics` read them off a whole model.
"""

import contextlib
import threading
from typing import Iterator, Optional, Union

import keras
import tensorflow as tf

_STATE = threading.local()
Count = Union[int, tf.Tensor]


@contextlib.contextmanager
def support_rows(count: Count) -> Iterator[None]:
  """Within it, inductive normalisation layers take their batch statistics from the first
  ``count`` examples of their input (the support set, placed before the queries)."""
  stack = _STATE.__dict__.setdefault("stack", [])
  stack.append(count)
  try:
    yield
  finally:
    stack.pop()


def current_support_rows() -> Optional[Count]:
  """The ``count`` of the innermost :func:`support_rows`, or None (the whole batch)."""
  stack = _STATE.__dict__.get("stack", [])
  return stack[-1] if stack else None


def _layers(model: keras.Model):
  return model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access


def mode_of(model: keras.Model) -> str:
  """The batch-norm mode of the model's normalisation layers ("none" without any; modes
  joined by "+" when they differ), as runs and exports record it."""
  modes = sorted({layer.batch_norm_mode for layer in _layers(model)
                  if getattr(layer, "batch_norm_mode", None)})
  return "+".join(modes) if modes else "none"


def uses_support_statistics(model: keras.Model) -> bool:
  """Whether any layer of ``model`` takes its statistics from the support set."""
  return any(getattr(layer, "uses_support_statistics", False) for layer in _layers(model))
