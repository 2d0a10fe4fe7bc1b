"""Exports of a trained learner as SavedModels, and their loader :func:`load`: ``supervised``
(adapt and predict) and ``policy`` (meta-RL: act, adapt and act), which share ``checks`` (inside
the graph) and ``saved_model`` (format version, writing, reading). docs/exported_models.md lists
the checks and their messages."""

from typing import Union

from l2f_tf.export.policy import LoadedPolicy, export_policy
from l2f_tf.export.saved_model import read, saved_model_dir
from l2f_tf.export.supervised import LoadedLearner, export, export_for_domain

__all__ = ["load", "export", "export_for_domain", "export_policy", "saved_model_dir",
           "LoadedLearner", "LoadedPolicy"]


def load(path: str) -> Union[LoadedLearner, LoadedPolicy]:
  """Loads an export of this library from a SavedModel directory or a run folder.

  Returns a :class:`LoadedLearner` for a supervised export (``predict``, ``predict_batch``,
  ``predict_steps``, ``predict_steps_batch``) and a :class:`LoadedPolicy` for a meta-RL export
  (``act``, ``adapt_and_act``); both check their inputs against the signature and raise
  ValueError naming the expected shapes and dtypes. Raises ValueError (one line, naming what to
  do) when ``path`` holds no SavedModel, or one of another export format version."""
  path = saved_model_dir(path)
  module = read(path)
  loaded = LoadedPolicy if "adapt_and_act" in module.signatures else LoadedLearner
  return loaded(path, module)
