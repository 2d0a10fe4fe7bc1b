"""compare's paired differences: on shared tasks their mean is the difference of the runs'
means and their CI is narrower than the unpaired one; runs on other tasks get a plain note."""

import json
import os
import shutil

import pytest

from l2f_tf import compare, export
from l2f_tf.run_folder import RunFolder
from tests import shared_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The session's two tiny finished sinusoid runs (MAML, L2F; tests/shared_runs.py) evaluated
  on the same 6 tasks, exported with run_experiment.export_max_steps = 3."""
  assert (shared_runs.SINUSOID_RUN_TASKS, shared_runs.SINUSOID_RUN_MAX_STEPS) == (6, 3)
  return shared_runs.sinusoid_runs(tmp_path_factory)


def with_binding(run_dir: str, destination: str, binding: str) -> str:
  """A copy of ``run_dir`` whose config adds ``binding`` (its results.json unchanged)."""
  shutil.copytree(run_dir, destination, ignore=shutil.ignore_patterns(".lock"))
  with open(os.path.join(destination, "operative_config.gin"), "a") as f:
    f.write(f"\n{binding}\n")
  return destination


def test_paired_differences_on_shared_tasks(runs, tmp_path):
  report = compare.paired_differences(runs, chunk_size=4)
  assert report["shared_tasks"] and report["note"] is None
  assert (report["num_tasks"], report["steps"]) == (6, [0, 1, 2])
  results = [RunFolder(run).read_results() for run in runs]
  for distribution in ("test", "out_of_range"):
    figures = report["differences"][distribution]["l2f - maml"]
    assert list(figures) == [f"mse_after_{k}_steps" for k in (0, 1, 2)]
    for name, paired in figures.items():
      a, b = (r["evaluations"][distribution][name]["mean"] for r in results)
      # The mean paired difference is the difference of the runs' means on the same tasks.
      assert paired["mean"] == pytest.approx(b - a, rel=1e-4, abs=1e-5)
      assert paired["n"] == 6
    # Task difficulty (the amplitude) correlates the runs: pairing narrows the interval.
    assert figures["mse_after_0_steps"]["ci95"] < figures["mse_after_0_steps"]["unpaired_ci95"]
  text = compare.paired_table(report)
  # run_experiment.export_max_steps reached the export (through the Runner).
  assert export.load(runs[0]).max_steps == 3
  assert "Paired differences on the same 6 tasks (later run - maml" in text
  assert "  test l2f - maml mse_after_2_steps: " in text


def test_runs_on_other_tasks_get_a_note_and_no_paired_figures(runs, tmp_path):
  seed = with_binding(runs[1], str(tmp_path / "seed7"), "SinusoidRegression.eval_seed = 7")
  report = compare.paired_differences([runs[0], seed])
  assert not report["shared_tasks"] and report["differences"] == {}
  assert report["note"] == "the setting 'eval_seed' differs (maml: 20200614; seed7: 7)"
  assert compare.paired_table(report) == f"No paired differences: {report['note']}."
  shots = with_binding(runs[1], str(tmp_path / "shots10"), "SinusoidRegression.num_shots = 10")
  assert "the setting 'num_shots' differs (maml: 5; shots10: 10)" in compare.paired_differences(
      [runs[0], shots])["note"]
  # A different number of evaluation tasks: the note says how to pair them anyway.
  fewer = str(tmp_path / "fewer")
  shutil.copytree(runs[1], fewer, ignore=shutil.ignore_patterns(".lock"))
  with open(os.path.join(fewer, "results.json")) as f:
    results = json.load(f)
  for figures in results["evaluations"].values():
    for value in figures.values():
      value["n"] = 4
  with open(os.path.join(fewer, "results.json"), "w") as f:
    json.dump(results, f)
  reason, _, _ = compare.check_shared_tasks([runs[0], fewer])
  assert reason == "num_eval_tasks differs (maml: 6; fewer: 4); pass --num_tasks to pair them " \
                   "on that many tasks"
  assert compare.check_shared_tasks([runs[0], fewer], num_tasks=4)[0] is None
  # Meta-RL results (metric "return") are not paired: one line says so.
  results["metric"] = "return"
  with open(os.path.join(fewer, "results.json"), "w") as f:
    json.dump(results, f)
  assert compare.paired_table(compare.paired_differences([runs[0], fewer])) == (
      "No paired differences: meta-RL runs (fewer) are not paired here: their returns come "
      "from sampled episodes, not fixed tasks.")
