"""What both kinds of export share: the saved module's base (format version, description, number
of inner steps, the learner's variables), writing it, finding and reading a SavedModel (another
format version is refused) and the loaded model's checked calls."""

import os
import shutil
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from l2f_tf import console
from l2f_tf.export.checks import graph_error_text
from l2f_tf.run_folder import CONFIG_NAME, RunFolder

# The version of what an export holds (variables, signatures); loaders refuse any other.
# 2: the batch-norm mode (variable ``batch_norm``, and in the description).
FORMAT_VERSION = 2
# How each batch-norm mode makes a query's prediction depend on the call, for descriptions.
BATCH_NORM_TEXT = {
    "transductive": "transductive (statistics of the query batch given: a query's prediction "
                    "depends on the other queries of the call)",
    "support": "support (statistics of the support set: a query's prediction depends on the "
               "task and that query alone)",
    "task_norm_i": "TaskNorm-I (support-set and per-image statistics: a query's prediction "
                   "depends on the task and that query alone)",
    "none": "none",
}
SAVED_GRADIENT_WARNING = "Importing a function (%s) with ops with unsaved custom gradients"


class ExportModule(tf.Module):
  """The saved module's common part: the learner's variables and what the loaders read."""

  def __init__(self, name: str, learner, num_steps: int, description: str):
    super().__init__(name=name)
    self.format_version = tf.Variable(FORMAT_VERSION, trainable=False, name="format_version")
    self.batch_norm = tf.Variable(learner.batch_norm, trainable=False, name="batch_norm")
    if learner.batch_norm != "none":
      mode = BATCH_NORM_TEXT.get(learner.batch_norm, learner.batch_norm)
      description = f"{description}; batch norm: {mode}" if description else f"batch norm: {mode}"
    self.description = tf.Variable(description, trainable=False, name="description")
    self.num_steps = tf.Variable(num_steps, trainable=False, name="num_steps")
    # Tracked so that the SavedModel holds every variable the functions read.
    for part_name, part in learner.checkpoint_parts().items():
      setattr(self, part_name, part)
    self._learner, self._steps = learner, num_steps


def save(module: ExportModule, path: str, signatures, config_path=None) -> str:
  """Saves ``module`` to ``path`` (replacing it), with the run's gin config in assets.extra/."""
  if os.path.exists(path):
    shutil.rmtree(path)
  # TensorFlow sets absl's verbosity to the --verbosity flag's level while it saves, which
  # silences a library run's progress lines (INFO set on the logger itself) from then on.
  logger = absl_logging.get_absl_logger()
  level = logger.level
  try:
    tf.saved_model.save(module, path, signatures=signatures)
  finally:
    logger.setLevel(level)
  if config_path and os.path.exists(config_path):
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    shutil.copy(config_path, os.path.join(path, "assets.extra", CONFIG_NAME))
  return path


def saved_model_dir(path: str) -> str:
  """The SavedModel directory of ``path``: ``path`` itself, or the saved_model/ of a run folder.

  Raises ValueError with one line naming what to do when there is none (a run that has not
  finished, a path that is neither a SavedModel nor a run folder)."""
  path = str(path)
  folder, parent = RunFolder(path), RunFolder(os.path.dirname(os.path.normpath(path)))
  for candidate in (path, folder.saved_model):
    if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
      return candidate
  if os.path.normpath(path) == os.path.normpath(parent.saved_model) and (
      os.path.exists(parent.config) or os.path.exists(parent.settings)):
    folder = parent  # <run>/saved_model of a run that has not exported (yet).
  if os.path.exists(folder.settings) and not os.path.exists(folder.config):
    raise ValueError(f"No SavedModel in the run folder {folder.root} (no saved_model/): it was "
                     "made in Python, and Runner(trainer).run() exports its model (train() "
                     "alone does not); the same script again exports it without training.")
  if os.path.exists(folder.config):
    trained = os.path.isdir(folder.checkpoints) and bool(os.listdir(folder.checkpoints))
    state = "it stopped before exporting its model" if trained else "it has no checkpoint yet"
    raise ValueError(f"No SavedModel in the run folder {folder.root} (no saved_model/): {state} "
                     "(or it is still running). Run `python run_experiment.py "
                     f"--root_dir={folder.root}` to finish it (it resumes from its last "
                     f"checkpoint, with its {CONFIG_NAME}); it then writes {folder.saved_model}.")
  why = (f"it has no saved_model.pb and is not a run folder (no {CONFIG_NAME})"
         if os.path.exists(path) else "it does not exist")
  raise ValueError(f"No SavedModel at {path}: {why}. Pass a run folder or its saved_model/ "
                   "directory.")


def read(path: str):
  """The module saved in the SavedModel directory ``path``, of this :data:`FORMAT_VERSION`."""
  try:
    # TensorFlow warns, once per function (hundreds for an image model), that a gradient of
    # its batch-norm and pooling ops would fail: the adaptation's gradients are computed inside
    # the saved graphs, which need no gradient of their own.
    with console.dropped_log_records(SAVED_GRADIENT_WARNING):
      module = tf.saved_model.load(path)
  except (OSError, ValueError, tf.errors.OpError) as error:
    raise ValueError(f"{path} could not be loaded as a SavedModel: "
                     f"{str(error).strip().splitlines()[0]}") from None
  version = getattr(module, "format_version", None)  # None: not an export of this format.
  version = 0 if version is None else int(version.numpy())
  if version != FORMAT_VERSION:
    raise ValueError(f"{path} holds export format {version} (0: none recorded), this l2f_tf "
                     f"reads format {FORMAT_VERSION}: re-export it (delete it and run `python "
                     "run_experiment.py --root_dir=<its run folder>`, which exports without "
                     "training).")
  return module


def _describe(name: str, spec) -> str:
  dims = ", ".join("?" if d is None else str(d) for d in spec.shape)
  return f"{name} [{dims}] {spec.dtype.name}"


class LoadedModel:
  """What both kinds of loaded export share: the path, the stored description and config, and
  calls whose inputs are checked against the signature before the graph runs."""

  def __init__(self, path: str, module):
    self.path, self._module = path, module
    self.num_steps = int(module.num_steps.numpy())
    self.description = module.description.numpy().decode()
    self.batch_norm = module.batch_norm.numpy().decode()

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
      numeric = np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)
      if not numeric or value.ndim != len(spec.shape) or \
          not spec.shape.is_compatible_with(value.shape):
        got = f"shape {list(value.shape)}" if numeric else f"dtype {value.dtype}"
        raise ValueError(f"{name} has {got}, but this SavedModel expects {_describe(name, spec)} "
                         f"(all inputs: {expected()}).{self._about()}")
      if spec.dtype.is_integer and not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {value.dtype}."
                         f"{self._about()}")
      inputs[name] = tf.convert_to_tensor(value, spec.dtype)
    return inputs

  def _call(self, signature: str, names: Sequence[str], values, **extra) -> Dict[str, np.ndarray]:
    """The outputs of the signature named ``signature`` on ``values`` checked against its
    inputs ``names`` (and on the ``extra`` tensors); a failed graph check raises ValueError."""
    fn = self._module.signatures[signature]
    try:
      outputs = fn(**self._inputs(fn, names, values), **extra)
    except tf.errors.InvalidArgumentError as error:
      raise ValueError(f"Bad input for this SavedModel: {graph_error_text(error.message)}."
                       f"{self._about()}") from None
    return {name: value.numpy() for name, value in outputs.items()}
