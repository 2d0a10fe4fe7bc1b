"""Figures: sinusoid tasks before/after adaptation, few-shot accuracy vs inner steps, a metric
vs inner steps (with 1-d regression tasks), meta-RL return vs adaptation steps (with
2D-navigation paths).

Every figure is saved with the numbers it draws, read back from its artists (:func:`figure_data`)
into ``<name>.json`` next to ``<name>.png``, so a program can check it against results.json.
Legends sit outside the data area of every panel, never hiding a curve or a point.
"""

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)
import matplotlib.container  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from l2f_tf import atomic  # noqa: E402
from l2f_tf.data.sinusoid_tasks import SinusoidTasks  # noqa: E402


def plot_sinusoid_tasks(path: str, episodes, params, learners: Dict[str, object],
                        num_steps: int = 5, num_tasks: int = 4, x_range=(-5.0, 5.0)) -> str:
  """Saves a PNG: per task of `episodes` (with their SinusoidParameters `params`), the true
  curve, the support points and the predictions of each learner (label -> MetaLearner) at the
  start of the inner loop (theta for MAML, the task's attenuated theta_bar for L2F) and after
  `num_steps` steps."""
  grid = np.linspace(x_range[0], x_range[1], 200, dtype=np.float32)[:, None]
  fig, axes = plt.subplots(1, num_tasks, figsize=(4.2 * num_tasks, 3.4), squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, ax in enumerate(axes[0]):
    task_params = type(params)(*(p[i:i + 1] for p in params))
    truth = SinusoidTasks.function(task_params, tf.constant(grid[None]))[0, :, 0]
    ax.plot(grid[:, 0], truth, color="black", lw=2, label="true function")
    for c, (label, learner) in enumerate(learners.items()):
      adaptation = learner.adapt(episodes.support_x[i], episodes.support_y[i],
                                 num_steps=num_steps)
      inputs = tf.cast(grid, episodes.support_x[i].dtype)
      before, after = (learner.forward(weights, inputs).numpy()[:, 0] for weights in
                       (adaptation.iterates[0], adaptation.fast_weights))
      color = colors[c % len(colors)]
      ax.plot(grid[:, 0], before, ls=":", color=color, label=f"{label}: start of inner loop")
      ax.plot(grid[:, 0], after, ls="-", color=color,
              label=f"{label}: after {num_steps} step{'s' if num_steps > 1 else ''}")
    ax.scatter(episodes.support_x[i][:, 0], episodes.support_y[i][:, 0], color="red", zorder=5,
               label="support points")
    ax.set(xlabel="x", title=f"task {i}: A={float(params.amplitude[i]):.2f}, "
           f"phase={float(params.phase[i]):.2f}")
  # One legend for all panels, below them, so that it hides no task's data.
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(labels), 6),
             frameon=False)
  fig.tight_layout(rect=(0, 0.1, 1, 1))
  return save_figure(fig, path)


def _curves_by_steps(ax, curves: Dict[str, tuple], xlabel: str, ylabel: str, title: str) -> None:
  """One error-bar curve per label: (steps, means, 95% CIs)."""
  for label, (steps, means, cis) in curves.items():
    ax.errorbar(steps, means, yerr=cis, marker="o", capsize=3, label=label)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  legend_outside(ax)


def legend_outside(ax, **kwargs):
  """The panel's legend to the right of its axes (never over its data); tight_layout makes
  room for it."""
  return ax.legend(**{"fontsize": 8, "loc": "upper left", "bbox_to_anchor": (1.02, 1.0),
                      "borderaxespad": 0.0, **kwargs})


def curve_from_figures(figures: Dict[str, Dict], metric: str) -> Tuple[list, list, list]:
  """(steps, means, 95% CIs) of results.json figures {"<metric>_after_<k>_steps": {...}}."""
  prefix = f"{metric}_after_"
  steps = sorted(int(name[len(prefix):].split("_")[0]) for name in figures
                 if name.startswith(prefix) and name.endswith("_steps"))
  if not steps:
    raise ValueError(f"No '{prefix}<k>_steps' figures to plot among {sorted(figures)}.")
  return (steps, [figures[f"{prefix}{k}_steps"]["mean"] for k in steps],
          [figures[f"{prefix}{k}_steps"]["ci95"] for k in steps])


def plot_accuracy_by_steps(path: str, curves: Dict[str, tuple], gammas: Dict[str, tuple],
                           title: str = "") -> str:
  """Saves a PNG: accuracy (mean, 95% CI) vs inner steps per learner (`curves`: label ->
  (steps, mean, ci95), accuracies as fractions) and, for attenuating learners, the mean gamma
  per layer (`gammas`: label -> (tensor names, mean gamma per tensor))."""
  panels = 2 if gammas else 1
  fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
  _curves_by_steps(axes[0][0], {label: (steps, 100 * np.asarray(mean), 100 * np.asarray(ci))
                                 for label, (steps, mean, ci) in curves.items()},
                   "inner steps", "query accuracy (%), 95% CI", title)
  if gammas:
    ax = axes[0][1]
    width = 0.8 / len(gammas)
    for i, (label, (names, values)) in enumerate(gammas.items()):
      positions = np.arange(len(values)) + i * width
      ax.bar(positions, values, width=width, label=label)
      ax.set_xticks(np.arange(len(values)) + 0.4 - width / 2, names, rotation=60, ha="right",
                    fontsize=7)
    ax.set(ylabel="mean gamma over test tasks", title="attenuation per layer")
    legend_outside(ax)
  fig.tight_layout()
  return save_figure(fig, path)


def plot_metric_by_steps(path: str, curves: Dict[str, tuple], ylabel: str, title: str = "",
                         tasks: Sequence[tuple] = (), num_steps: int = 5) -> str:
  """Saves a PNG: a metric (mean, 95% CI) vs inner steps per learner (`curves`: label ->
  (steps, mean, ci95)) and one panel per 1-d regression task of `tasks`: (support_x,
  support_y, query_x, query_y, {label: query predictions after `num_steps` steps})."""
  fig, axes = plt.subplots(1, 1 + len(tasks), figsize=(5.5 + 3.6 * len(tasks), 3.8),
                           squeeze=False)
  _curves_by_steps(axes[0][0], curves, "inner steps", ylabel, title)
  if tasks:  # The curves' legend below the panels, with the tasks' (no room beside them).
    axes[0][0].get_legend().remove()
  for i, (support_x, support_y, query_x, query_y, predicted) in enumerate(tasks):
    ax = axes[0][i + 1]
    order = np.argsort(np.asarray(query_x)[:, 0])
    ax.scatter(np.asarray(query_x)[order, 0], np.asarray(query_y)[order, 0], s=10,
               color="grey", label="query points")
    for label, values in predicted.items():
      ax.plot(np.asarray(query_x)[order, 0], np.asarray(values)[order, 0],
              label=f"{label}, {num_steps} step{'s' if num_steps != 1 else ''}")
    ax.scatter(np.asarray(support_x)[:, 0], np.asarray(support_y)[:, 0], color="red", zorder=5,
               label="support points")
    ax.set(xlabel="x", title=f"test episode {i}")
  if tasks:
    handles, labels = [], []
    for ax in (axes[0][0], axes[0][1]):
      found = ax.get_legend_handles_labels()
      handles, labels = handles + found[0], labels + found[1]
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(labels), 4),
               frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.05 * ((len(labels) - 1) // 4), 1, 1))
  else:
    fig.tight_layout()
  return save_figure(fig, path)


def plot_returns(path: str, evaluations: Dict[str, Dict], title: str,
                 paths: Optional[Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]]] = None
                 ) -> str:
  """Saves a PNG: average return (95% CI) vs adaptation steps per learner (`evaluations`:
  label -> {"return_after_<k>_steps": {"mean", "ci95"}}); for 2D navigation, `paths` (per task:
  positions before adaptation [H, 2], after one step [H', 2], goal [2]) in a second panel."""
  fig, axes = plt.subplots(1, 2 if paths else 1, figsize=(12.5 if paths else 6.5, 4),
                           squeeze=False)
  curves = {label: curve_from_figures(evaluation, "return")
            for label, evaluation in evaluations.items()}
  _curves_by_steps(axes[0][0], curves, "adaptation steps", "average return (95% CI)", title)
  if paths:
    ax = axes[0][1]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    starts = []
    for i, (before, after, goal) in enumerate(paths):
      color = colors[i % len(colors)]
      before, after = np.asarray(before), np.asarray(after)
      ax.plot(before[:, 0], before[:, 1], ":", color=color, gid=f"task {i}: before adaptation")
      ax.plot(after[:, 0], after[:, 1], "-", color=color, label=f"task {i}",
              gid=f"task {i}: after one step")
      ax.scatter([goal[0]], [goal[1]], marker="*", s=120, color=color, zorder=4,
                 gid=f"task {i}: goal")
      starts += [p[0] for p in (before, after) if len(p)]
    if starts:  # Every trajectory starts where the environment resets the agent.
      starts = np.unique(np.asarray(starts), axis=0)
      ax.scatter(starts[:, 0], starts[:, 1], marker="s", s=40, color="black", zorder=5,
                 gid="start")
    # Legend entries for the line styles and the markers, in neutral colour.
    ax.plot([], [], ":", color="gray", label="before adaptation")
    ax.plot([], [], "-", color="gray", label="after one step")
    ax.scatter([], [], marker="*", s=120, color="gray", label="goal")
    ax.scatter([], [], marker="s", s=40, color="black", label="start")
    ax.set_title("trajectories of held-out tasks")
    ax.set_aspect("equal", adjustable="datalim")
    legend_outside(ax, fontsize="small")
  fig.tight_layout()
  return save_figure(fig, path)


def data_path(path: str) -> str:
  """Where the numbers a figure draws are stored: ``<name>.json`` next to ``<name>.png``."""
  return os.path.splitext(path)[0] + ".json"


def _floats(values) -> List[Optional[float]]:
  """JSON-safe floats to 12 significant digits (a read-back error bar is (top - bottom) / 2,
  exact only to rounding), None for NaN / inf (which strict JSON cannot hold)."""
  return [float(f"{v:.12g}") if math.isfinite(v) else None
          for v in np.asarray(values, float).ravel()]


def _series_of(ax) -> Dict[str, Dict]:
  """What one panel draws, read from its artists: error-bar curves, lines, points and bars,
  keyed by gid (set where a label would repeat) or legend label; unnamed artists and legend
  proxies (no data) are left out."""
  series: Dict[str, Dict] = {}

  def add(artist, value):
    key = getattr(artist, "get_gid", lambda: None)() or artist.get_label()
    if not key or key.startswith("_"):
      return
    while key in series:
      key += "'"
    series[key] = value

  in_containers = set()
  for container in ax.containers:
    in_containers.update(id(a) for a in container.get_children())
    if isinstance(container, matplotlib.container.ErrorbarContainer):
      data_line, _, barlinecols = container.lines
      x, y = (np.asarray(v, float) for v in data_line.get_data())
      value = {"kind": "errorbar", "x": _floats(x), "y": _floats(y), "yerr": None}
      if barlinecols:  # One vertical segment [(x, y - e), (x, y + e)] per point.
        ends = np.asarray([s[:, 1] for s in barlinecols[0].get_segments()], float)
        value["yerr"] = _floats((ends[:, 1] - ends[:, 0]) / 2)
      add(container, value)
    elif isinstance(container, matplotlib.container.BarContainer):
      bars = container.patches
      add(container, {"kind": "bar", "x": _floats([b.get_x() + b.get_width() / 2 for b in bars]),
                      "height": _floats([b.get_height() for b in bars])})
  for line in ax.get_lines():
    x, y = (np.asarray(v, float) for v in line.get_data())
    if id(line) not in in_containers and x.size:
      add(line, {"kind": "line", "x": _floats(x), "y": _floats(y)})
  for collection in ax.collections:
    offsets = np.asarray(collection.get_offsets(), float).reshape(-1, 2)
    if id(collection) not in in_containers and offsets.size:
      add(collection, {"kind": "points", "x": _floats(offsets[:, 0]),
                       "y": _floats(offsets[:, 1])})
  return series


def figure_data(fig) -> Dict:
  """The numbers a figure draws, read back from its artists: per panel its title, axis labels,
  every named series and, under bars, the x tick labels (e.g. tensor names); and the legend
  texts. Error bars are stored as drawn, as half-widths ``yerr`` around ``y``."""
  panels = []
  for ax in fig.axes:
    panel = {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
             "series": _series_of(ax)}
    if any(s["kind"] == "bar" for s in panel["series"].values()):  # Ticks name the bars.
      panel["xticklabels"] = [t.get_text() for t in ax.get_xticklabels()]
    legend = ax.get_legend()
    if legend is not None:
      panel["legend"] = [t.get_text() for t in legend.get_texts()]
    panels.append(panel)
  return {"panels": panels,
          "legends": [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]}


def save_figure(fig, path: str, dpi: int = 110) -> str:
  """Saves ``fig`` to ``path`` and the numbers it draws to :func:`data_path`, both atomically,
  then closes the figure."""
  with atomic.path_for(path) as tmp:
    fig.savefig(tmp, dpi=dpi)
  atomic.write_json(data_path(path), figure_data(fig), indent=None)
  plt.close(fig)
  return path
