"""Export of a trained learner as a SavedModel that adapts to new tasks, and its loader.

The SavedModel holds theta, the attenuator and the inner learning rates, and four signatures:
  * ``serving_default`` / ``adapt_and_predict``: one task; (support_x [K, ...], support_y
    [K, ...], query_x [Q, ...]) -> predictions for query_x after attenuation (L2F) and the
    inner loop, with the number of inner steps fixed at export (``num_steps``);
  * ``adapt_and_predict_batch``: the same with a leading task axis;
  * ``adapt_and_predict_steps``: the same inputs plus an int32 scalar ``num_steps`` ->
    predictions [num_steps + 1, Q, ...], the query predictions after 0, 1, ..., num_steps inner
    steps (any count up to ``max_steps``, fixed at export), so that an evaluation reports the
    whole adaptation curve, beyond the training number of steps too;
  * ``adapt_and_predict_steps_batch``: the same with a leading task axis ([T, num_steps + 1,
    Q, ...]).
The training gin config is stored in ``assets.extra/operative_config.gin`` so that an
evaluation can rebuild the task distribution.

The graph checks its inputs, so the checks hold for any consumer (``tf.saved_model.load``,
TF Serving, :func:`load`): each input's shape against the signature, NaN or infinite values,
an empty support set, the support_x / support_y (and, batched, query_x) sizes agreeing,
class labels in range, and for image domains pixel values outside the expected range (a
warning printed once to stderr). :func:`load` (supervised and meta-RL exports) also checks
shapes and dtypes in Python before calling, and turns the graph's errors into a ValueError.
The checks and their messages are listed in docs/exported_models.md.
"""

import contextlib
import contextvars
import os
import re
import shutil
import sys
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from l2f_tf.run_folder import CONFIG_NAME, RunFolder


# --- checks inside the exported graph (also used by l2f_tf.rl.export) ----------------------------
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


class AdaptAndPredict(tf.Module):
  """The tf.Module that is saved: variables of the learner plus the adaptation graph."""

  def __init__(self, learner, input_signature, num_steps: int, preprocess=None,
               description: str = "", input_range: Optional[Tuple[float, float]] = None,
               max_steps: Optional[int] = None):
    super().__init__(name="adapt_and_predict")
    max_steps = default_max_steps(num_steps) if max_steps is None else max_steps
    check_max_steps(max_steps, num_steps)
    self.description = tf.Variable(description, trainable=False, name="description")
    # Tracked so that the SavedModel holds every variable the functions read.
    self.model = learner.model
    self.inner_lrs = learner.inner_lrs
    if learner.attenuation is not None:
      self.attenuation = learner.attenuation
    self.num_steps = tf.Variable(num_steps, trainable=False, name="num_steps")
    self.max_steps = tf.Variable(max_steps, trainable=False, name="max_steps")
    classification = input_signature[1].dtype.is_integer
    num_classes = getattr(learner, "num_classes", None)  # LEO's; else the model's output.
    if classification and num_classes is None:
      num_classes = learner.model.output_shape[-1]
    self._num_classes = int(num_classes) if classification else 0
    self.num_classes = tf.Variable(self._num_classes, trainable=False, name="num_classes")
    # Set once the input-range warning has been printed (once per loaded model).
    self.input_range_warned = tf.Variable(False, trainable=False, name="input_range_warned")
    self._input_range = input_range
    self._learner = learner
    self._steps, self._max_steps = num_steps, max_steps
    self._preprocess = preprocess or (lambda x: x)
    self._specs = list(input_signature)
    self.adapt_and_predict = tf.function(self._single, input_signature=self._specs)
    self._batched_specs = [tf.TensorSpec([None, *s.shape], s.dtype, name=s.name)
                           for s in input_signature]
    self.adapt_and_predict_batch = tf.function(self._batch, input_signature=self._batched_specs)
    count = tf.TensorSpec([], tf.int32, name="num_steps")
    self.adapt_and_predict_steps = tf.function(self._steps_single,
                                               input_signature=[*self._specs, count])
    self.adapt_and_predict_steps_batch = tf.function(
        self._steps_batch, input_signature=[*self._batched_specs, count])

  def _checked(self, support_x, support_y, query_x, batched: bool):
    """The inputs with every check of the module docstring attached."""
    specs = self._batched_specs if batched else self._specs
    support_x, support_y, query_x = (checked_input(t, s.shape, s.name) for t, s in
                                     zip((support_x, support_y, query_x), specs))
    shapes = {"support_x": support_x, "support_y": support_y, "query_x": query_x}
    examples = 1 if batched else 0  # The axis of the examples.
    sx, sy, qx = tf.shape(support_x), tf.shape(support_y), tf.shape(query_x)
    agree = tf.equal(sx[examples], sy[examples])
    if batched:
      agree = tf.logical_and(agree, all_equal(sx[0], sy[0], qx[0]))
    checks = [
        assert_that(agree, "support_x and support_y must have the same number of examples "
                    "(and, batched, the same number of tasks as query_x)", shapes),
        assert_that(sx[examples] > 0, "The support set is empty: support_x needs at least one "
                    "example per task", {"support_x": support_x})]
    if support_y.dtype.is_integer:
      low, high = tf.reduce_min(support_y), tf.reduce_max(support_y)
      checks.append(tf.debugging.Assert(
          tf.logical_and(low >= 0, high < self._num_classes),
          [f"support_y labels must be in 0..{self._num_classes - 1}; got values from", low,
           "to", high]))
    if self._input_range is not None:
      checks.append(self._warn_outside_range(support_x, query_x))
    return after(checks, [support_x, support_y, query_x])

  def _warn_outside_range(self, support_x, query_x):
    """Prints a warning to stderr, once, when the inputs look outside the expected range (e.g.
    images already scaled to [0, 1] or normalised, for a model that expects [0, 255])."""
    lo, hi = self._input_range
    low = tf.cast(tf.minimum(tf.reduce_min(support_x), tf.reduce_min(query_x)), tf.float32)
    high = tf.cast(tf.maximum(tf.reduce_max(support_x), tf.reduce_max(query_x)), tf.float32)
    suspicious = tf.logical_or(low < lo, high > hi)
    if hi > 1.0:
      suspicious = tf.logical_or(suspicious, high <= 1.0)

    def warn():
      tf.print(tf.strings.format(
          f"WARNING: this SavedModel expects support_x and query_x with values in [{lo:g}, "
          f"{hi:g}] (raw values such as pixels; it preprocesses them inside, as in training), "
          "but they hold values in [{}, {}]: images already scaled to [0, 1] or normalised "
          "give wrong predictions. (Printed once.)", (low, high)), output_stream=sys.stderr)
      self.input_range_warned.assign(True)
      return tf.constant(True)

    return tf.cond(tf.logical_and(suspicious, tf.logical_not(self.input_range_warned)), warn,
                   lambda: tf.constant(False))

  def _adapt(self, support_x, support_y, query_x):
    support_x, query_x = self._preprocess(support_x), self._preprocess(query_x)
    adaptation = self._learner.adapt(support_x, support_y, num_steps=self._steps)
    return self._learner.forward(adaptation.fast_weights, query_x)

  def _adapt_steps(self, support_x, support_y, query_x):
    """[max_steps + 1, Q, ...]: the query predictions after 0..max_steps inner steps (iterate k
    does not depend on the later steps, so one adaptation gives every count)."""
    support_x, query_x = self._preprocess(support_x), self._preprocess(query_x)
    adaptation = self._learner.adapt(support_x, support_y, num_steps=self._max_steps)
    return tf.stack([self._learner.forward(params, query_x) for params in adaptation.iterates])

  def _checked_count(self, num_steps):
    """``num_steps`` once checked to be in 0..max_steps (an error naming how to export more)."""
    message = (f"num_steps must be in 0..{self._max_steps}: this SavedModel was exported with "
               f"max_steps={self._max_steps}; export it again with more "
               "(run_experiment.export_max_steps, or l2f_tf.export.export(max_steps=...)). Got")
    check = tf.debugging.Assert(
        tf.logical_and(num_steps >= 0, num_steps <= self._max_steps), [message, num_steps])
    return after([check], [num_steps])[0]

  def _single(self, support_x, support_y, query_x):
    return {"predictions": self._adapt(*self._checked(support_x, support_y, query_x, False))}

  def _batch(self, support_x, support_y, query_x):
    tasks = self._checked(support_x, support_y, query_x, True)
    return {"predictions": tf.map_fn(lambda t: self._adapt(*t), tasks,
                                     fn_output_signature=self._learner.dtype)}

  def _steps_single(self, support_x, support_y, query_x, num_steps):
    num_steps = self._checked_count(num_steps)
    predictions = self._adapt_steps(*self._checked(support_x, support_y, query_x, False))
    return {"predictions": predictions[:num_steps + 1]}

  def _steps_batch(self, support_x, support_y, query_x, num_steps):
    num_steps = self._checked_count(num_steps)
    tasks = self._checked(support_x, support_y, query_x, True)
    predictions = tf.map_fn(lambda t: self._adapt_steps(*t), tasks,
                            fn_output_signature=self._learner.dtype)
    return {"predictions": predictions[:, :num_steps + 1]}


# The max_steps an export uses when its caller passes none (see :func:`max_steps_default`).
_MAX_STEPS_DEFAULT: contextvars.ContextVar = contextvars.ContextVar("max_steps", default=None)


def default_max_steps(num_steps: int) -> int:
  """The ``max_steps`` of an export that names none: the value set by
  :func:`max_steps_default` around the call (the Runner sets ``run_experiment.export_max_steps``
  there), else max(2 * num_steps, 10)."""
  value = _MAX_STEPS_DEFAULT.get()
  return max(2 * num_steps, 10) if value is None else value


@contextlib.contextmanager
def max_steps_default(max_steps: Optional[int]):
  """Within the block, exports that pass no ``max_steps`` use this one (None: the built-in
  default). How the Runner hands ``run_experiment.export_max_steps`` to a trainer's ``export``
  without changing the trainer's ``export(path, num_steps, config_path)`` interface."""
  token = _MAX_STEPS_DEFAULT.set(max_steps)
  try:
    yield
  finally:
    _MAX_STEPS_DEFAULT.reset(token)


def check_max_steps(max_steps, num_steps: Optional[int] = None) -> None:
  """Raises ValueError (naming the setting) unless ``max_steps`` is an int >= ``num_steps``."""
  if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or \
      max_steps < max(num_steps or 0, 0):
    raise ValueError(f"max_steps (run_experiment.export_max_steps) must be an integer >= the "
                     f"exported number of inner steps ({num_steps}), got {max_steps!r}.")


def export(learner, path: str, input_signature, num_steps: Optional[int] = None,
           config_path: Optional[str] = None, preprocess=None, description: str = "",
           input_range: Optional[Tuple[float, float]] = None,
           max_steps: Optional[int] = None) -> str:
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
    input_range: (low, high) of the support_x / query_x values the SavedModel expects (e.g.
      (0, 255) for pixel values), or None. Inputs outside it, or all in [0, 1] when high > 1,
      get a warning on stderr, printed once per loaded model.
    max_steps: the most inner steps ``adapt_and_predict_steps`` can run (each call computes
      them all, then returns the first ``num_steps + 1`` predictions). Default: the value of
      an enclosing :func:`max_steps_default`, else max(2 * num_steps, 10).
  """
  num_steps = learner.num_inner_steps if num_steps is None else num_steps
  module = AdaptAndPredict(learner, input_signature, num_steps, preprocess, description,
                           input_range, max_steps)
  return save(module, path, {"serving_default": module.adapt_and_predict,
                             "adapt_and_predict": module.adapt_and_predict,
                             "adapt_and_predict_batch": module.adapt_and_predict_batch,
                             "adapt_and_predict_steps": module.adapt_and_predict_steps,
                             "adapt_and_predict_steps_batch":
                                 module.adapt_and_predict_steps_batch},
              config_path)


def export_for_domain(learner, domain, path: str, num_steps: Optional[int] = None,
                      config_path: Optional[str] = None, max_steps: Optional[int] = None) -> str:
  """:func:`export` with the signature, preprocessing, description and input range of a
  supervised domain (what a run exports)."""
  return export(learner, path, domain.export_signature(), num_steps, config_path=config_path,
                preprocess=domain.export_preprocess, description=domain.export_description(),
                input_range=domain.export_input_range(), max_steps=max_steps)


def save(module: tf.Module, path: str, signatures, config_path: Optional[str] = None) -> str:
  """Saves ``module`` to ``path`` (replacing it), with the run's gin config in assets.extra/."""
  if os.path.exists(path):
    shutil.rmtree(path)
  tf.saved_model.save(module, path, signatures=signatures)
  if config_path and os.path.exists(config_path):
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    shutil.copy(config_path, os.path.join(path, "assets.extra", CONFIG_NAME))
  return path


# --- loading -------------------------------------------------------------------------------------
def saved_model_dir(path: str) -> str:
  """The SavedModel directory of ``path``: ``path`` itself, or the saved_model/ of a run folder.

  Raises ValueError with one line naming what to do when there is none (a run that has not
  finished, a path that is neither a SavedModel nor a run folder)."""
  path = str(path)
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  folder = RunFolder(path)
  if os.path.isfile(os.path.join(folder.saved_model, "saved_model.pb")):
    return folder.saved_model
  parent = RunFolder(os.path.dirname(os.path.normpath(path)))
  if os.path.normpath(path) == os.path.normpath(parent.saved_model) and \
      os.path.exists(parent.config):
    folder = parent  # <run>/saved_model of a run that has not exported (yet).
  if os.path.exists(folder.config):
    trained = os.path.isdir(folder.checkpoints) and bool(os.listdir(folder.checkpoints))
    state = ("it stopped before exporting its model" if trained
             else "it has no checkpoint yet")
    raise ValueError(f"No SavedModel in the run folder {folder.root} (no saved_model/): {state} "
                     "(or it is still running). Run `python run_experiment.py "
                     f"--root_dir={folder.root}` to finish it (it resumes from its last "
                     f"checkpoint, with its {CONFIG_NAME}); it then writes {folder.saved_model}.")
  if not os.path.exists(path):
    raise ValueError(f"No SavedModel at {path}: it does not exist. Pass a run folder or its "
                     "saved_model/ directory.")
  raise ValueError(f"No SavedModel at {path}: it has no saved_model.pb and is not a run folder "
                   f"(no {CONFIG_NAME}). Pass a run folder or its saved_model/ directory.")


def _describe(name: str, spec) -> str:
  dims = ", ".join("?" if d is None else str(d) for d in spec.shape)
  return f"{name} [{dims}] {spec.dtype.name}"


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


class _LoadedModel:
  """What both kinds of loaded SavedModel share: the path, the stored description and config,
  and calls whose inputs are checked against the signature before the graph runs."""

  def __init__(self, path: str, module=None):
    self.path = saved_model_dir(path) if module is None else path
    self._module = module if module is not None else _load_module(self.path)
    self.num_steps = int(self._module.num_steps.numpy())
    description = getattr(self._module, "description", None)
    self.description = description.numpy().decode() if description is not None else ""

  @property
  def config_path(self) -> str:
    """The training run's operative_config.gin stored in the SavedModel (if it was)."""
    return os.path.join(self.path, "assets.extra", CONFIG_NAME)

  def _about(self) -> str:
    return f" It was exported for: {self.description}." if self.description else ""

  def _inputs(self, fn, names: Sequence[str], values) -> Dict[str, tf.Tensor]:
    """Tensors of ``values`` checked against the TensorSpecs of the signature ``fn``."""
    specs = fn.structured_input_signature[1]
    expected = lambda: "; ".join(_describe(n, specs[n]) for n in names)
    inputs = {}
    for name, value in zip(names, values):
      spec = specs[name]
      value = np.asarray(value)
      if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        raise ValueError(f"{name} has dtype {value.dtype}, but this SavedModel expects "
                         f"{_describe(name, spec)} (all inputs: {expected()}).{self._about()}")
      if value.ndim != len(spec.shape) or not spec.shape.is_compatible_with(value.shape):
        raise ValueError(f"{name} has shape {list(value.shape)}, but this SavedModel expects "
                         f"{_describe(name, spec)} (all inputs: {expected()}).{self._about()}")
      if spec.dtype.is_integer and not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {value.dtype}."
                         f"{self._about()}")
      inputs[name] = tf.convert_to_tensor(value, spec.dtype)
    return inputs

  def _run(self, fn, inputs: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    try:
      outputs = fn(**inputs)
    except tf.errors.InvalidArgumentError as error:
      raise ValueError(f"Bad input for this SavedModel: {graph_error_text(error.message)}."
                       f"{self._about()}") from None
    return {name: value.numpy() for name, value in outputs.items()}


class LoadedLearner(_LoadedModel):
  """A loaded supervised SavedModel with checked inputs: ``predict`` (one task) and
  ``predict_batch``, after the exported ``num_steps``; ``predict_steps`` and
  ``predict_steps_batch``, after every count 0..num_steps (up to ``max_steps``; None for a
  SavedModel exported before these signatures); ``num_classes`` (0: regression),
  ``description``, ``config_path``."""

  STEPS_SIGNATURES = ("adapt_and_predict_steps", "adapt_and_predict_steps_batch")

  def __init__(self, path: str, module=None):
    super().__init__(path, module)
    self.num_classes = int(self._module.num_classes.numpy())  # 0: regression
    self._single = self._module.signatures["adapt_and_predict"]
    self._batch = self._module.signatures["adapt_and_predict_batch"]
    signatures = self._module.signatures
    self.has_steps = all(name in signatures for name in self.STEPS_SIGNATURES)
    self._steps_single = signatures[self.STEPS_SIGNATURES[0]] if self.has_steps else None
    self._steps_batch = signatures[self.STEPS_SIGNATURES[1]] if self.has_steps else None
    max_steps = getattr(self._module, "max_steps", None)
    self.max_steps = int(max_steps.numpy()) if self.has_steps and max_steps is not None else None

  def _call(self, fn, args, batched: bool, num_steps: Optional[int] = None):
    names = ["support_x", "support_y", "query_x"]
    inputs = self._inputs(fn, names, args)
    labels = inputs["support_y"].numpy()
    if self.num_classes and labels.size and (labels.min() < 0 or
                                             labels.max() >= self.num_classes):
      raise ValueError(f"support_y labels must be in 0..{self.num_classes - 1}, got values "
                       f"from {labels.min()} to {labels.max()}.{self._about()}")
    sx, sy, qx = (inputs[n].shape for n in names)
    leading = 2 if batched else 1  # [T, K] or [K]
    if sx[:leading] != sy[:leading] or (batched and sx[0] != qx[0]):
      raise ValueError("support_x and support_y must have the same number of examples (and, "
                       "batched, of tasks as query_x); got shapes "
                       f"{list(sx)}, {list(sy)} and {list(qx)}.")
    if num_steps is not None:
      inputs["num_steps"] = tf.constant(num_steps, tf.int32)
    return self._run(fn, inputs)["predictions"]

  def predict(self, support_x, support_y, query_x) -> np.ndarray:
    """Adapts to one task and returns predictions for query_x."""
    return self._call(self._single, (support_x, support_y, query_x), batched=False)

  def predict_batch(self, support_x, support_y, query_x) -> np.ndarray:
    """The same for a batch of tasks (leading task axis)."""
    return self._call(self._batch, (support_x, support_y, query_x), batched=True)

  def check_num_steps(self, num_steps) -> int:
    """``num_steps`` (None: the exported ``num_steps``) checked against this SavedModel."""
    if not self.has_steps:
      raise ValueError(f"The SavedModel {self.path} predates predict_steps (it has no "
                       "adapt_and_predict_steps signature): re-export it with this version of "
                       "l2f_tf (delete its saved_model/ and run `python run_experiment.py "
                       "--root_dir=<its run folder>` again, which exports without training).")
    num_steps = self.num_steps if num_steps is None else num_steps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or \
        not 0 <= num_steps <= self.max_steps:
      raise ValueError(f"num_steps must be an integer in 0..{self.max_steps} (this SavedModel "
                       f"was exported with max_steps={self.max_steps}), got {num_steps!r}; "
                       "export it again with more (run_experiment.export_max_steps, or "
                       "l2f_tf.export.export(max_steps=...)).")
    return int(num_steps)

  def predict_steps(self, support_x, support_y, query_x,
                    num_steps: Optional[int] = None) -> np.ndarray:
    """Adapts to one task and returns [num_steps + 1, Q, ...]: the query predictions after 0,
    1, ..., num_steps inner steps (default: the exported ``num_steps``; at most
    ``max_steps``)."""
    num_steps = self.check_num_steps(num_steps)
    return self._call(self._steps_single, (support_x, support_y, query_x), batched=False,
                      num_steps=num_steps)

  def predict_steps_batch(self, support_x, support_y, query_x,
                          num_steps: Optional[int] = None) -> np.ndarray:
    """The same for a batch of tasks (leading task axis): [T, num_steps + 1, Q, ...]."""
    num_steps = self.check_num_steps(num_steps)
    return self._call(self._steps_batch, (support_x, support_y, query_x), batched=True,
                      num_steps=num_steps)


class LoadedPolicy(_LoadedModel):
  """A loaded meta-RL SavedModel (`l2f_tf.rl.export`) with checked inputs: ``act`` and
  ``adapt_and_act`` return {"mean", "log_std"} numpy arrays; ``observation_dim``,
  ``action_dim``, ``num_steps``, ``description``, ``config_path``."""

  TRAJECTORIES = ("observations", "actions", "rewards", "mask", "query_observations")

  def __init__(self, path: str, module=None):
    super().__init__(path, module)
    self._act = self._module.signatures["act"]
    self._adapt = self._module.signatures["adapt_and_act"]
    specs = self._adapt.structured_input_signature[1]
    self.observation_dim = int(specs["observations"].shape[-1])
    self.action_dim = int(specs["actions"].shape[-1])

  def act(self, observations) -> Dict[str, np.ndarray]:
    """The meta-policy theta (before adaptation) on observations [B, obs_dim]."""
    return self._run(self._act, self._inputs(self._act, ["observations"], [observations]))

  def adapt_and_act(self, observations, actions, rewards, mask,
                    query_observations) -> Dict[str, np.ndarray]:
    """Adapts to one task's trajectories (observations [N, H, obs_dim], actions [N, H,
    act_dim], rewards and mask [N, H]) and returns the adapted policy on query_observations."""
    values = (observations, actions, rewards, mask, query_observations)
    return self._run(self._adapt, self._inputs(self._adapt, self.TRAJECTORIES, values))


def _load_module(path: str):
  try:
    return tf.saved_model.load(path)
  except (OSError, ValueError, tf.errors.OpError) as error:
    raise ValueError(f"{path} could not be loaded as a SavedModel: "
                     f"{str(error).strip().splitlines()[0]}") from None


def load(path: str) -> Union["LoadedLearner", "LoadedPolicy"]:
  """Loads an export of this library from a SavedModel directory or a run folder.

  Returns a :class:`LoadedLearner` for a supervised export (``predict``, ``predict_batch``,
  ``predict_steps``, ``predict_steps_batch``) and
  a :class:`LoadedPolicy` for a meta-RL export (``act``, ``adapt_and_act``); both check their
  inputs against the signature and raise ValueError naming the expected shapes and dtypes.
  Raises ValueError (one line, naming what to do) when ``path`` holds no SavedModel."""
  path = saved_model_dir(path)
  module = _load_module(path)
  if "adapt_and_act" in module.signatures:
    return LoadedPolicy(path, module)
  return LoadedLearner(path, module)
