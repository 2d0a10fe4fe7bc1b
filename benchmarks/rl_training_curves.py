"""Training curves of meta-RL runs: return before and after adaptation per meta-iteration.

  python benchmarks/rl_training_curves.py --figure=docs/rl_navigation_training.png \
      --run_dir=runs/rl_navigation/reinforce/maml --run_dir=runs/rl_navigation/lvc/maml

Reads each run's TensorBoard scalars (train/return_before_adaptation and
train/return_after_adaptation, one value per meta-iteration from the meta-batch's sampled
trajectories), smooths them with a moving average and plots them on one figure; the legend
names each run by its method and inner objective (from results.json) or its directory.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import glob
import json
import os

import matplotlib
import numpy as np
import tensorflow as tf
from absl import app, flags

from l2f_tf.run_folder import RunFolder
from l2f_tf.train import settings

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

TAGS = ("return_before_adaptation", "return_after_adaptation")


def read_scalars(run_dir: str):
  """{tag: (steps, values)} of the run's train/ event files (the last write of a step wins)."""
  points = {tag: {} for tag in TAGS}
  for path in sorted(glob.glob(os.path.join(run_dir, "train", "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag in points:
          points[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
  return {tag: (np.array(sorted(p)), np.array([p[s] for s in sorted(p)]))
          for tag, p in points.items()}


def label_of(run_dir: str) -> str:
  """The run's method, inner objective, averaging and training seed (from its results.json and
  settings.json), or its directory for a run that has not finished."""
  path = os.path.join(run_dir, "results.json")
  if not os.path.exists(path):
    return run_dir
  with open(path) as f:
    results = json.load(f)
  value = (settings.stored(RunFolder(run_dir)) or {}).get("MetaRLTrainer.seed")
  seed = "" if value is None else f", seed {value}"
  return (f"{results['method']} ({results['inner_objective']}, {results['averaging']} "
          f"averaging{seed})")


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  if len(values) < window:
    return values
  return np.convolve(values, np.ones(window) / window, mode="valid")


def main(argv):
  del argv
  if not RUN_DIRS.value:
    raise app.UsageError("Give at least one --run_dir.")
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, run_dir in enumerate(RUN_DIRS.value):
    color = f"C{i}"
    scalars = read_scalars(run_dir)
    for tag, style in zip(TAGS, (":", "-")):
      steps, values = scalars[tag]
      if not len(steps):
        raise ValueError(f"{run_dir} has no train/{tag} scalars.")
      smoothed = smooth(values, WINDOW.value)
      when = "after" if tag.endswith("after_adaptation") else "before"
      ax.plot(steps[len(steps) - len(smoothed):], smoothed, style, color=color,
              label=f"{label_of(run_dir)}, {when}")
  ax.set_xlabel("meta-iteration")
  ax.set_ylabel(f"average return (moving average of {WINDOW.value})")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(FIGURE.value, dpi=120)
  print(f"Wrote {FIGURE.value}")


if __name__ == "__main__":
  # Defined only when run: other benchmarks import the functions above into one test process,
  # where a second --figure flag would clash.
  RUN_DIRS = flags.DEFINE_multi_string("run_dir", [], "Meta-RL run directories.")
  FIGURE = flags.DEFINE_string("figure", "rl_training.png", "Output PNG.")
  WINDOW = flags.DEFINE_integer("window", 20, "Moving-average window (meta-iterations).")
  app.run(main)
