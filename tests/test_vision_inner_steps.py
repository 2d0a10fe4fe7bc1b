"""``benchmarks/vision_inner_steps.py``: the sweep over inner steps, its table and its figure,
with the timed processes replaced by fakes (no TensorFlow step, no torch)."""

import json

import pytest

from benchmarks import vision_inner_steps as sweep_lib
from benchmarks import peer_code
from benchmarks import vision_step

FAKE = {"median_s": 2.5, "min_s": 2.4, "max_s": 2.6, "peak_mb": 1536.0}


def _run_sweep(steps, authors=True):
  calls, lines = [], []

  def run_l2f(case, repeats, precision_name, warmup, size, cap_mb):
    calls.append((case, repeats, warmup, size, cap_mb))
    shots, n, first_order, jit, sequential = (int(v) for v in case.split(","))
    if not sequential and n >= 20:
      raise vision_step.MemoryCapExceeded(20500.0, cap_mb)
    return dict(FAKE, median_s=0.5 * n)

  def run_authors(n):
    calls.append(("authors", n))
    if n == 50:
      raise peer_code.ReferenceUnavailable("the authors' training iteration: killed")
    return dict(FAKE, peak_mb=1000.0 * n)

  results = sweep_lib.sweep(steps, repeats=3, warmup=1, size=84, cap_mb=20480.0,
                            run_l2f=run_l2f, run_authors=run_authors if authors else None,
                            echo=lines.append)
  return results, calls, lines


def test_every_case_runs_second_order_with_the_cap_and_the_steps_it_names():
  results, calls, lines = _run_sweep([5, 20])
  assert calls == [("5,5,0,0,1", 3, 1, 84, 20480.0), ("5,5,0,0,0", 3, 1, 84, 20480.0),
                   ("authors", 5), ("5,20,0,0,1", 3, 1, 84, 20480.0),
                   ("5,20,0,0,0", 3, 1, 84, 20480.0), ("authors", 20)]
  assert results[sweep_lib.DEFAULT][20]["median_s"] == 10.0
  assert results[sweep_lib.PLAIN][20] == {"did_not_fit_mb": 20500.0, "cap_mb": 20480.0}
  assert results[vision_step.AUTHORS][5]["peak_mb"] == 5000.0
  assert lines[0] == "  5 inner steps, l2f_tf default (sequential): 2.50 s, 1.50 GB"
  assert "20 inner steps, l2f_tf plain (one tape): did not fit (stopped at 20.0 GB)" in lines[4]


def test_a_failed_case_is_a_row_saying_why_and_the_sweep_goes_on():
  results, _, _ = _run_sweep([50])
  assert results[vision_step.AUTHORS][50] == {"failed": "the authors' training iteration: killed"}
  rows = sweep_lib.table(results, [50])
  assert rows[2] == ("| 50 | 25.00 s, 1.50 GB | did not fit (stopped at 20.0 GB) | failed: the "
                     "authors' training iteration: killed |")


def test_table_without_the_authors_has_two_columns():
  results, calls, _ = _run_sweep([5, 10], authors=False)
  assert not any(call[0] == "authors" for call in calls)
  rows = sweep_lib.table(results, [5, 10])
  assert rows[0].count("|") == 4 and "authors" not in rows[0]
  assert rows[3] == "| 10 | 5.00 s, 1.50 GB | 5.00 s, 1.50 GB |"


def test_figure_draws_times_memory_and_where_a_case_was_stopped(tmp_path):
  results, _, _ = _run_sweep([5, 20])
  path = sweep_lib.plot(str(tmp_path / "steps.png"), results, cap_mb=20480.0)
  assert (tmp_path / "steps.png").stat().st_size > 0
  data = json.loads((tmp_path / "steps.json").read_text())
  time_panel, memory_panel = data["panels"]
  assert time_panel["series"][sweep_lib.DEFAULT]["y"] == [2.5, 10.0]
  assert time_panel["series"][sweep_lib.PLAIN]["x"] == [5.0]  # 20 steps did not fit
  assert memory_panel["series"][vision_step.AUTHORS]["y"] == pytest.approx([5000 / 1024,
                                                                           20000 / 1024])
  stopped = memory_panel["series"][f"{sweep_lib.PLAIN}: did not fit, stopped here"]
  assert stopped == {"kind": "points", "x": [20.0], "y": [pytest.approx(20500 / 1024)]}
  assert path.endswith("steps.png")
