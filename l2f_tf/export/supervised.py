"""The supervised export, its writer and its loader: a SavedModel that adapts a trained learner
(theta, the attenuator, the inner learning rates) to a new task and predicts, with the training
gin config in ``assets.extra/`` so that an evaluation can rebuild the task distribution.

Signatures: ``adapt_and_predict`` (= ``serving_default``; support_x [K, ...], support_y [K, ...],
query_x [Q, ...] -> predictions after the ``num_steps`` inner steps fixed at export) and
``adapt_and_predict_steps`` (plus an int32 ``num_steps`` -> [num_steps + 1, Q, ...], the
predictions after 0..num_steps steps, up to ``max_steps``: the whole adaptation curve, beyond
the training steps too), each also ``_batch`` with a leading task axis. The graph checks its
inputs for any consumer (``tf.saved_model.load``, TF Serving, :class:`LoadedLearner`).
"""

import functools
import sys
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from l2f_tf.export.checks import after, all_equal, assert_that, checked_input
from l2f_tf.export.saved_model import ExportModule, LoadedModel, save

# name: (batched: a leading task axis, steps: an int32 input num_steps -> after 0..num_steps).
SIGNATURES = {"adapt_and_predict": (False, False), "adapt_and_predict_batch": (True, False),
              "adapt_and_predict_steps": (False, True),
              "adapt_and_predict_steps_batch": (True, True)}
_HOW_TO_EXPORT_MORE = ("export it again with more (run_experiment.export_max_steps, or "
                       "l2f_tf.export.export(max_steps=...))")


class AdaptAndPredict(ExportModule):
  """The tf.Module that is saved: variables of the learner plus the adaptation graph."""

  def __init__(self, learner, input_signature, num_steps: int, max_steps: int,
               preprocess=None, description: str = "",
               input_range: Optional[Tuple[float, float]] = None):
    super().__init__("adapt_and_predict", learner, num_steps, description)
    check_max_steps(max_steps, num_steps)
    self.max_steps = tf.Variable(max_steps, trainable=False, name="max_steps")
    num_classes = learner.num_outputs if input_signature[1].dtype.is_integer else 0
    self.num_classes = tf.Variable(num_classes, trainable=False, name="num_classes")
    # Set once the input-range warning has been printed (once per loaded model).
    self.input_range_warned = tf.Variable(False, trainable=False, name="input_range_warned")
    # Likewise for the warning about few queries under transductive batch norm.
    self.few_queries_warned = tf.Variable(False, trainable=False, name="few_queries_warned")
    self._transductive = "transductive" in learner.batch_norm
    self._num_classes, self._max_steps = num_classes, max_steps
    self._input_range, self._preprocess = input_range, preprocess or (lambda x: x)
    self._specs = (list(input_signature),  # Indexed by batched.
                   [tf.TensorSpec([None, *s.shape], s.dtype, name=s.name) for s in input_signature])
    count = [tf.TensorSpec([], tf.int32, name="num_steps")]
    for name, (batched, steps) in SIGNATURES.items():
      setattr(self, name, tf.function(functools.partial(self._predict, batched=batched),
                                      input_signature=list(self._specs[batched]) + count * steps))

  def _checked(self, inputs, batched: bool):
    """The inputs with their checks attached (docs/exported_models.md lists them)."""
    support_x, support_y, query_x = (checked_input(t, s)
                                     for t, s in zip(inputs, self._specs[batched]))
    examples = 1 if batched else 0  # The axis of the examples.
    sx, sy, qx = tf.shape(support_x), tf.shape(support_y), tf.shape(query_x)
    agree = tf.equal(sx[examples], sy[examples])
    if batched:
      agree = tf.logical_and(agree, all_equal(sx[0], sy[0], qx[0]))
    checks = [
        assert_that(agree, "support_x and support_y must have the same number of examples (and, "
                    "batched, the same number of tasks as query_x); got support_x {} support_y "
                    "{} query_x {}", sx, sy, qx),
        assert_that(sx[examples] > 0, "The support set is empty: support_x needs at least one "
                    "example per task; got support_x {}", sx)]
    if support_y.dtype.is_integer:
      low, high = tf.reduce_min(support_y), tf.reduce_max(support_y)
      checks.append(assert_that(
          tf.logical_and(low >= 0, high < self._num_classes),
          f"support_y labels must be in 0..{self._num_classes - 1}; got values from {{}} to {{}}",
          low, high))
    if self._input_range is not None:
      checks.append(self._warn_outside_range(support_x, query_x))
    if self._transductive and self._num_classes:
      checks.append(self._warn_few_queries(qx[examples]))
    return after(checks, [support_x, support_y, query_x])

  def _warn_once(self, condition, flag: tf.Variable, message):
    """Prints ``message`` (a string tensor) to stderr the first time ``condition`` holds."""

    def warn():
      tf.print(message, output_stream=sys.stderr)
      flag.assign(True)
      return tf.constant(True)

    return tf.cond(tf.logical_and(condition, tf.logical_not(flag)), warn,
                   lambda: tf.constant(False))

  def _warn_few_queries(self, num_queries):
    """Transductive batch norm normalises the queries with their own statistics: a call with
    fewer queries than classes is far from the evaluated setting (printed once)."""
    message = tf.strings.format(
        "WARNING: this SavedModel uses transductive batch norm (the query batch's own "
        "statistics), so each prediction depends on the other queries of the call; it was "
        f"evaluated on batches of queries from every class, and this call has {{}} queries for "
        f"{self._num_classes} classes. Predict queries together, or train with "
        "BatchNorm.mode = 'support' (or 'task_norm_i') for predictions independent of the "
        "batch. (Printed once.)", num_queries)
    return self._warn_once(num_queries < self._num_classes, self.few_queries_warned, message)

  def _warn_outside_range(self, support_x, query_x):
    """Prints a warning to stderr, once, when the inputs look outside the expected range (e.g.
    images already scaled to [0, 1] or normalised, for a model that expects [0, 255])."""
    lo, hi = self._input_range
    low = tf.cast(tf.minimum(tf.reduce_min(support_x), tf.reduce_min(query_x)), tf.float32)
    high = tf.cast(tf.maximum(tf.reduce_max(support_x), tf.reduce_max(query_x)), tf.float32)
    suspicious = tf.logical_or(low < lo, high > hi)
    if hi > 1.0:
      suspicious = tf.logical_or(suspicious, high <= 1.0)

    return self._warn_once(suspicious, self.input_range_warned, tf.strings.format(
        f"WARNING: this SavedModel expects support_x and query_x with values in [{lo:g}, "
        f"{hi:g}] (raw values such as pixels; it preprocesses them inside, as in training), "
        "but they hold values in [{}, {}]: images already scaled to [0, 1] or normalised "
        "give wrong predictions. (Printed once.)", (low, high)))

  def _adapt(self, support_x, support_y, query_x, num_steps=None):
    """The query predictions after the exported number of steps; with ``num_steps``, those
    after 0..num_steps steps, [num_steps + 1, Q, ...] (one adaptation of ``max_steps`` gives
    every count: iterate k does not depend on the later steps)."""
    support_x, query_x = self._preprocess(support_x), self._preprocess(query_x)
    if num_steps is None:
      adaptation = self._learner.adapt(support_x, support_y, num_steps=self._steps)
      return self._learner.forward(adaptation.fast_weights, query_x, support_x=support_x)
    adaptation = self._learner.adapt(support_x, support_y, num_steps=self._max_steps)
    return tf.stack([self._learner.forward(params, query_x, support_x=support_x)
                     for params in adaptation.iterates])[:num_steps + 1]

  def _predict(self, support_x, support_y, query_x, num_steps=None, *, batched: bool):
    """{"predictions"} of :meth:`_adapt` on the checked inputs, task by task when batched."""
    if num_steps is not None:
      num_steps = after([assert_that(
          tf.logical_and(num_steps >= 0, num_steps <= self._max_steps),
          f"num_steps must be in 0..{self._max_steps}: this SavedModel was exported with "
          f"max_steps={self._max_steps}; {_HOW_TO_EXPORT_MORE}. Got {{}}", num_steps)],
          [num_steps])[0]
    inputs = self._checked([support_x, support_y, query_x], batched)
    adapt = lambda task: self._adapt(*task, num_steps)
    if batched:
      return {"predictions": tf.map_fn(adapt, inputs, fn_output_signature=self._learner.dtype)}
    return {"predictions": adapt(inputs)}


def _is_count(value, low: int, high=np.inf) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and \
      low <= value <= high


def check_max_steps(max_steps, num_steps: Optional[int] = None) -> None:
  """Raises ValueError (naming the setting) unless ``max_steps`` is an int >= ``num_steps``."""
  if not _is_count(max_steps, max(num_steps or 0, 0)):
    raise ValueError(f"max_steps (run_experiment.export_max_steps) must be an integer >= the "
                     f"exported number of inner steps ({num_steps}), got {max_steps!r}.")


def export(learner, path: str, input_signature, num_steps: Optional[int] = None,
           config_path: Optional[str] = None, preprocess=None, description: str = "",
           input_range: Optional[Tuple[float, float]] = None,
           max_steps: Optional[int] = None) -> str:
  """Writes the SavedModel of ``learner`` to ``path`` (replacing it) and returns ``path``.

  ``input_signature``: TensorSpecs of one task's (support_x, support_y, query_x);
  ``num_steps``: default, the training setting; ``config_path``: the run's gin config, copied
  into assets.extra/; ``preprocess``: applied to support_x and query_x inside the graph, so that
  users feed raw inputs; ``description``: what the model expects, quoted by the loader's
  errors; ``input_range``: (low, high) of the raw inputs, or None (inputs outside it, or all in
  [0, 1] when high > 1, get a warning on stderr, once per loaded model); ``max_steps``: the
  most steps ``adapt_and_predict_steps`` runs (each call runs them all), default
  max(2 * num_steps, 10)."""
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  max_steps = max(2 * num_steps, 10) if max_steps is None else max_steps
  module = AdaptAndPredict(learner, input_signature, num_steps, max_steps, preprocess,
                           description, input_range)
  return save(module, path, {"serving_default": module.adapt_and_predict,
                             **{name: getattr(module, name) for name in SIGNATURES}}, config_path)


def export_for_domain(learner, domain, path: str, num_steps: Optional[int] = None,
                      config_path: Optional[str] = None, max_steps: Optional[int] = None) -> str:
  """:func:`export` with the signature, preprocessing, description and input range of a
  supervised domain (what a run exports)."""
  return export(learner, path, domain.export_signature(), num_steps, config_path=config_path,
                preprocess=domain.export_preprocess, description=domain.export_description(),
                input_range=domain.export_input_range(), max_steps=max_steps)


class LoadedLearner(LoadedModel):
  """A loaded supervised export (made by ``l2f_tf.export.load``) with checked inputs:
  ``predict`` (one task) and ``predict_batch``, after the exported ``num_steps``;
  ``predict_steps`` and ``predict_steps_batch``, after every count 0..num_steps (up to
  ``max_steps``); ``num_classes`` (0: regression), ``description``, ``config_path``."""

  INPUTS = ("support_x", "support_y", "query_x")

  def __init__(self, path: str, module):
    super().__init__(path, module)
    self.num_classes = int(module.num_classes.numpy())  # 0: regression
    self.max_steps = int(module.max_steps.numpy())

  def check_num_steps(self, num_steps) -> int:
    """``num_steps`` (None: the exported ``num_steps``) checked against this SavedModel."""
    num_steps = self.num_steps if num_steps is None else num_steps
    if not _is_count(num_steps, 0, self.max_steps):
      raise ValueError(f"num_steps must be an integer in 0..{self.max_steps} (this SavedModel "
                       f"was exported with max_steps={self.max_steps}), got {num_steps!r}; "
                       f"{_HOW_TO_EXPORT_MORE}.")
    return int(num_steps)

  def _predict(self, signature: str, values, *num_steps) -> np.ndarray:
    count = {"num_steps": tf.constant(self.check_num_steps(*num_steps))} if num_steps else {}
    return self._call(signature, self.INPUTS, values, **count)["predictions"]

  def predict(self, support_x, support_y, query_x) -> np.ndarray:
    """Adapts to one task and returns predictions for query_x."""
    return self._predict("adapt_and_predict", (support_x, support_y, query_x))

  def predict_batch(self, support_x, support_y, query_x) -> np.ndarray:
    """The same for a batch of tasks (leading task axis)."""
    return self._predict("adapt_and_predict_batch", (support_x, support_y, query_x))

  def predict_steps(self, support_x, support_y, query_x,
                    num_steps: Optional[int] = None) -> np.ndarray:
    """Adapts to one task and returns [num_steps + 1, Q, ...]: the query predictions after 0,
    1, ..., num_steps inner steps (default: the exported ``num_steps``; at most
    ``max_steps``)."""
    return self._predict("adapt_and_predict_steps", (support_x, support_y, query_x), num_steps)

  def predict_steps_batch(self, support_x, support_y, query_x,
                          num_steps: Optional[int] = None) -> np.ndarray:
    """The same for a batch of tasks (leading task axis): [T, num_steps + 1, Q, ...]."""
    return self._predict("adapt_and_predict_steps_batch", (support_x, support_y, query_x),
                         num_steps)

  def classify(self, support_dir, queries, batch_size: int = 100) -> list:
    """[{"path", "class", "probability"}] for each query image (a path, or a list of image
    files and folders of images), adapted to the support set of ``support_dir`` (a folder of
    N class folders of K images each), for an N-way K-shot image classifier: see
    :func:`l2f_tf.export.image_folders.classify` (the same as ``python -m l2f_tf.predict``)."""
    # Imported on first use: loading a SavedModel needs neither it nor Pillow's plugins.
    from l2f_tf.export import image_folders  # pylint: disable=import-outside-toplevel
    return image_folders.classify(self, support_dir, queries, batch_size)
