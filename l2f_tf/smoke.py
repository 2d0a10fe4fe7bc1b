"""Smoke mode: ``L2F_TF_SMOKE=1`` runs any experiment, script or snippet end to end, tiny.

It answers "does this run?" in seconds instead of hours: a gin file, a script built on the
library, or a documentation snippet (the test of the README's snippets runs them this way).
It is not for numbers. While the variable is set:

* training stops after at most :data:`ITERATIONS` meta-iterations (``Trainer`` and
  ``MetaRLTrainer`` cap ``num_iterations``);
* validation and the final evaluation use at most :data:`TASKS` tasks or episodes, and so do
  ``python -m l2f_tf.evaluate`` / ``compare`` / ``analyze``;
* a warning says so once, and results.json records ``"smoke": true``;
* settings.json records it too, so a smoke folder is not continued as a real run, nor a real
  run's results overwritten by smoke numbers (`l2f_tf.train.settings`).

Everything else (models, data, the compiled step, export, figures) is the real thing.
"""

import os

from absl import logging

ENV = "L2F_TF_SMOKE"
ITERATIONS = 3
TASKS = 4

_warned = False


def active() -> bool:
  """Whether smoke mode is on (``L2F_TF_SMOKE`` set to anything but "" or "0")."""
  return os.environ.get(ENV, "").strip() not in ("", "0")


def _capped(value: int, cap: int) -> int:
  global _warned
  if not active():
    return value
  if not _warned:
    _warned = True
    logging.warning("%s is set: at most %d meta-iterations and %d evaluation tasks; the "
                    "results only show that the run works, not how well.", ENV, ITERATIONS,
                    TASKS)
  return min(value, cap)


def iterations(num_iterations: int) -> int:
  """``num_iterations``, capped in smoke mode."""
  return _capped(num_iterations, ITERATIONS)


def tasks(num_tasks: int, multiple: int = 1) -> int:
  """A number of validation / evaluation tasks or episodes, capped in smoke mode (rounded up
  to a ``multiple`` when the caller draws tasks that many at a time)."""
  capped = _capped(num_tasks, TASKS)
  return capped if not active() else -(-capped // multiple) * multiple
