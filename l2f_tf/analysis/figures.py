"""The analysis figures (PNG): landscape and conflict over meta-iterations, per-task conflict
and gamma distributions per layer, the manual attenuation sweep. Every function takes plain
arrays keyed by run label (runs overlaid) and returns the path it wrote.
"""

from typing import Dict, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)
import numpy as np  # noqa: E402

from l2f_tf import atomic  # noqa: E402

Series = Tuple[np.ndarray, np.ndarray]  # (steps, values)

# (title, y label, lower tag, upper tag or None for a line): the landscape/ scalars.
LANDSCAPE_PANELS = (
    ("loss along the inner step", "support loss (min-max over step sizes)", "loss_min", "loss_max"),
    ("gradient predictiveness", "l2 change of the gradient (min-max)", "gradient_change_min",
     "gradient_change_max"),
    ("effective beta-smoothness", "max gradient change / distance", "beta_smoothness", None))


def _save(fig, path: str) -> str:
  fig.tight_layout()
  with atomic.path_for(path) as tmp:  # a kill never leaves half an image
    fig.savefig(tmp, dpi=110)
  plt.close(fig)
  return path


def _colors(labels: Sequence[str]) -> Dict[str, str]:
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  return {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}


def plot_landscape(path: str, runs: Dict[str, Dict[str, Series]]) -> str:
  """Fig. 2: the inner loop's landscape over meta-iterations, one colour per run; ``runs``:
  label -> {measure of ``LANDSCAPE_MEASURES``: (steps, values)} (a run's ``landscape/``)."""
  colors = _colors(list(runs))
  fig, axes = plt.subplots(1, len(LANDSCAPE_PANELS), figsize=(15, 3.8))
  for ax, (title, ylabel, lower, upper) in zip(axes, LANDSCAPE_PANELS):
    for label, series in runs.items():
      steps, low = series[lower]
      if upper is None:
        ax.plot(steps, low, color=colors[label], label=label)
      else:
        _, high = series[upper]
        ax.fill_between(steps, low, high, color=colors[label], alpha=0.35, label=label)
        ax.plot(steps, (low + high) / 2, color=colors[label], linewidth=0.8)
    ax.set(title=title, xlabel="meta-iteration", ylabel=ylabel)
    ax.legend(fontsize=8)
  return _save(fig, path)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """A trailing moving average over ``window`` points (the first points average fewer)."""
  sums = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
  ends = np.arange(1, sums.size)
  starts = np.maximum(ends - max(window, 1), 0)
  return (sums[ends] - sums[starts]) / (ends - starts)


def plot_per_layer_over_training(path: str, runs: Dict[str, Dict[str, Series]], ylabel: str,
                                 title: str, window: int = 5) -> str:
  """Fig. 3(a) (degree of conflict) or gamma over meta-iterations: one panel per tensor, one
  line per run (a trailing mean over ``window`` summaries; the raw points faint)."""
  tensors = list(dict.fromkeys(name for series in runs.values() for name in series))
  colors = _colors(list(runs))
  columns = min(len(tensors), 4)
  rows = -(-len(tensors) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
  for ax, tensor in zip(axes.flat, tensors):
    for label, series in runs.items():
      if tensor not in series:
        continue
      steps, values = series[tensor]
      ax.plot(steps, values, color=colors[label], alpha=0.25, linewidth=0.8)
      ax.plot(steps, smooth(values, window), color=colors[label], label=label)
    ax.set_title(tensor, fontsize=9)
    ax.set(xlabel="meta-iteration", ylabel=ylabel)
  for ax in list(axes.flat)[len(tensors):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=8)
  fig.suptitle(title)
  return _save(fig, path)


def plot_distributions_per_tensor(path: str, runs: Dict[str, np.ndarray],
                                  names: Sequence[str], ylabel: str, title: str) -> str:
  """Fig. 3(c) (per-task conflict) and 3(d) (gamma over test tasks): a box per tensor (the
  columns of ``runs``' [num_tasks, len(names)] values) and run, side by side."""
  colors = _colors(list(runs))
  width = 0.8 / len(runs)
  fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) * max(1, len(runs) / 1.5)), 4.2))
  for i, (label, values) in enumerate(runs.items()):
    positions = np.arange(len(names)) + (i - (len(runs) - 1) / 2) * width
    boxes = ax.boxplot(np.asarray(values), positions=positions, widths=width * 0.9,
                       patch_artist=True, showfliers=False, manage_ticks=False)
    for box in boxes["boxes"]:
      box.set_facecolor(colors[label])
      box.set_alpha(0.6)
    ax.plot([], [], color=colors[label], linewidth=8, alpha=0.6, label=label)
  ax.set_xticks(np.arange(len(names)), names, rotation=45, ha="right", fontsize=8)
  ax.set(ylabel=ylabel, title=title)
  ax.legend(fontsize=8, loc="best")
  return _save(fig, path)


def plot_attenuation_sweep(path: str, sweep: Dict, metric_name: str, title: str) -> str:
  """Fig. 3(b): the metric after adaptation when one layer's initialisation is scaled by gamma
  (others at 1). Left: the mean as a heat map (layers x gamma); right: the paired difference
  to no scaling with its 95% CI, one curve per layer."""
  gammas, layers = sweep["gammas"], sweep["layers"]
  scale, unit = (100.0, " (%)") if metric_name == "accuracy" else (1.0, "")
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(layers) + 3.2))
  image = left.imshow(scale * np.asarray(sweep["mean"]), aspect="auto", cmap="viridis")
  left.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
  left.set_yticks(range(len(layers)), layers)
  left.set(xlabel="gamma (this layer's initialisation scaled)",
           title=f"{metric_name}{unit} after adaptation")
  fig.colorbar(image, ax=left)
  for row, layer in enumerate(layers):
    diffs = sweep["paired_difference"][row]
    right.errorbar(gammas, [scale * d["mean"] for d in diffs],
                   yerr=[scale * d["ci95"] for d in diffs], marker="o", markersize=3,
                   capsize=2, label=layer)
  right.axhline(0.0, color="black", linewidth=0.8)
  right.set(xlabel="gamma", ylabel=f"{metric_name}{unit} minus unscaled, paired 95% CI",
            title="difference to gamma = 1 on the same tasks")
  right.legend(fontsize=7, loc="best")
  fig.suptitle(title)
  return _save(fig, path)
