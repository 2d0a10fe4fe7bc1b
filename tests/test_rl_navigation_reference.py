"""The pure-Python parts of ``benchmarks/rl_navigation.py --compare_reference``: the rounds, the
ratio lines and the peer's failure line. No torch, no network: the timed sides are fakes."""

import json

import pytest

from benchmarks import peer_code
from benchmarks import rl_navigation  # It defines absl flags (once per process).

SECONDS = {(): [1.0, 1.2, 1.1], ("MetaRLTrainer.curvature = 'hessian'",): [1.5, 1.5, 1.6],
           ("MetaRLTrainer.curvature_subsample = 0.5",): [0.7, 0.7, 0.8]}


def fake_side(side, python, src, warmup, timed):
  label, bindings, peer = side
  if bindings is not None:
    return {"seconds": SECONDS[tuple(bindings)]}
  return {"seconds": [5.0, 5.5, 6.0] if "fastest" in label else [10.0, 10.0, 10.0]}


def test_rounds_print_every_side_and_the_median_ratios(monkeypatch):
  monkeypatch.setattr(peer_code, "setup", lambda *a: ("python", "src", "local snapshot"))
  monkeypatch.setattr(rl_navigation, "run_side", fake_side)
  lines = []
  results = rl_navigation.compare_reference(rounds=2, warmup=1, timed=3, folder="unused",
                                            git_dir=None, url="unused", echo=lines.append)
  assert len(results) == 2 and all(len(r) == 5 for r in results)
  assert sum(line.startswith("round ") for line in lines) == 10
  assert ("round 1: l2f_tf defaults (Gauss-Newton curvature): 1.10 s per meta-iteration "
          "(median of 3; 1.00-1.20)") in lines
  ratios = [line for line in lines if " / " in line]
  assert ratios[0].endswith("median 0.20x over 2 rounds (0.20x, 0.20x); target at most 0.2x")
  assert ratios[1].endswith("median 0.27x over 2 rounds (0.27x, 0.27x); target at most 0.3x")
  assert ratios[2].startswith("l2f_tf, curvature products on half the tasks / ")
  assert ratios[2].endswith("median 0.13x over 2 rounds (0.13x, 0.13x)")
  assert ratios[3].endswith("median 0.11x over 2 rounds (0.11x, 0.11x)")


def test_a_peer_that_cannot_be_set_up_raises_one_line(monkeypatch):
  def fail(*args):
    raise peer_code.ReferenceUnavailable("git clone failed: no network")
  monkeypatch.setattr(peer_code, "setup", fail)
  with pytest.raises(peer_code.ReferenceUnavailable, match="no network"):
    rl_navigation.compare_reference(rounds=1, warmup=0, timed=1, folder="unused", git_dir=None,
                                    url="unused", echo=lambda line: None)


def test_curves_train_the_peer_at_its_fastest_setting(monkeypatch, tmp_path):
  """--curve_iterations: the peer trains with the fastest side's threads and workers (an index
  into the sides once pointed at an l2f_tf side), and both curves are drawn."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks import rl_training_curves  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(rl_navigation, "train_run", lambda prefix, iterations: None)
  after = np.linspace(-40.0, -12.0, 60)
  monkeypatch.setattr(rl_training_curves, "read_scalars", lambda run: {
      "return_after_adaptation": (np.arange(60), after)})
  calls = []

  def fake_peer(run, command, what, env):
    calls.append((command, env))
    output = [c for c in command if c.startswith("--output=")][0].split("=", 1)[1]
    with open(output, "w") as f:
      json.dump({"after": [[a, a] for a in after.tolist()]}, f)

  monkeypatch.setattr(peer_code, "checked", fake_peer)
  lines = []
  summary = rl_navigation.compare_curves(60, "python", "src", str(tmp_path), echo=lines.append)
  (command, env), = calls
  assert env["OMP_NUM_THREADS"] == "1"
  assert "--threads=1" in command and "--num_workers=2" in command
  assert "--iterations=60" in command
  assert set(summary) == {"l2f_tf (defaults)", "pytorch-maml-rl"}
  assert summary["l2f_tf (defaults)"][0] == pytest.approx(summary["pytorch-maml-rl"][0])
  assert (tmp_path / "curves.png").exists()


def test_training_curve_labels_name_the_seed(tmp_path):
  """Two seeds of one learner on one figure need different legend entries."""
  from benchmarks import rl_training_curves  # pylint: disable=import-outside-toplevel
  run = tmp_path / "maml"
  run.mkdir()
  assert rl_training_curves.label_of(str(run)) == str(run)  # not finished: its directory
  (run / "results.json").write_text(json.dumps(
      {"method": "MAML", "inner_objective": "reinforce", "averaging": "trajectory"}))
  from l2f_tf.run_folder import RunFolder  # pylint: disable=import-outside-toplevel
  from l2f_tf.train import settings  # pylint: disable=import-outside-toplevel
  settings.record(RunFolder(str(run)), {"MetaRLTrainer.seed": "1"})  # as training writes it
  assert rl_training_curves.label_of(str(run)) == "MAML (reinforce, trajectory averaging, seed 1)"


def test_window_means_are_moving_averages_with_their_ci():
  ends, means, halves = rl_navigation.window_means([1.0, 3.0, 5.0, 7.0], window=2)
  assert ends.tolist() == [2, 3, 4] and means.tolist() == [2.0, 4.0, 6.0]
  assert halves == pytest.approx([1.96 * 2 ** 0.5 / 2 ** 0.5] * 3)


def _summary(objective, seed, maml_after, l2f_after, difference, bindings=()):
  method = lambda after: {"meta_iterations": 500, "train_minutes": 10.0,
                          "gap_closed_after_1_step": 0.8,
                          **{f"return_after_{k}_steps": [after - k, 1.0] for k in range(4)}}
  return {"inner_objective": objective, "averaging": "trajectory", "seed": seed,
          "gin_bindings": list(bindings), "methods": {"MAML": method(maml_after), "MAML+L2F": method(l2f_after)},
          "random": [-71.0, 1.3], "uniform": [-61.0, 1.4], "oracle": [-0.5, 0.05],
          "l2f_minus_maml_after_1_step": [difference, 0.5]}


def test_table_lists_every_finished_pair_reference_objective_first(tmp_path):
  import json
  for folder, summary in (("lvc", _summary("lvc", 0, -14.0, -13.0, 1.0)),
                          ("reinforce_1", _summary("reinforce", 1, -15.0, -13.5, 1.5)),
                          ("reinforce", _summary("reinforce", 0, -14.25, -13.5, 0.75)),
                          ("half", _summary("reinforce", 0, -14.0, -13.0, 1.0,
                                            ["MetaRLTrainer.curvature_subsample = 0.5"]))):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "summary.json").write_text(json.dumps(summary))
  (tmp_path / "unfinished").mkdir()  # a pair still training writes no summary
  lines = rl_navigation.tables(str(tmp_path)).splitlines()
  runs = [line.split(" | ")[0] for line in lines if line.startswith("| reinforce") or
          line.startswith("| lvc")]
  assert runs[:8] == ["| reinforce, trajectory averaging, seed 0"] * 2 + [
      "| reinforce, trajectory averaging, seed 1"] * 2 + [
      "| reinforce, trajectory averaging, seed 0, MetaRLTrainer.curvature_subsample = 0.5"] * 2 + [
      "| lvc, trajectory averaging, seed 0"] * 2
  assert ("| reinforce, trajectory averaging, seed 0 | MAML | 10.0 | -14.25 +- 1.00 | "
          "-15.25 +- 1.00 | -16.25 +- 1.00 | -17.25 +- 1.00 | 80.0% |") in lines
  assert "| | oracle (straight to the goal) | | -0.50 +- 0.05 | | | | |" in lines
  assert "| lvc, trajectory averaging, seed 0 | +1.00 +- 0.50 |" in lines


def test_table_without_finished_pairs_says_what_to_do(tmp_path):
  with pytest.raises(SystemExit, match="No finished pair .* train one first"):
    rl_navigation.tables(str(tmp_path))
