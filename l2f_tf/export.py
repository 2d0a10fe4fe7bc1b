"""Export of a trained learner as a SavedModel that adapts to new tasks, and its loader.

The SavedModel holds theta, the attenuator and the inner learning rates, and two signatures:
  * ``serving_default`` / ``adapt_and_predict``: one task; (support_x [K, ...], support_y
    [K, ...], query_x [Q, ...]) -> predictions for query_x after attenuation (L2F) and the
    inner loop, with the number of inner steps fixed at export;
  * ``adapt_and_predict_batch``: the same with a leading task axis.
The training gin config is stored in ``assets.extra/operative_config.gin`` so that an
evaluation can rebuild the task distribution. :func:`load` wraps the SavedModel with input
checks that name the expected shapes.
"""

import os
import shutil
from typing import Optional

import numpy as np
import tensorflow as tf

from l2f_tf.run_folder import CONFIG_NAME


class AdaptAndPredict(tf.Module):
  """The tf.Module that is saved: variables of the learner plus the adaptation graph."""

  def __init__(self, learner, input_signature, num_steps: int, preprocess=None,
               description: str = ""):
    super().__init__(name="adapt_and_predict")
    self.description = tf.Variable(description, trainable=False, name="description")
    # Tracked so that the SavedModel holds every variable the functions read.
    self.model = learner.model
    self.inner_lrs = learner.inner_lrs
    if learner.attenuation is not None:
      self.attenuation = learner.attenuation
    self.num_steps = tf.Variable(num_steps, trainable=False, name="num_steps")
    classification = input_signature[1].dtype.is_integer
    self.num_classes = tf.Variable(int(learner.model.output_shape[-1]) if classification else 0,
                                   trainable=False, name="num_classes")
    self._learner = learner
    self._steps = num_steps
    self._preprocess = preprocess or (lambda x: x)
    self.adapt_and_predict = tf.function(self._single, input_signature=input_signature)
    batched = [tf.TensorSpec([None, *s.shape], s.dtype, name=s.name) for s in input_signature]
    self.adapt_and_predict_batch = tf.function(self._batch, input_signature=batched)

  def _single(self, support_x, support_y, query_x):
    tf.debugging.assert_equal(
        tf.shape(support_x)[0], tf.shape(support_y)[0],
        message="support_x and support_y must have the same number of examples")
    if support_y.dtype.is_integer:
      num_classes = self._learner.model.output_shape[-1]
      tf.debugging.assert_less(support_y, tf.cast(num_classes, support_y.dtype),
                               message=f"support_y labels must be in 0..{num_classes - 1}")
      tf.debugging.assert_non_negative(support_y, message="support_y labels must be >= 0")
    support_x, query_x = self._preprocess(support_x), self._preprocess(query_x)
    adaptation = self._learner.adapt(support_x, support_y, num_steps=self._steps)
    return {"predictions": self._learner.forward(adaptation.fast_weights, query_x)}

  def _batch(self, support_x, support_y, query_x):
    dtype = self._learner.dtype
    return tf.map_fn(lambda t: self._single(*t), (support_x, support_y, query_x),
                     fn_output_signature={"predictions": dtype})


def export(learner, path: str, input_signature, num_steps: Optional[int] = None,
           config_path: Optional[str] = None, preprocess=None, description: str = "") -> str:
  """Writes the SavedModel to ``path`` (replacing it) and returns ``path``.

  Args:
    learner: the trained MetaLearner.
    path: output directory.
    input_signature: TensorSpecs of (support_x, support_y, query_x) of one task.
    num_steps: inner steps of the exported adaptation (default: the training setting).
    config_path: the run's operative_config.gin, copied into assets.extra/.
    preprocess: applied to support_x and query_x inside the SavedModel (e.g. pixel values ->
      normalised images), so that users feed raw inputs.
    description: what the model expects, in words; quoted by the loader's error messages.
  """
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  module = AdaptAndPredict(learner, input_signature, num_steps, preprocess, description)
  return save(module, path, {"serving_default": module.adapt_and_predict,
                             "adapt_and_predict": module.adapt_and_predict,
                             "adapt_and_predict_batch": module.adapt_and_predict_batch},
              config_path)


def save(module: tf.Module, path: str, signatures, config_path: Optional[str] = None) -> str:
  """Saves ``module`` to ``path`` (replacing it), with the run's gin config in assets.extra/."""
  if os.path.exists(path):
    shutil.rmtree(path)
  tf.saved_model.save(module, path, signatures=signatures)
  if config_path and os.path.exists(config_path):
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    shutil.copy(config_path, os.path.join(path, "assets.extra", CONFIG_NAME))
  return path


def _describe(spec) -> str:
  dims = ", ".join("?" if d is None else str(d) for d in spec.shape)
  return f"{spec.name} [{dims}] {spec.dtype.name}"


class LoadedLearner:
  """A loaded SavedModel with checked inputs: ``predict`` (one task), ``predict_batch``."""

  def __init__(self, path: str):
    if not os.path.isdir(path):
      raise ValueError(f"No SavedModel directory at {path}: pass the run's saved_model/ folder.")
    self.path = path
    self._module = tf.saved_model.load(path)
    self.num_steps = int(self._module.num_steps.numpy())
    self.num_classes = int(self._module.num_classes.numpy())  # 0: regression
    description = getattr(self._module, "description", None)
    self.description = description.numpy().decode() if description is not None else ""
    self._single = self._module.signatures["adapt_and_predict"]
    self._batch = self._module.signatures["adapt_and_predict_batch"]

  @property
  def config_path(self) -> str:
    return os.path.join(self.path, "assets.extra", CONFIG_NAME)

  def _call(self, fn, args, batched: bool):
    specs = fn.structured_input_signature[1]
    names = ["support_x", "support_y", "query_x"]
    inputs = {}
    for name, value in zip(names, args):
      spec = specs[name]
      value = np.asarray(value)
      if value.ndim != len(spec.shape) or not spec.shape.is_compatible_with(value.shape):
        expected = "; ".join(_describe(specs[n]) for n in names)
        raise ValueError(f"{name} has shape {list(value.shape)}, but this SavedModel expects "
                         f"{_describe(spec)} (all inputs: {expected}).{self._about()}")
      if spec.dtype.is_integer and not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {value.dtype}."
                         f"{self._about()}")
      if name == "support_y" and self.num_classes and value.size and (
          value.min() < 0 or value.max() >= self.num_classes):
        raise ValueError(f"support_y labels must be in 0..{self.num_classes - 1}, got values "
                         f"from {value.min()} to {value.max()}.{self._about()}")
      inputs[name] = tf.convert_to_tensor(value, spec.dtype)
    sx, sy, qx = (inputs[n].shape for n in names)
    leading = 2 if batched else 1  # [T, K] or [K]
    if sx[:leading] != sy[:leading] or (batched and sx[0] != qx[0]):
      raise ValueError("support_x and support_y must have the same number of examples (and, "
                       "batched, of tasks as query_x); got shapes "
                       f"{list(sx)}, {list(sy)} and {list(qx)}.")
    try:
      return fn(**inputs)["predictions"].numpy()
    except tf.errors.InvalidArgumentError as error:
      raise ValueError(f"Bad input for this SavedModel: {error.message.splitlines()[0]}."
                       f"{self._about()}") from None

  def _about(self) -> str:
    return f" It was exported for: {self.description}." if self.description else ""

  def predict(self, support_x, support_y, query_x) -> np.ndarray:
    """Adapts to one task and returns predictions for query_x."""
    return self._call(self._single, (support_x, support_y, query_x), batched=False)

  def predict_batch(self, support_x, support_y, query_x) -> np.ndarray:
    """The same for a batch of tasks (leading task axis)."""
    return self._call(self._batch, (support_x, support_y, query_x), batched=True)


def load(path: str) -> LoadedLearner:
  return LoadedLearner(path)
