"""``benchmarks/glyphs_seeds.py``: the sweep's order, resumption, failures and table, with the
training processes replaced by fakes that write each implementation's results file; and the
l2f_tf command's bindings checked against the gin files."""

import json
import os
import subprocess

import gin
import pytest

from benchmarks import glyphs_seeds
from l2f_tf import config
from l2f_tf.stats import t_quantile_975
from l2f_tf.train import restore  # noqa: F401  (registers every configurable)

# Test accuracy per (implementation, learner, seed): best checkpoint, ensemble.
ACCURACY = {("l2f_tf", "maml", 0): (0.80, 0.83), ("l2f_tf", "maml", 1): (0.82, 0.84),
            ("l2f_tf", "maml", 2): (0.84, 0.85), ("authors", "maml", 0): (0.83, 0.86),
            ("authors", "maml", 1): (0.84, 0.87), ("authors", "maml", 2): (0.85, 0.86),
            ("l2f_tf", "l2f", 0): (0.95, 0.94), ("l2f_tf", "l2f", 1): (0.94, 0.95),
            ("l2f_tf", "l2f", 2): (0.96, 0.95), ("authors", "l2f", 0): (0.94, 0.93),
            ("authors", "l2f", 1): (0.93, 0.94), ("authors", "l2f", 2): (0.95, 0.94)}
REFERENCE = {"python": "/venv/bin/python", "src": "/scratch/src", "data": "/cache/glyphs",
             "workers": 1}


def _write_results(command, fail=()):
  """What each implementation's training would leave behind, read from its command line."""
  arguments = dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)
  if "--source" in " ".join(command):
    key = ("authors", arguments["learner"], int(arguments["seed"]))
    if key in fail:
      return 1
    best, ensemble = ACCURACY[key]
    path = glyphs_seeds.authors_results_path(arguments["work_dir"], key[1], 1, key[2])
    results = {"test_best": {"mean": best, "ci95": 0.01},
               "test_ensemble": {"mean": ensemble, "ci95": 0.02}}
  else:
    learner = os.path.basename(arguments["gin_file"]).split("_")[0]
    key = ("l2f_tf", learner, int(arguments["gin_bindings"].rsplit("=", 1)[1]))
    if key in fail:
      return 1
    best, ensemble = ACCURACY[key]
    path = os.path.join(arguments["root_dir"], "results.json")
    metric = "accuracy_after_5_steps"
    results = {"evaluations": {"test": {metric: {"mean": best, "ci95": 0.01}},
                               "test_ensemble": {metric: {"mean": ensemble, "ci95": 0.02}}}}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(results, f)
  return 0


def _sweep(tmp_path, seeds=(0, 1, 2)):
  return glyphs_seeds.Sweep(str(tmp_path / "runs"), ["maml", "l2f"], 1, list(seeds),
                            ["l2f_tf", "authors"], REFERENCE)


def _fake_run(calls, fail=()):
  def run(command, stdout, stderr, cwd):
    assert stderr == subprocess.STDOUT and os.path.exists(stdout.name)
    calls.append(command)
    return subprocess.CompletedProcess(command, _write_results(command, fail))
  return run


def test_runs_go_seed_by_seed_and_a_finished_run_is_not_run_again(tmp_path):
  sweep, calls, lines = _sweep(tmp_path), [], []
  assert sweep.train(run=_fake_run(calls), echo=lines.append) == []
  order = [(("authors" if "--source=/scratch/src" in c else "l2f_tf"),
            next(a for a in c if a.startswith(("--learner=", "--gin_file="))))
           for c in calls]
  assert len(calls) == 12 and order[:4] == [
      ("l2f_tf", "--gin_file=gin/glyphs/maml_1shot.gin"), ("authors", "--learner=maml"),
      ("l2f_tf", "--gin_file=gin/glyphs/l2f_1shot.gin"), ("authors", "--learner=l2f")]
  assert lines[0] == "0 of 12 runs done; 12 to train."
  assert "ETA" in lines[2] and "best 80.00, ensemble 83.00" in lines[2]
  assert os.path.exists(sweep.log("authors", "maml", 0))
  again = []
  assert sweep.train(run=_fake_run(again), echo=lines.append) == [] and again == []
  assert lines[-1] == "12 of 12 runs done; 0 to train."


def test_the_commands_bind_the_seed_and_use_the_shipped_files(tmp_path):
  sweep = _sweep(tmp_path)
  ours = sweep.command("l2f_tf", "l2f", 2)
  assert ours[1] == glyphs_seeds.RUN_EXPERIMENT and os.path.exists(ours[1])
  assert ours[2:] == ["--gin_file=gin/glyphs/l2f_1shot.gin",
                      f"--root_dir={tmp_path}/runs/l2f_tf/l2f_1shot_seed2",
                      "--gin_bindings=Trainer.seed = 2", "--gin_bindings=build_learner.seed = 2"]
  theirs = sweep.command("authors", "maml", 1)
  assert theirs[:2] == ["/venv/bin/python", glyphs_seeds.DRIVER] and os.path.exists(theirs[1])
  assert "--data=/cache/glyphs" in theirs and "--seed=1" in theirs
  # The bindings are valid, and the authors' runs read the glyphs dataset the gin file makes.
  gin.clear_config()
  try:
    config.parse([ours[2].split("=", 1)[1]], [ours[4].split("=", 1)[1],
                                              ours[5].split("=", 1)[1]])
    bindings = config.parsed_bindings()
  finally:
    gin.clear_config()
  assert bindings["Trainer.seed"] == "2" and bindings["build_learner.seed"] == "2"
  for name, value in glyphs_seeds.GLYPHS.items():
    assert bindings[f"ensure_glyphs.{name}"] == str(value)
  with pytest.raises(ValueError, match="scratch setup"):
    glyphs_seeds.Sweep(str(tmp_path), ["maml"], 1, [0], ["authors"]).command("authors", "maml", 0)


def test_a_failed_run_is_one_line_and_the_others_go_on(tmp_path):
  calls, lines = [], []
  failures = _sweep(tmp_path).train(run=_fake_run(calls, fail={("authors", "l2f", 1)}),
                                    echo=lines.append)
  assert len(calls) == 12
  log = os.path.join(tmp_path, "runs", "authors", "l2f_1shot_seed1.log")
  assert failures == [f"authors/l2f_1shot_seed1 failed (exit 1): see {log}"]


def test_table_means_over_seeds_with_t_and_the_difference_with_welch(tmp_path):
  sweep = _sweep(tmp_path)
  sweep.train(run=_fake_run([]), echo=lambda line: None)
  table = sweep.table()
  maml = table["maml"]
  assert maml["l2f_tf"]["best"]["mean"] == pytest.approx(0.82)
  assert maml["l2f_tf"]["best"]["ci95"] == pytest.approx(t_quantile_975(2) * 0.02 / 3 ** 0.5)
  assert maml["difference"]["best"]["mean"] == pytest.approx(0.02)
  text = glyphs_seeds.markdown(table, [0, 1, 2], 1).splitlines()
  assert text[0] == ("| learner | implementation | seed 0 | seed 1 | seed 2 | best checkpoint, "
                     "mean +- 95% CI | top-3 ensemble, mean +- 95% CI |")
  assert text[2].startswith("| MAML 1-shot | l2f_tf | 80.00 / 83.00 | 82.00 / 84.00 | "
                            "84.00 / 85.00 | 82.00 +- 4.97 |")
  assert text[4].startswith("| MAML 1-shot | authors - l2f_tf |  |  |  | +2.00 +- ")
  assert len(text) == 8


def test_a_partial_sweep_tabulates_what_finished(tmp_path):
  sweep = _sweep(tmp_path)
  sweep.train(run=_fake_run([], fail={k for k in ACCURACY if k[2] == 2 or k[0] == "authors"
                                      or (k[1], k[2]) == ("l2f", 1)}), echo=lambda line: None)
  table = sweep.table()
  assert set(table["maml"]["l2f_tf"]["seeds"]) == {0, 1}
  assert table["maml"]["l2f_tf"]["best"]["over"] == "seeds"
  assert table["maml"]["authors"] == {"seeds": {}} and "difference" not in table["maml"]
  # One finished seed: its CI over test episodes, said in the table.
  assert table["l2f"]["l2f_tf"]["ensemble"] == {"mean": 0.94, "ci95": 0.02, "n": 1,
                                                "over": "episodes"}
  text = glyphs_seeds.markdown(table, [0, 1, 2], 1)
  assert "| MAML 1-shot | authors | - | - | - | - | - |" in text
  assert ("| MAML+L2F 1-shot | l2f_tf | 95.00 / 94.00 | - | - | 95.00 +- 1.00 (1 run) | "
          "94.00 +- 2.00 (1 run) |") in text
