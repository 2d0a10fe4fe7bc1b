"""Error bars and the progress line."""

import numpy as np
import pytest

from l2f_tf import progress as progress_lib
from l2f_tf.progress import Progress, format_duration
from l2f_tf.stats import mean_and_ci95


def test_ci95_is_1_96_standard_errors():
  values = [1.0, 2.0, 3.0, 4.0]
  result = mean_and_ci95(values)
  assert result["mean"] == 2.5 and result["n"] == 4
  assert result["ci95"] == pytest.approx(1.96 * np.std(values, ddof=1) / 2.0)
  assert result["num_non_finite"] == 0
  assert mean_and_ci95([1.0, np.inf, np.nan])["num_non_finite"] == 2
  with pytest.raises(ValueError):
    mean_and_ci95([])


def test_progress_reports_rate_and_eta(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  progress = Progress(total=1000, start=0, every_seconds=0.0, label="step")
  progress._last_time -= 2.0  # pretend 2 s passed  # pylint: disable=protected-access
  assert progress.update(100, "loss 1.0")
  assert progress.steps_per_second == pytest.approx(50.0, rel=0.05)
  assert "step 100/1000 (10.0%) loss 1.0" in lines[0]
  assert "ETA 18s" in lines[0] or "ETA 17s" in lines[0]
  assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"
  # A restart (after a call that compiled) measures the rate from there on.
  progress.restart(500)
  progress._last_time -= 1.0  # pylint: disable=protected-access
  progress.update(600)
  assert progress.steps_per_second == pytest.approx(100.0, rel=0.05)


def test_progress_rate_reads_seconds_per_step_when_slow_and_names_its_unit(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  progress = Progress(total=80, every_seconds=0.0, label="meta-iteration")
  progress._last_time -= 40.0  # two iterations in 40 s  # pylint: disable=protected-access
  progress.update(2)
  assert "20.0 s/meta-iteration" in lines[-1] and "0.0 meta-iterations/s" not in lines[-1]
  evaluation = Progress(total=600, every_seconds=0.0, label="test episode (checkpoint 100)",
                        unit="episode")
  evaluation._last_time -= 1.0  # pylint: disable=protected-access
  evaluation.update(30)
  assert "test episode (checkpoint 100) 30/600" in lines[-1]
  assert "30.0 episodes/s" in lines[-1] and ")s/s" not in lines[-1]
