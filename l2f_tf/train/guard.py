"""The non-finite guard: a NaN or inf meta-loss or meta-gradient never reaches the weights.

A diverging run (a learning rate far too large, a corrupt batch) produces a non-finite
meta-loss or meta-gradient; applied, it turns every weight into NaN, and the next checkpoint
saves them beyond recovery. So the trainers' compiled steps apply an update only if the
meta-loss and meta-gradient are finite. A skipped meta-iteration still advances the step
counter, since it consumed its meta-batch: the data stream and checkpoints are keyed on the
counter, so a run resumed after a skip matches an uninterrupted one.

:class:`NonFiniteGuard` (gin: ``NonFiniteGuard.policy``, ``NonFiniteGuard.max_consecutive``)
counts the skips (the ``nonfinite_steps`` TensorBoard scalar, a console warning) and raises
:class:`NonFiniteError` when training must stop; the Runner then saves no checkpoint. Its
counts are part of the trainers' checkpoints, so a resumed run goes on counting.
"""

from typing import List, Optional

import gin
import tensorflow as tf
from absl import logging

POLICIES = ("skip", "stop")
SUMMARY_TAG = "nonfinite_steps"


def all_finite(tensors: List[tf.Tensor]) -> tf.Tensor:
  """A bool scalar: whether every entry of every tensor is finite (one reduction each)."""
  return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


class NonFiniteError(RuntimeError):
  """Training stopped at a meta-iteration whose meta-loss or meta-gradient was not finite.

  Its update was not applied (the weights are those of the last finite meta-iteration); the step
  counter did advance past it.

  Attributes:
    step: the non-finite meta-iteration, numbered like the step counter after it (it read the
      meta-batch of counter ``step - 1``).
    consecutive: non-finite meta-iterations in a row, ending at ``step``.
    policy, max_consecutive: the guard's.
    last_checkpoint: the last good checkpoint if known (:meth:`with_checkpoint`), else None.
  """

  def __init__(self, step: int, consecutive: int = 1, policy: str = "stop",
               max_consecutive: int = 1, last_checkpoint: Optional[str] = None):
    self.step, self.consecutive = step, consecutive
    self.policy, self.max_consecutive = policy, max_consecutive
    self.last_checkpoint = last_checkpoint
    super().__init__(step, consecutive, policy, max_consecutive, last_checkpoint)

  def with_checkpoint(self, path: Optional[str]) -> "NonFiniteError":
    """The same error, saying that the last good checkpoint is ``path``."""
    return type(self)(self.step, self.consecutive, self.policy, self.max_consecutive, path)

  def __str__(self) -> str:
    if self.policy == "stop":
      why = 'NonFiniteGuard.policy = "stop"'
    else:
      why = (f"{self.consecutive} in a row, NonFiniteGuard.max_consecutive = "
             f"{self.max_consecutive}")
    message = (f"Non-finite meta-loss or meta-gradient at meta-iteration {self.step} ({why}): "
               "training stopped; the update was not applied.")
    if self.last_checkpoint:
      message += f" The last good checkpoint is {self.last_checkpoint}."
    return message


@gin.configurable
class NonFiniteGuard:
  """What the trainers do after a meta-iteration whose update was not finite (never applied).

  Args:
    policy: "skip": count the step (scalar and warning) and go on, but raise
      :class:`NonFiniteError` after ``max_consecutive`` in a row (the run has diverged, it is
      not a stray batch). "stop": raise :class:`NonFiniteError` at the first.
    max_consecutive: consecutive skipped meta-iterations that stop training under "skip".

  Attributes:
    total: meta-iterations skipped so far in the run (saved with its checkpoints).
    consecutive: skipped meta-iterations in a row up to the latest one (saved too, so a run
      resumed in the middle of a divergence stops where an uninterrupted one would).
  """

  def __init__(self, policy: str = "skip", max_consecutive: int = 10):
    if policy not in POLICIES:
      raise ValueError(f"NonFiniteGuard.policy must be one of {POLICIES}, got {policy!r}.")
    if max_consecutive < 1:
      raise ValueError(f"NonFiniteGuard.max_consecutive must be >= 1, got {max_consecutive}.")
    self.policy, self.max_consecutive = policy, max_consecutive
    with tf.init_scope():
      self._total = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_total")
      self._consecutive = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="nonfinite_consecutive")

  @property
  def total(self) -> int:
    return int(self._total.numpy())

  @property
  def consecutive(self) -> int:
    return int(self._consecutive.numpy())

  def checkpoint_parts(self) -> dict:
    """The counts, for the trainer's checkpoint."""
    return {"nonfinite_total": self._total, "nonfinite_consecutive": self._consecutive}

  @property
  def limit(self) -> int:
    """Non-finite meta-iterations in a row that stop training (1 under "stop")."""
    return 1 if self.policy == "stop" else self.max_consecutive

  def record(self, step: int, skipped: int, consecutive: int,
             last_skipped: Optional[int] = None, summarize: bool = False) -> None:
    """Accounts for meta-iterations that ended at counter ``step``; raises
    :class:`NonFiniteError` when ``consecutive`` reaches :attr:`limit`.

    Args:
      step: the step counter after them.
      skipped: how many of them were non-finite (their updates skipped).
      consecutive: non-finite meta-iterations in a row ending at ``step`` (over calls).
      last_skipped: the step number of the last skipped one (default ``step``).
      summarize: write the ``nonfinite_steps`` scalar even when none was skipped, so that the
        curve exists in every run.
    """
    self._total.assign_add(skipped)
    self._consecutive.assign(consecutive)
    if skipped or summarize:
      tf.summary.scalar(SUMMARY_TAG, self.total, step=step)
    if consecutive >= self.limit:
      raise NonFiniteError(step, consecutive, self.policy, self.max_consecutive)
    if skipped:
      last = step if last_skipped is None else last_skipped
      what = (f"meta-iteration {last}" if skipped == 1 else
              f"{skipped} meta-iterations, the last at meta-iteration {last}")
      logging.warning("Non-finite meta-loss or meta-gradient: skipped the update of %s (%d in a "
                      "row, %d skipped so far; training stops at %d in a row).", what,
                      consecutive, self.total, self.limit)

  def after_step(self, step: int, finite: bool, summarize: bool = False) -> None:
    """:meth:`record` for one meta-iteration that ended at counter ``step``."""
    self.record(step, 0 if finite else 1, 0 if finite else self.consecutive + 1,
                summarize=summarize)
