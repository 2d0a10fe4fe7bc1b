"""The pure-Python parts of ``benchmarks/rl_navigation.py --compare_reference``: the rounds, the
ratio lines and the peer's failure line. No torch, no network: the timed sides are fakes."""

import pytest

from benchmarks import peer_code
from benchmarks import rl_navigation  # It defines absl flags (once per process).

SECONDS = {"fisher": [1.0, 1.2, 1.1], "hessian": [1.5, 1.5, 1.6]}


def fake_side(side, python, src, warmup, timed):
  label, curvature, peer = side
  if curvature:
    return {"seconds": SECONDS[curvature]}
  return {"seconds": [5.0, 5.5, 6.0] if "fastest" in label else [10.0, 10.0, 10.0]}


def test_rounds_print_every_side_and_the_median_ratios(monkeypatch):
  monkeypatch.setattr(peer_code, "setup", lambda *a: ("python", "src", "local snapshot"))
  monkeypatch.setattr(rl_navigation, "run_side", fake_side)
  lines = []
  results = rl_navigation.compare_reference(rounds=2, warmup=1, timed=3, folder="unused",
                                            git_dir=None, url="unused", echo=lines.append)
  assert len(results) == 2 and all(len(r) == 4 for r in results)
  assert sum(line.startswith("round ") for line in lines) == 8
  assert ("round 1: l2f_tf defaults (Gauss-Newton curvature): 1.10 s per meta-iteration "
          "(median of 3; 1.00-1.20)") in lines
  ratios = [line for line in lines if " / " in line]
  assert ratios[0].endswith("median 0.20x over 2 rounds (0.20x, 0.20x); target at most 0.2x")
  assert ratios[1].endswith("median 0.27x over 2 rounds (0.27x, 0.27x); target at most 0.3x")
  assert ratios[2].endswith("median 0.11x over 2 rounds (0.11x, 0.11x)")


def test_a_peer_that_cannot_be_set_up_raises_one_line(monkeypatch):
  def fail(*args):
    raise peer_code.ReferenceUnavailable("git clone failed: no network")
  monkeypatch.setattr(peer_code, "setup", fail)
  with pytest.raises(peer_code.ReferenceUnavailable, match="no network"):
    rl_navigation.compare_reference(rounds=1, warmup=0, timed=1, folder="unused", git_dir=None,
                                    url="unused", echo=lambda line: None)


def test_window_means_are_moving_averages_with_their_ci():
  ends, means, halves = rl_navigation.window_means([1.0, 3.0, 5.0, 7.0], window=2)
  assert ends.tolist() == [2, 3, 4] and means.tolist() == [2.0, 4.0, 6.0]
  assert halves == pytest.approx([1.96 * 2 ** 0.5 / 2 ** 0.5] * 3)
