"""Input checks inside an exported graph, shared by both kinds of export, and the text a loader
makes of their errors. The checks and their messages are listed in docs/exported_models.md."""

import re
from typing import Dict

import tensorflow as tf


def checked_input(x: tf.Tensor, shape, name: str) -> tf.Tensor:
  """``x`` with its shape checked at run time against ``shape`` (the signature's, which a call
  through ``signatures[...]`` does not enforce) and, for floats, its values finite."""
  x = tf.ensure_shape(x, shape, name=f"check_{name}_shape")
  if x.dtype.is_floating:
    x = tf.debugging.assert_all_finite(x, f"{name} has NaN or infinite values")
  return x


def assert_that(condition: tf.Tensor, message: str, shapes: Dict[str, tf.Tensor]):
  """Raises InvalidArgumentError with ``message`` and the named shapes when the condition is
  False (``shapes``: name -> the tensor whose shape the message quotes)."""
  data = [message + "; got"]
  for name, tensor in shapes.items():
    data += [name, tf.shape(tensor)]
  return tf.debugging.Assert(condition, data)


def all_equal(*values) -> tf.Tensor:
  return tf.reduce_all(tf.stack([tf.equal(values[0], v) for v in values[1:]]))


def after(checks, tensors):
  """``tensors`` (identities) that are computed only after the ``checks`` ops ran, so that a
  failed check, not a later op on the bad input, raises."""
  with tf.control_dependencies(checks):
    return [tf.identity(t) for t in tensors]


def graph_error_text(message: str) -> str:
  """The line of a graph's InvalidArgumentError that says what is wrong, without TF's
  boilerplate (node names, "Graph execution error", "assertion failed")."""
  boilerplate = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
  lines = [line.strip() for line in message.splitlines()]
  lines = [line for line in lines if line and not line.startswith(boilerplate)]
  text = lines[-1] if lines else message.strip()
  text = re.sub(r"\s*\[Op:[^\]]*\]$", "", text)
  prefix = "assertion failed: "
  if not text.startswith(prefix):
    return text.rstrip(".")
  # Assert's data, each in brackets ("[a message] [name] [3 5 2]"): unbracket the strings, keep
  # the brackets of the values.
  items, depth, first = [], 0, 0
  for i, char in enumerate(text):
    if char == "[":
      first = i if depth == 0 else first
      depth += 1
    elif char == "]":
      depth -= 1
      if depth == 0:
        items.append(text[first:i + 1])
  return " ".join(item[1:-1] if re.search("[A-Za-z]", item) else item for item in items)
