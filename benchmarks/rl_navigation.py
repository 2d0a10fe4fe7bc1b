"""MAML-TRPO vs MAML+L2F-TRPO on 2D navigation at the reference settings.

  python benchmarks/rl_navigation.py --root_dir=runs/rl_navigation/reinforce
  python benchmarks/rl_navigation.py --root_dir=runs/rl_navigation/lvc --inner_objective=lvc

Trains gin/rl/navigation2d_{maml,l2f}.gin (meta-batch 20, 20 trajectories, horizon 100, one
policy-gradient step at lr 0.1, TRPO with max KL 0.01) for the reference's 500 meta-iterations
(or fewer if --max_minutes_per_method runs out first), then prints the average return on the
same held-out tasks after 0..3 adaptation steps (95% CI over tasks), the paired difference
L2F - MAML after one step (95% CI over the same tasks), a random policy's return (actions ~
N(0, 0.1^2), clipped; and uniform on the action box), an oracle's (it knows the goal and goes
straight at full speed: action = clip(goal - position)), the fraction of the random-to-oracle
gap each method closes after one step, and the sampler's environment steps per second.

--averaging=trajectory (the default, MAML-RL's) averages every loss within each trajectory,
then over trajectories; step averages over all valid steps.
--inner_objective=reinforce is MAML-RL's inner loss (the reference); lvc is ProMP's
low-variance-curvature loss: the same inner step, a meta-gradient that also credits the
support data's dependence on theta (see l2f_tf.rl.policy_gradient.lvc_loss).
Re-running continues the runs (each resumes its checkpoint).

  python benchmarks/rl_navigation.py --table --root_dir=runs/rl_navigation

prints the markdown tables of every finished pair under --root_dir (each summary.json, any
depth): the returns after 0..3 steps per objective, seed and method with the baselines, and
the paired L2F - MAML differences after one step.

  python benchmarks/rl_navigation.py --compare_reference --rounds=3 \
      [--reference_git_dir=<local snapshot of tristandeleu/pytorch-maml-rl>]

times l2f_tf's MAML-TRPO and pytorch-maml-rl's (the PyTorch MAML-RL code) at the same settings
(their configs/maml/2d-navigation.yaml: 20 tasks x 20 trajectories x horizon 100, one
REINFORCE step at lr 0.1, TRPO with max KL 0.01): seconds per meta-iteration, each side in a
process of its own after --warmup_iterations untimed ones, one side after the other in every
round. l2f_tf runs with its defaults (Gauss-Newton curvature products), like for like
(MetaRLTrainer.curvature = "hessian": exact Hessian-vector products, as the peer) and with the
curvature products on half of each meta-batch's tasks (MetaRLTrainer.curvature_subsample =
0.5; the gradient and the line search still use all of them); the peer at
its fastest setting on this CPU (OMP_NUM_THREADS=1, one torch thread, 2 sampler workers) and
out of the box (torch's threads, cpu_count - 1 workers, their train.py default). The peer's
code goes to a scratch folder with its own venv (benchmarks/peer_code.py; compatibility
patches for torch 2, gym 0.23 and numpy 2 in benchmarks/reference_maml_rl_driver.py).
--curve_iterations=500 also trains both for 500 meta-iterations (l2f_tf's MAML run as the
training above, at --root_dir/maml; the peer at its fastest setting, written to
--root_dir/pytorch_maml_rl_curve.json) and plots the after-adaptation return of their training
batches, moving averages over 20 meta-iterations with 95% CIs, on one figure.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import gin
import numpy as np
from absl import app, flags, logging

from l2f_tf import atomic
from l2f_tf.rl import envs
from l2f_tf.rl.sampler import Sampler
from l2f_tf.train import experiment, restore

if __package__:  # imported as benchmarks.rl_navigation (the tests)
  from benchmarks import peer_code, rl_training_curves
else:  # run as a script: its folder is on sys.path
  import peer_code  # The peer's scratch copy and venv.
  import rl_training_curves  # The runs' scalars.

ROOT = flags.DEFINE_string("root_dir", "runs/rl_navigation", "Where the two runs go.")
TABLE = flags.DEFINE_bool("table", False, "Print the markdown tables of every finished pair "
                          "under --root_dir (each summary.json) instead of training.")
ITERATIONS = flags.DEFINE_integer("iterations", 500, "Meta-iterations per method (reference: "
                                  "500).")
MINUTES = flags.DEFINE_float("max_minutes_per_method", 30.0, "Training time box per method.")
EVAL_TASKS = flags.DEFINE_integer("num_eval_tasks", 200, "Held-out tasks (multiple of 20).")
OBJECTIVE = flags.DEFINE_enum("inner_objective", "reinforce", ["reinforce", "lvc"],
                              "Inner-loop loss (MetaRLDomain.inner_objective).")
AVERAGING = flags.DEFINE_enum("averaging", "trajectory", ["trajectory", "step"],
                              "How losses, KL and advantage normalisation average over a task's "
                              "trajectories (MetaRLDomain.averaging).")
BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Extra gin bindings of both learners' runs (and of --time_l2f), e.g. "
    "\"MetaRLTrainer.curvature_subsample = 0.5\"; recorded in summary.json and the table.")
SEED = flags.DEFINE_integer("seed", 0, "Training seed (MetaRLTrainer.seed and build_learner.seed: "
                            "tasks, sampling noise, initial weights); the held-out tasks stay.")
TIMED = flags.DEFINE_integer("timed_iterations", 8, "--compare_reference: timed meta-iterations "
                             "per side and round (8 after 2 include l2f_tf's one conflict "
                             "measurement per 10 iterations).")
WARMUP = flags.DEFINE_integer("warmup_iterations", 2, "--compare_reference: untimed first "
                              "meta-iterations (tracing, worker start-up).")
PEER_FOLDER, PEER_URL = "reference_maml_rl", "https://github.com/tristandeleu/pytorch-maml-rl"
COMPARE_OUTPUT = flags.DEFINE_string("compare_output", None, "--compare_reference: also write "
                                     "every round's figures to this JSON file.")
CURVE = flags.DEFINE_integer("curve_iterations", 0, "--compare_reference: also train both "
                             "for this many meta-iterations (the reference: 500) and plot "
                             "their after-adaptation training returns on one figure "
                             "(<root_dir>/curves.png; l2f_tf's run is <root_dir>/maml).")
CURVE_WINDOW = 20  # meta-iterations per moving-average point of the curves
TIME_L2F = flags.DEFINE_bool("time_l2f", False, "Internal: time l2f_tf's MAML-TRPO "
                             "(with --gin_bindings) in this process.")
TIMING_OUTPUT = flags.DEFINE_string("timing_output", None, "Internal: where --time_l2f writes.")
METHODS = {"MAML": "maml", "MAML+L2F": "l2f"}
PEER_REQUIREMENTS = ["torch==2.13.0", "numpy", "gym==0.23.0", "pyyaml", "tqdm"]
PEER_IMPORTS = "torch, gym, yaml"
PEER_MARKER = "maml_rl/metalearners/maml_trpo.py"  # a file the fetched code must hold
PEER_DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "reference_maml_rl_driver.py")
# (label, l2f_tf's gin bindings or None (the peer), peer environment and driver flags or None)
# (label, gin bindings for l2f_tf or None, (environment, options) for the peer or None).
DEFAULTS = ("l2f_tf defaults (Gauss-Newton curvature)", [], None)
LIKE_FOR_LIKE = ("l2f_tf like for like (exact Hessian products)",
                 ["MetaRLTrainer.curvature = 'hessian'"], None)
HALF_TASKS = ("l2f_tf, curvature products on half the tasks",
              ["MetaRLTrainer.curvature_subsample = 0.5"], None)
PEER_FASTEST = ("pytorch-maml-rl fastest (OMP_NUM_THREADS=1, 2 workers)", None,
                ({"OMP_NUM_THREADS": "1"}, ["--threads=1", "--num_workers=2"]))
PEER_DEFAULT = ("pytorch-maml-rl out of the box", None,
                ({}, [f"--num_workers={max((os.cpu_count() or 2) - 1, 1)}"]))
SIDES = (DEFAULTS, LIKE_FOR_LIKE, HALF_TASKS, PEER_FASTEST, PEER_DEFAULT)
RATIOS = ((DEFAULTS[0], PEER_FASTEST[0], 0.2), (LIKE_FOR_LIKE[0], PEER_FASTEST[0], 0.3),
          (HALF_TASKS[0], PEER_FASTEST[0], None), (DEFAULTS[0], PEER_DEFAULT[0], None))
EVAL_SEED = 20200614  # MetaRLDomain.eval_seed: the held-out tasks of the evaluation


def reference_returns(num_tasks: int, seed: int = EVAL_SEED):
  """Per-task mean returns of the baselines on the evaluation's held-out tasks, and env steps/s.

  Returns:
    ({"random": [...], "uniform": [...], "oracle": [...]}, median env steps per second).
  """
  sampler = Sampler("Navigation2D", num_tasks=20, trajectories_per_task=20, horizon=100)
  env = envs.make_env("Navigation2D")
  rng = np.random.default_rng(seed)
  returns = {"random": [], "uniform": [], "oracle": []}
  speeds = []
  for r in range(num_tasks // 20):
    tasks = env.sample_tasks(20, seed=[seed, r])  # the evaluation's held-out tasks
    goals = np.stack([t["goal"] for t in tasks]).astype(np.float32)[:, None, :]
    log_std = np.zeros((20, 2), np.float32)
    policies = {
        "random": lambda o: (np.zeros_like(o), log_std + np.log(0.1)),
        # A deterministic policy (log-std -30) whose mean is drawn uniformly on the action box.
        "uniform": lambda o: (rng.uniform(-0.1, 0.1, o.shape).astype(np.float32),
                              log_std - 30.0),
        "oracle": lambda o: (np.clip(goals - o, -0.1, 0.1), log_std - 30.0),
    }
    for name, policy in policies.items():
      batch = sampler.sample(tasks, policy, seed=[seed, r, 0])
      if name == "random":
        speeds.append(sampler.last_steps_per_second)
      returns[name].extend((batch.rewards * batch.mask).sum(-1).mean(-1))
  return {k: np.array(v) for k, v in returns.items()}, float(np.median(speeds))


def ci(values):
  values = np.asarray(values)
  return values.mean(), 1.96 * values.std(ddof=1) / np.sqrt(len(values))


def time_l2f(bindings, warmup: int, timed: int) -> dict:
  """l2f_tf's MAML-TRPO meta-iterations at the reference navigation settings with ``bindings``,
  in this process: the seconds of each timed one and the after-adaptation return of every
  one."""
  from l2f_tf.train.meta_rl_trainer import MetaRLTrainer  # pylint: disable=import-outside-toplevel
  domain = restore.parse_domain(["rl/navigation2d_maml.gin"], list(bindings))
  learner = experiment.build_learner(domain)
  trainer = MetaRLTrainer(learner, domain, tempfile.mkdtemp(prefix="rl_navigation_timing_"))
  seconds, after = [], []
  for i in range(warmup + timed):
    start = time.perf_counter()
    result = trainer.train_iteration(i)
    if i >= warmup:
      seconds.append(time.perf_counter() - start)
    after.append(result["return_after_adaptation"])
  return {"seconds": seconds, "after": after, "curvature": trainer.curvature,
          "curvature_subsample": trainer.curvature_subsample}


def run_side(side, python: str, src: str, warmup: int, timed: int) -> dict:
  """One side of a round in a process of its own: {"seconds": [...], ...}."""
  label, bindings, peer = side
  ours = bindings is not None
  with tempfile.TemporaryDirectory() as folder:
    output = os.path.join(folder, "side.json")
    if ours:
      command = [sys.executable, os.path.abspath(__file__), "--time_l2f",
                 f"--warmup_iterations={warmup}", f"--timed_iterations={timed}",
                 f"--timing_output={output}"] + [f"--gin_bindings={b}" for b in bindings]
      environment = dict(os.environ)
    else:
      variables, options = peer
      command = [python, PEER_DRIVER, f"--source={src}", f"--iterations={warmup + timed}",
                 f"--output={output}"] + options
      environment = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
                     **variables}
    peer_code.checked(subprocess.run, command, label, env=environment)
    with open(output) as f:
      record = json.load(f)
  if not ours:
    record["seconds"] = record["seconds"][warmup:]
  return record


def compare_reference(rounds: int, warmup: int, timed: int, folder: str, git_dir, url: str,
                      echo=print) -> list:
  """The rounds of the side-by-side timing (the peer's code set up in ``folder`` from
  ``git_dir`` or ``url``); prints each side and the ratios, returns them."""
  info = peer_code.machine_info()
  echo(f"machine: {info['cpu_model']}, {info['physical_cores']} cores, "
       f"{peer_code.busy_cpus():.2f} CPUs busy at start")
  python, src, origin = peer_code.setup(folder, git_dir, url, PEER_MARKER, PEER_REQUIREMENTS,
                                        PEER_IMPORTS, subprocess.run)
  echo(f"pytorch-maml-rl: {src} ({origin})")
  results = []
  for r in range(rounds):
    figures = {}
    for side in SIDES:
      record = run_side(side, python, src, warmup, timed)
      figures[side[0]] = {"median_s": statistics.median(record["seconds"]), **record}
      echo(f"round {r + 1}: {side[0]}: {figures[side[0]]['median_s']:.2f} s per "
           f"meta-iteration (median of {len(record['seconds'])}; "
           f"{min(record['seconds']):.2f}-{max(record['seconds']):.2f})")
    results.append(figures)
  for ours, theirs, target in RATIOS:
    ratios = [f[ours]["median_s"] / f[theirs]["median_s"] for f in results]
    goal = f"; target at most {target}x" if target else ""
    echo(f"{ours} / {theirs}: median {statistics.median(ratios):.2f}x over {rounds} rounds "
         f"({', '.join(f'{x:.2f}x' for x in ratios)}){goal}")
  return results


def train_run(prefix: str, iterations: int) -> dict:
  """Trains (or finishes) the learner's run under --root_dir with this script's settings."""
  root = os.path.join(ROOT.value, prefix)
  gin.clear_config()
  restore.setup_run(root, [f"rl/navigation2d_{prefix}.gin"],
                    [f"MetaRLTrainer.num_iterations = {iterations}",
                     f"Runner.max_seconds = {60 * MINUTES.value}",
                     f"run_experiment.num_eval_tasks = {EVAL_TASKS.value}",
                     f"MetaRLDomain.eval_seed = {EVAL_SEED}",
                     f"MetaRLDomain.inner_objective = '{OBJECTIVE.value}'",
                     f"MetaRLDomain.averaging = '{AVERAGING.value}'",
                     f"MetaRLTrainer.seed = {SEED.value}",
                     f"build_learner.seed = {SEED.value}"] + BINDINGS.value)
  return experiment.run_experiment(root)


def window_means(values, window: int = CURVE_WINDOW):
  """(last iteration of each full window, mean, 95% CI half-width over the window's values)."""
  values = np.asarray(values, float)
  ends, means, halves = [], [], []
  for end in range(window, len(values) + 1):
    part = values[end - window:end]
    ends.append(end)
    means.append(part.mean())
    halves.append(1.96 * part.std(ddof=1) / np.sqrt(window))
  return np.array(ends), np.array(means), np.array(halves)


def compare_curves(iterations: int, python: str, src: str, root: str, echo=print) -> dict:
  """After-adaptation training returns per meta-iteration of both implementations (training
  what is missing), their figure, and the mean of the last 50 iterations of each."""
  train_run("maml", iterations)
  ours = rl_training_curves.read_scalars(os.path.join(root, "maml"))
  steps, after = ours["return_after_adaptation"]
  curves = {"l2f_tf (defaults)": after[np.argsort(steps)][:iterations]}
  path = os.path.join(root, "pytorch_maml_rl_curve.json")
  record = {}
  if os.path.exists(path):
    with open(path) as f:
      record = json.load(f)
  if len(record.get("after", [])) < iterations:
    echo(f"pytorch-maml-rl: {iterations} meta-iterations (fastest setting) -> {path}")
    variables, options = PEER_FASTEST[2]
    peer_code.checked(subprocess.run, [python, PEER_DRIVER, f"--source={src}",
                                       f"--iterations={iterations}", f"--output={path}"]
                      + options, "pytorch-maml-rl's training",
                      env={**os.environ, **variables})
    with open(path) as f:
      record = json.load(f)
  curves["pytorch-maml-rl"] = np.mean(record["after"], axis=1)[:iterations]
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(7, 4.5))
  summary = {}
  for (label, values), color in zip(curves.items(), ("C0", "C1")):
    ends, means, halves = window_means(values)
    ax.plot(ends, means, color=color, label=label)
    ax.fill_between(ends, means - halves, means + halves, color=color, alpha=0.25)
    last = np.asarray(values[-50:], float)
    summary[label] = [float(last.mean()), float(1.96 * last.std(ddof=1) / np.sqrt(len(last)))]
    echo(f"{label}: after-adaptation training return, last {len(last)} meta-iterations: "
         f"{summary[label][0]:.2f} +- {summary[label][1]:.2f}")
  ax.set_xlabel("meta-iteration")
  ax.set_ylabel(f"return after one step (mean of {CURVE_WINDOW} meta-iterations, 95% CI)")
  ax.set_title("2D navigation, MAML-TRPO at the reference settings")
  ax.grid(alpha=0.3)
  ax.legend()
  figure = os.path.join(root, "curves.png")
  fig.savefig(figure, dpi=120, bbox_inches="tight")
  plt.close(fig)
  echo(f"Wrote {figure}")
  return summary


def tables(root: str) -> str:
  """Markdown of every finished pair under ``root`` (its summary.json files): returns per
  inner objective, averaging, seed and method, the baselines of the first pair, and the
  paired L2F - MAML differences after one step."""
  summaries = []
  for path in sorted(glob.glob(os.path.join(root, "**", "summary.json"), recursive=True)):
    with open(path) as f:
      summaries.append(json.load(f))
  summaries = [s for s in summaries if "methods" in s and "l2f_minus_maml_after_1_step" in s]
  if not summaries:
    raise SystemExit(f"No finished pair (summary.json) under {root}: train one first.")
  summaries.sort(key=lambda s: (s["inner_objective"] != "reinforce", s["inner_objective"],
                                s["averaging"] != "trajectory", bool(s.get("gin_bindings")),
                                s["seed"]))
  cell = lambda pair: f"{pair[0]:.2f} +- {pair[1]:.2f}"
  run = lambda s: (f"{s['inner_objective']}, {s['averaging']} averaging, seed {s['seed']}"
                   + "".join(f", {b}" for b in s.get("gin_bindings", [])))
  lines = ["| run | method | minutes | 0 steps | 1 step | 2 steps | 3 steps | "
           "gap closed after 1 step |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for summary in summaries:
    for label, method in summary["methods"].items():
      steps = " | ".join(cell(method[f"return_after_{k}_steps"]) for k in range(4))
      lines.append(f"| {run(summary)} | {label} | {method['train_minutes']:.1f} | {steps} | "
                   f"{100 * method['gap_closed_after_1_step']:.1f}% |")
  for name, label in (("random", "random policy, N(0, 0.1^2) actions"),
                      ("uniform", "random policy, uniform actions"),
                      ("oracle", "oracle (straight to the goal)")):
    lines.append(f"| | {label} | | {cell(summaries[0][name])} | | | | |")
  lines += ["", "| run | L2F - MAML after one step, paired over the same tasks |",
            "| --- | --- |"]
  lines += [f"| {run(s)} | {s['l2f_minus_maml_after_1_step'][0]:+.2f} +- "
            f"{s['l2f_minus_maml_after_1_step'][1]:.2f} |" for s in summaries]
  return "\n".join(lines)


def main(argv):
  del argv
  if TABLE.value:
    print(tables(ROOT.value))
    return
  if TIME_L2F.value:
    record = time_l2f(BINDINGS.value, WARMUP.value, TIMED.value)
    with open(TIMING_OUTPUT.value, "w") as f:
      json.dump(record, f)
    return
  if peer_code.COMPARE.value:
    try:
      where = peer_code.location(PEER_FOLDER, PEER_URL)
      results = compare_reference(peer_code.ROUNDS.value, WARMUP.value, TIMED.value, *where)
      if CURVE.value:
        python, src, _ = peer_code.setup(*where, PEER_MARKER, PEER_REQUIREMENTS, PEER_IMPORTS)
        results.append({"curves": compare_curves(CURVE.value, python, src, ROOT.value)})
    except peer_code.ReferenceUnavailable as error:
      sys.exit(f"pytorch-maml-rl unavailable: {error}")
    if COMPARE_OUTPUT.value:
      with open(COMPARE_OUTPUT.value, "w") as f:
        json.dump(results, f, indent=1)
    return
  logging.set_verbosity(logging.INFO)
  results = {}
  for label, prefix in METHODS.items():
    results[label] = train_run(prefix, ITERATIONS.value)
  baselines, speed = reference_returns(EVAL_TASKS.value)
  r_mean, _ = ci(baselines["random"])
  o_mean, _ = ci(baselines["oracle"])
  print(f"\n2D navigation, inner objective {OBJECTIVE.value}, {AVERAGING.value} averaging, "
        f"seed {SEED.value}, " + "".join(f"{b}, " for b in BINDINGS.value) +
        f"{EVAL_TASKS.value} held-out tasks, "
        f"average return (95% CI) on {os.cpu_count()} CPU cores")
  print(f"{'method':>10} {'iterations':>10} {'minutes':>8} "
        + " ".join(f"{f'{k} steps':>16}" for k in range(4)) + f" {'gap closed (1 step)':>20}")
  summary = {"inner_objective": OBJECTIVE.value, "averaging": AVERAGING.value,
             "seed": SEED.value, "gin_bindings": BINDINGS.value, "methods": {}}
  for label, result in results.items():
    test = result["evaluations"]["test"]
    cells = [f"{test[f'return_after_{k}_steps']['mean']:8.2f} +- "
             f"{test[f'return_after_{k}_steps']['ci95']:4.2f}" for k in range(4)]
    closed = (test["return_after_1_steps"]["mean"] - r_mean) / (o_mean - r_mean)
    minutes = result.get("train_seconds", float("nan")) / 60
    print(f"{label:>10} {result['meta_iterations']:>10} {minutes:8.1f} "
          + " ".join(f"{c:>16}" for c in cells) + f" {100 * closed:>19.1f}%")
    summary["methods"][label] = {
        "meta_iterations": result["meta_iterations"], "train_minutes": minutes,
        "gap_closed_after_1_step": float(closed),
        **{k: [v["mean"], v["ci95"]] for k, v in test.items()}}
  for name in ("random", "uniform", "oracle"):
    mean, half = ci(baselines[name])
    print(f"{name:>10} {'':>10} {'':>8} {mean:8.2f} +- {half:4.2f}")
    summary[name] = [float(mean), float(half)]
  after = {label: np.array(result["evaluations"]["test"]["return_after_1_steps"]["per_task"])
           for label, result in results.items()}
  diff_mean, diff_ci = ci(after["MAML+L2F"] - after["MAML"])
  print(f"L2F - MAML after 1 step, paired over the same tasks: {diff_mean:+.2f} +- {diff_ci:.2f}")
  print(f"sampler: {speed:,.0f} env steps/s (20 tasks x 20 trajectories x 100 steps, "
        "random policy through the sampler)")
  summary.update({"l2f_minus_maml_after_1_step": [float(diff_mean), float(diff_ci)],
                  "env_steps_per_second": speed})
  # Atomic: a finished pair is one whose summary.json exists (--table).
  atomic.write_json(os.path.join(ROOT.value, "summary.json"), summary)


if __name__ == "__main__":
  app.run(main)
