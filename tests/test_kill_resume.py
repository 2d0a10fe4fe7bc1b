"""Kill and resume: tiny sinusoid, glyphs and 2D-navigation runs SIGKILLed at random moments and
re-run with the same command end exactly as uninterrupted runs (benchmarks/kill_resume.py).

Two kills per domain, the three domains at once (each fuzzes in its own folders); the full
fuzzing, 20 kills per domain, is the command benchmarks/kill_resume.py (docs/robustness.md)."""

import pytest

from benchmarks import kill_resume

pytestmark = pytest.mark.slow

KILLS = 2
# Not LEO (benchmarks/kill_resume.py --domains=leo): it made this test 168 -> 275 s (2-core
# CPU shared with other jobs).
DOMAINS = ("sinusoid", "glyphs", "navigation")
CHECKS = ("weights", "results", "best", "saved_model", "figure", "stages", "data")


def test_killed_runs_resume_to_the_results_of_an_uninterrupted_run(tmp_path):
  reports = kill_resume.run(str(tmp_path / "fuzz"), DOMAINS, kills=KILLS, seed=0,
                            parallel=len(DOMAINS), say=lambda text: None)
  summary = kill_resume.table(reports)
  for report in reports:
    problems = "\n".join(report.problems)
    assert len(report.kills) == KILLS, summary
    assert report.resumes >= KILLS and report.resumes_ok == report.resumes, problems
    assert report.folders, problems
    for check in CHECKS:
      assert report.all_equal(check), f"{report.experiment.name} {check}:\n{problems}"
    # No temporary file survives, not even TensorFlow's <checkpoint>_temp/ of a killed save
    # (the next run removes it: RunFolder.remove_leftovers).
    leftovers = [path for comparison in report.comparisons for path in comparison["leftovers"]]
    assert not leftovers, problems
