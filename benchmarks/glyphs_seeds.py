"""MAML and MAML+L2F on glyphs over training seeds: l2f_tf against the authors' PyTorch code.

  python benchmarks/glyphs_seeds.py --runs=runs/glyphs_seeds     # 2 learners x 3 seeds x 2
  python benchmarks/glyphs_seeds.py --runs=runs/glyphs_seeds --seeds=0,1,2,3,4 \\
      --implementations=l2f_tf                                 # more seeds, l2f_tf only
  python benchmarks/glyphs_seeds.py --runs=runs/glyphs_seeds --table_only --json=table.json
  python benchmarks/glyphs_seeds.py --runs=runs/glyphs --seeds=0 --shots=1,5 \
      --implementations=l2f_tf      # the four shipped glyphs files as documented (seed 0)

Every run is one training of 5-way 1-shot (or ``--shots``) glyphs (1,000 meta-iterations, the
shipped protocol of ``gin/glyphs/setup.gin``) and its test on 600 episodes, accuracy after the
5 trained inner steps, for the best validated checkpoint and for the top-3 ensemble:

- l2f_tf: ``run_experiment.py --gin_file=gin/glyphs/<learner>_<shots>shot.gin`` with
  ``Trainer.seed`` and ``build_learner.seed`` set to the seed (the test episodes are the same
  for every seed);
- the authors' code (github.com/baiksung/L2F) from the scratch folder and venv that
  ``vision_step.py --reference_setup`` makes, driven by ``reference_glyphs_driver.py`` on the
  same glyphs files and protocol (its docstring lists what is set and what stays theirs); the
  seed sets their weights and training episodes, their validation and test episodes are fixed.

Runs go one after the other (seed by seed, so a partial sweep is balanced), each into its own
folder under ``--runs``; a finished run (its results.json exists) is not run again, and a run
that was stopped resumes from its last checkpoint. Each run's output goes to ``<run>.log``.
The table gives each seed's figures, the mean over seeds with a 95% CI from Student's t (3
seeds: 4.30 standard errors), and the difference of the two implementations' means with
Welch's 95% CI: the seeds of two implementations are not paired.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import functools
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from absl import app, flags

if __package__:  # imported as benchmarks.glyphs_seeds (the tests)
  from benchmarks import peer_code, vision_step
else:  # run as a script: its folder is on sys.path
  import peer_code  # The scratch copy's errors.
  import vision_step  # The authors' scratch setup.

from l2f_tf import atomic
from l2f_tf.stats import difference_t_ci95, mean_and_t_ci95

RUNS = flags.DEFINE_string("runs", "runs/glyphs_seeds", "Folder of every run (and its log).")
SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
LEARNERS = flags.DEFINE_list("learners", ["maml", "l2f"], "maml and/or l2f.")
SHOTS = flags.DEFINE_list("shots", ["1"], "Shots per class: 1 and/or 5 (the glyphs gin files).")
IMPLEMENTATIONS_FLAG = flags.DEFINE_list("implementations", ["l2f_tf", "authors"],
                                         "l2f_tf and/or authors.")
TABLE_ONLY = flags.DEFINE_boolean("table_only", False, "Train nothing: tabulate finished runs.")
OUTPUT = flags.DEFINE_string("json", None, "Also write every figure to this JSON file.")
WORKERS = flags.DEFINE_integer("reference_workers", 1, "The authors' data-loader processes.")

L2F_TF, AUTHORS = "l2f_tf", "authors"
IMPLEMENTATIONS = (L2F_TF, AUTHORS)
HERE = os.path.dirname(os.path.abspath(__file__))
RUN_EXPERIMENT = os.path.join(os.path.dirname(HERE), "run_experiment.py")
DRIVER = os.path.join(HERE, "reference_glyphs_driver.py")
# The glyphs dataset of gin/glyphs/setup.gin (tests/test_glyphs_seeds.py checks the file).
GLYPHS = {"num_classes": 600, "instances_per_class": 20, "image_size": 28}
STEPS = 5  # The trained (and tested) number of inner steps.


def run_name(implementation: str, learner: str, shots: int, seed: int) -> str:
  return f"{implementation}/{learner}_{shots}shot_seed{seed}"


def l2f_tf_command(learner: str, shots: int, seed: int, run_dir: str) -> List[str]:
  """The documented training command with the seed bound."""
  return [sys.executable, RUN_EXPERIMENT, f"--gin_file=gin/glyphs/{learner}_{shots}shot.gin",
          f"--root_dir={run_dir}", f"--gin_bindings=Trainer.seed = {seed}",
          f"--gin_bindings=build_learner.seed = {seed}"]


def l2f_tf_results(run_dir: str) -> Optional[Dict[str, float]]:
  """{"best", "ensemble"}: test accuracy after 5 steps from a finished run's results.json."""
  path = os.path.join(run_dir, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    evaluations = json.load(f)["evaluations"]
  key = f"accuracy_after_{STEPS}_steps"
  best, ensemble = evaluations["test"][key], evaluations["test_ensemble"][key]
  return {"best": best["mean"], "ensemble": ensemble["mean"],
          "best_ci95": best["ci95"], "ensemble_ci95": ensemble["ci95"]}


def authors_command(python: str, src: str, data: str, work_dir: str, learner: str, shots: int,
                    seed: int, workers: int) -> List[str]:
  return [python, DRIVER, f"--source={src}", f"--data={data}", f"--work_dir={work_dir}",
          f"--learner={learner}", f"--shots={shots}", f"--seed={seed}", f"--workers={workers}"]


def authors_results_path(work_dir: str, learner: str, shots: int, seed: int) -> str:
  """Where the driver writes a run's results.json (its experiment folder in ``work_dir``)."""
  return os.path.join(work_dir, f"glyphs_{learner}_{shots}shot_seed{seed}", "results.json")


def authors_results(path: str) -> Optional[Dict[str, float]]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    results = json.load(f)
  best, ensemble = results["test_best"], results["test_ensemble"]
  return {"best": best["mean"], "ensemble": ensemble["mean"], "best_ci95": best["ci95"],
          "ensemble_ci95": ensemble["ci95"]}


class Sweep:
  """The runs of one sweep: where each lives, how to train it, and its figures once done."""

  def __init__(self, runs: str, learners: List[str], shots: int, seeds: List[int],
               implementations: List[str], reference: Optional[Dict] = None):
    self.runs, self.learners, self.shots, self.seeds = runs, learners, shots, seeds
    self.implementations = implementations
    self.reference = reference  # {"python", "src", "data", "workers"} for the authors' runs

  def order(self) -> List[tuple]:
    """(implementation, learner, seed), seed by seed."""
    return [(implementation, learner, seed) for seed in self.seeds for learner in self.learners
            for implementation in self.implementations]

  def folder(self, implementation: str, learner: str, seed: int) -> str:
    if implementation == L2F_TF:
      return os.path.join(self.runs, run_name(L2F_TF, learner, self.shots, seed))
    return os.path.join(self.runs, AUTHORS)  # Their experiment folders go inside.

  def results(self, implementation: str, learner: str, seed: int) -> Optional[Dict[str, float]]:
    folder = self.folder(implementation, learner, seed)
    if implementation == L2F_TF:
      return l2f_tf_results(folder)
    return authors_results(authors_results_path(folder, learner, self.shots, seed))

  def command(self, implementation: str, learner: str, seed: int) -> List[str]:
    folder = self.folder(implementation, learner, seed)
    if implementation == L2F_TF:
      return l2f_tf_command(learner, self.shots, seed, folder)
    if self.reference is None:
      raise ValueError("the authors' runs need their scratch setup (reference=...)")
    r = self.reference
    return authors_command(r["python"], r["src"], r["data"], folder, learner, self.shots, seed,
                           r["workers"])

  def log(self, implementation: str, learner: str, seed: int) -> str:
    return os.path.join(self.runs, run_name(implementation, learner, self.shots, seed) + ".log")

  def train(self, run: Callable = subprocess.run,
            echo: Callable = functools.partial(print, flush=True)) -> List[str]:
    """Trains every run that has no results yet; returns one line per failed run."""
    pending = [key for key in self.order() if self.results(*key) is None]
    echo(f"{len(self.order()) - len(pending)} of {len(self.order())} runs done; "
         f"{len(pending)} to train.")
    failures, started = [], time.time()
    for index, key in enumerate(pending):
      log = self.log(*key)
      os.makedirs(os.path.dirname(log), exist_ok=True)
      echo(f"[{index + 1}/{len(pending)}] {run_name(key[0], key[1], self.shots, key[2])} "
           f"(log: {log})")
      with open(log, "a") as out:
        code = run(self.command(*key), stdout=out, stderr=subprocess.STDOUT,
                   cwd=os.path.dirname(HERE)).returncode
      elapsed = time.time() - started
      eta = elapsed / (index + 1) * (len(pending) - index - 1)
      figures = self.results(*key)
      if code or figures is None:
        failures.append(f"{run_name(key[0], key[1], self.shots, key[2])} failed (exit {code}): "
                        f"see {log}")
        echo(failures[-1])
      else:
        echo(f"  best {100 * figures['best']:.2f}, ensemble {100 * figures['ensemble']:.2f}; "
             f"{elapsed / 60:.1f} min so far, ETA {eta / 60:.0f} min")
    return failures

  def table(self) -> Dict:
    """{learner: {implementation: {"seeds": {seed: figures}, "best"/"ensemble": mean and t
    CI over seeds (one finished seed: its CI over test episodes)}, "difference":
    {"best"/"ensemble": authors - l2f_tf, Welch CI}}} over finished runs."""
    table = {}
    for learner in self.learners:
      entry = {}
      for implementation in self.implementations:
        per_seed = {seed: self.results(implementation, learner, seed) for seed in self.seeds}
        per_seed = {seed: figures for seed, figures in per_seed.items() if figures}
        entry[implementation] = {"seeds": per_seed}
        for kind in ("best", "ensemble"):
          values = [figures[kind] for figures in per_seed.values()]
          if len(values) >= 2:
            entry[implementation][kind] = dict(mean_and_t_ci95(values), over="seeds")
          elif values:  # One run: its CI over test episodes.
            (figures,) = per_seed.values()
            entry[implementation][kind] = {"mean": figures[kind], "n": 1, "over": "episodes",
                                           "ci95": figures[f"{kind}_ci95"]}
      if all(len(entry.get(i, {}).get("seeds", {})) >= 2 for i in IMPLEMENTATIONS):
        entry["difference"] = {
            kind: difference_t_ci95([f[kind] for f in entry[AUTHORS]["seeds"].values()],
                                    [f[kind] for f in entry[L2F_TF]["seeds"].values()])
            for kind in ("best", "ensemble")}
      table[learner] = entry
    return table


def percent(figures: Dict[str, float], signed: bool = False) -> str:
  sign = "+" if signed else ""
  return f"{100 * figures['mean']:{sign}.2f} +- {100 * figures['ci95']:.2f}"


def markdown(table: Dict, seeds: List[int], shots: int) -> str:
  """One row per learner and implementation: each seed's best / ensemble accuracy (%), then
  the means with their t CI over seeds (one seed: its CI over test episodes, marked "(1
  run)"); a row per learner with the authors' minus l2f_tf's mean."""
  names = {"maml": "MAML", "l2f": "MAML+L2F"}
  header = (["| learner | implementation"] + [f"seed {s}" for s in seeds]
            + ["best checkpoint, mean +- 95% CI", "top-3 ensemble, mean +- 95% CI |"])
  lines = [" | ".join(header), "|" + " --- |" * (len(seeds) + 4)]
  for learner, entry in table.items():
    for implementation in IMPLEMENTATIONS:
      if implementation not in entry:
        continue
      row = entry[implementation]
      cells = [f"{100 * row['seeds'][s]['best']:.2f} / {100 * row['seeds'][s]['ensemble']:.2f}"
               if s in row["seeds"] else "-" for s in seeds]
      means = [percent(row[kind]) + (" (1 run)" if row[kind]["n"] == 1 else "")
               if kind in row else "-" for kind in ("best", "ensemble")]
      lines.append(f"| {names.get(learner, learner)} {shots}-shot | {implementation} | "
                   + " | ".join(cells + means) + " |")
    if "difference" in entry:
      lines.append(f"| {names.get(learner, learner)} {shots}-shot | authors - l2f_tf | "
                   + " | ".join([""] * len(seeds)) + " | "
                   + " | ".join(percent(entry["difference"][k], signed=True)
                                for k in ("best", "ensemble")) + " |")
  return "\n".join(lines)


def commit() -> str:
  """The l2f_tf commit these runs are made at (``git describe --always --dirty``)."""
  out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                       capture_output=True, text=True, cwd=HERE)
  return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def reference_setup() -> Dict:
  """The authors' scratch code and venv (vision_step's setup) and the glyphs folder."""
  from l2f_tf.data.glyphs import ensure_glyphs
  python, src, origin = vision_step.setup_reference(
      *vision_step.reference_location())
  print(f"authors' code: {src} ({origin}); venv python: {python}", flush=True)
  return {"python": python, "src": src, "data": ensure_glyphs(**GLYPHS),
          "workers": WORKERS.value}


def main(argv):
  del argv
  for name in IMPLEMENTATIONS_FLAG.value:
    if name not in IMPLEMENTATIONS:
      raise app.UsageError(f"--implementations: unknown {name!r}; use l2f_tf and/or authors.")
  for name in LEARNERS.value:
    if name not in ("maml", "l2f"):
      raise app.UsageError(f"--learners: unknown {name!r}; use maml and/or l2f.")
  try:
    seeds = [int(s) for s in SEEDS.value]
  except ValueError as error:
    raise app.UsageError(f"--seeds must be integers: {error}") from error
  if not SHOTS.value or set(SHOTS.value) - {"1", "5"}:
    raise app.UsageError(f"--shots: {','.join(SHOTS.value)}; use 1 and/or 5.")
  implementations = [i for i in IMPLEMENTATIONS if i in IMPLEMENTATIONS_FLAG.value]
  reference = None
  if AUTHORS in implementations and not TABLE_ONLY.value:
    try:
      reference = reference_setup()
    except peer_code.ReferenceUnavailable as error:
      raise app.UsageError(f"the authors' code is unavailable ({error}); pass "
                           "--reference_git_dir, or --implementations=l2f_tf") from error
  failures, tables = [], {}
  for shots in (int(s) for s in SHOTS.value):
    sweep = Sweep(RUNS.value, LEARNERS.value, shots, seeds, implementations, reference)
    failures += [] if TABLE_ONLY.value else sweep.train()
    tables[shots] = sweep.table()
  for shots, table in tables.items():
    print(markdown(table, seeds, shots))
  if OUTPUT.value:
    atomic.write_json(OUTPUT.value, {"seeds": seeds, "inner_steps": STEPS, "commit": commit(),
                                     "tables": {f"{s}shot": t for s, t in tables.items()}})
  for line in failures:
    print(line)
  if failures:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
