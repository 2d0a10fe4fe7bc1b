"""A progress line for long loops: steps/s and ETA, logged at most every few seconds.

Rates read "12.3 episodes/s" at one or more per second and "20.4 s/meta-iteration" below (a
slow loop never shows a rounded "0.0 .../s"); the unit is a noun of its own, never built from
the line's label (a label such as "test episode (checkpoint 100)" is not a unit).
"""

import math
import re
import time
from typing import Optional

from absl import logging


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def plural(noun: str) -> str:
  """The plural of a unit noun: "episode" -> "episodes", "batch" -> "batches"."""
  if re.search(r"(s|x|z|ch|sh)$", noun):
    return noun + "es"
  if re.search(r"[^aeiou]y$", noun):
    return noun[:-1] + "ies"
  return noun + "s"


def unit_of(label: str) -> str:
  """The counted noun of a progress label: its last word, without a parenthesised remark
  ("test episode (checkpoint 100)" -> "episode", "meta-iteration" -> "meta-iteration")."""
  words = re.sub(r"\([^)]*\)", " ", label).split()
  return words[-1] if words else "step"


def rate_text_of(rate: Optional[float], unit: str) -> str:
  """"1234 steps/s" from 100 per second, "12.3 steps/s" from 1, else the time per step:
  "20.4 s/step", "2m05s/step" from a minute (never a rounded "0.0 steps/s"); "-" when there
  is no rate yet (None, 0, NaN)."""
  if rate is None or not math.isfinite(rate) or rate <= 0:
    return "-"
  if rate >= 100.0:
    return f"{rate:.0f} {plural(unit)}/s"
  if rate >= 1.0:
    return f"{rate:.1f} {plural(unit)}/s"
  seconds = 1.0 / rate
  if seconds >= 60.0:
    return f"{format_duration(seconds)}/{unit}"
  return f"{seconds:.1f} s/{unit}"


class Progress:
  """Logs "<label> i/n, rate, ETA" at most every `every_seconds`, the rate measured since the
  last line. `total` is the final step, `start` the first (a resumed run starts after 0),
  `label` what the line counts ("meta-iteration", "test episode (checkpoint 100)"), `unit` the
  singular noun of the rate ("episode"; default: :func:`unit_of` the label)."""

  def __init__(self, total: int, start: int = 0, every_seconds: float = 10.0,
               label: str = "step", unit: Optional[str] = None):
    self.total, self.label, self.every_seconds = total, label, every_seconds
    self.unit = unit or unit_of(label)
    self._last_step, self._last_time = start, time.perf_counter()
    self._logged_step: Optional[int] = None  # the step of the last line logged
    self.steps_per_second: Optional[float] = None

  def restart(self, step: int) -> None:
    """Measures the rate from ``step`` on (e.g. after a slow first call that compiled)."""
    self._last_step, self._last_time = step, time.perf_counter()

  def update(self, step: int, message: str = "", force: bool = False) -> bool:
    """Logs a line if enough time has passed (or ``force``, unless this step's line is the
    last one logged: a final forced update never repeats it); returns whether it did."""
    now = time.perf_counter()
    elapsed = now - self._last_time
    if not force and elapsed < self.every_seconds or force and step == self._logged_step:
      return False
    self._logged_step = step
    if step > self._last_step and elapsed > 0:
      self.steps_per_second = (step - self._last_step) / elapsed
    self._last_step, self._last_time = step, now
    rate = self.steps_per_second
    logging.info("%s %d/%d (%.1f%%) %s | %s | ETA %s", self.label, step, self.total,
                 100.0 * step / max(self.total, 1), message, rate_text_of(rate, self.unit),
                 format_duration((self.total - step) / rate) if rate else "?")
    return True
