"""The optional dependencies (setup.cfg's extras) and the one-line error that names them.

The default install runs the supervised domains (sinusoid, few-shot images, LEO embeddings),
the command line, evaluate / compare / analyze / embed and every export's loader. Meta-RL's
simulators and policy distribution come with the ``rl`` extra: tf-agents, gymnasium with
MuJoCo, tensorflow-probability, and tf-keras (the legacy Keras those two need, see
``TF_USE_LEGACY_KERAS`` in `l2f_tf`). The code that needs them checks where the need starts
(building a `MetaRLDomain`, importing `l2f_tf.rl.envs`, the first policy log-density), never
at import: every configurable still registers in gin, and a sinusoid-only install never
imports them. A missing one raises :class:`MissingExtraError`, whose message is one line naming
the command that installs it.
"""

import importlib
import importlib.util
from typing import Optional

# The top-level modules each extra brings (checked in this order).
EXTRAS = {"rl": ("tf_agents", "gymnasium", "mujoco", "tensorflow_probability", "tf_keras")}


class MissingExtraError(ImportError, ValueError):
  """A module of an extra is not installed. An ImportError, since a module is missing, and a
  ValueError, the user errors the command line reports in one line with exit status 1."""


def message(extra: str, what: str, module: str) -> str:
  """The one line: who needs ``extra``, the command that installs it, the missing module."""
  return (f"{what} needs the {extra!r} extra, which is not installed (missing module: "
          f"{module}): pip install -e \".[{extra}]\" in the l2f_tf source folder (without -e "
          f"for a non-editable install).")


def missing(extra: str) -> Optional[str]:
  """The first module of ``extra`` that is not installed, or None; imports nothing."""
  for module in EXTRAS[extra]:
    if importlib.util.find_spec(module) is None:
      return module
  return None


def require(extra: str, what: str) -> None:
  """Raises MissingExtraError unless every module of ``extra`` is installed (cheap: finds them
  without importing them). ``what`` names the feature, e.g. "Meta-RL (MetaRLDomain)"."""
  module = missing(extra)
  if module is not None:
    raise MissingExtraError(message(extra, what, module), name=module)


def import_module(extra: str, name: str, what: str):
  """``importlib.import_module(name)``, a MissingExtraError when a module of ``extra`` is
  missing (other import errors, e.g. a broken install, propagate unchanged)."""
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as error:
    top = (error.name or "").split(".")[0]
    if top not in EXTRAS[extra]:
      raise
    raise MissingExtraError(message(extra, what, top), name=top) from error
