"""Input checks inside an exported graph, shared by both kinds of export, and the text a loader
makes of their errors (listed in docs/exported_models.md)."""

import re

import tensorflow as tf


def checked_input(x: tf.Tensor, spec: tf.TensorSpec) -> tf.Tensor:
  """``x`` with its shape checked at run time against the signature's ``spec`` (which a call
  through ``signatures[...]`` does not enforce) and, for floats, its values finite."""
  x = tf.ensure_shape(x, spec.shape, name=f"check_{spec.name}_shape")
  if x.dtype.is_floating:
    x = tf.debugging.assert_all_finite(x, f"{spec.name} has NaN or infinite values")
  return x


def assert_that(condition: tf.Tensor, message: str, *values: tf.Tensor):
  """An op that raises InvalidArgumentError with ``message``, its ``{}`` filled with ``values``,
  when ``condition`` is False."""
  return tf.debugging.Assert(condition, [tf.strings.format(message, values, summarize=-1)])


def all_equal(*values) -> tf.Tensor:
  return tf.reduce_all(tf.stack([tf.equal(values[0], v) for v in values[1:]]))


def after(checks, tensors):
  """``tensors`` (identities) that are computed only after the ``checks`` ops ran, so that a
  failed check, not a later op on the bad input, raises."""
  with tf.control_dependencies(checks):
    return [tf.identity(t) for t in tensors]


def graph_error_text(message: str) -> str:
  """The line of a graph's InvalidArgumentError that says what is wrong, without TF's
  boilerplate (node names, "Graph execution error", "assertion failed: [...]")."""
  boilerplate = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
  lines = [line.strip() for line in message.splitlines()]
  lines = [line for line in lines if line and not line.startswith(boilerplate)]
  text = re.sub(r"\s*\[Op:[^\]]*\]$", "", lines[-1] if lines else message.strip())
  if not text.startswith("assertion failed: "):
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
