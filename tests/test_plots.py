"""Figures read back: the plotted values are the inputs (and are stored next to the PNG), and
legends name what is drawn without covering it."""

import json

import numpy as np
import pytest

from l2f_tf import plots


def assert_draws(series, figures, metric, scale=1.0):
  """A stored error-bar series (``<figure>.json``) draws exactly the results.json figures
  ``<metric>_after_<k>_steps``: every step, its mean and its 95% CI (times ``scale``)."""
  prefix = f"{metric}_after_"
  expected = sorted(((int(name[len(prefix):].split("_")[0]), value)
                     for name, value in figures.items()
                     if name.startswith(prefix) and name.endswith("_steps")), key=lambda e: e[0])
  assert series["kind"] == "errorbar"
  assert series["x"] == [k for k, _ in expected]
  assert series["y"] == pytest.approx([scale * v["mean"] for _, v in expected], rel=1e-9)
  assert series["yerr"] == pytest.approx([scale * v["ci95"] for _, v in expected], rel=1e-9)


def assert_legends_clear_of_data(figure):
  """No legend overlaps any panel's data area, and every legend is inside the saved image."""
  figure.canvas.draw()
  renderer = figure.canvas.get_renderer()
  legends = [ax.get_legend() for ax in figure.axes if ax.get_legend()] + list(figure.legends)
  assert legends
  for legend in legends:
    box = legend.get_window_extent(renderer)
    for ax in figure.axes:
      assert not box.overlaps(ax.get_window_extent(renderer)), (
          [t.get_text() for t in legend.get_texts()], ax.get_title())
    assert box.x0 >= -1 and box.y0 >= -1
    assert box.x1 <= figure.bbox.x1 + 1 and box.y1 <= figure.bbox.y1 + 1


def test_returns_figure_plots_the_evaluated_returns_and_labels_the_navigation_paths(
    tmp_path, monkeypatch):
  figures = []
  monkeypatch.setattr(plots.plt, "close", figures.append)
  evaluations = {"MAML": {f"return_after_{k}_steps": {"mean": -10.0 + k, "ci95": 0.5, "n": 4}
                          for k in range(3)}}
  before = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.1]])
  after = np.array([[0.0, 0.0], [0.2, 0.2], [0.4, 0.4]])
  path = plots.plot_returns(str(tmp_path / "returns.png"), evaluations, "Navigation2D",
                            paths=[(before, after, np.array([0.4, 0.4]))])
  assert (tmp_path / "returns.png").exists() and path.endswith("returns.png")
  curves_axis, paths_axis = figures[0].axes[:2]
  curve = [c for c in curves_axis.containers if c.get_label() == "MAML"][0]  # an errorbar
  np.testing.assert_allclose(np.asarray(curve.lines[0].get_ydata(), float), [-10.0, -9.0, -8.0])
  drawn = {line.get_label(): line for line in paths_axis.get_lines()}
  np.testing.assert_allclose(drawn["task 0"].get_xydata(), after)
  legend = [text.get_text() for text in paths_axis.get_legend().get_texts()]
  assert {"task 0", "before adaptation", "after one step", "goal", "start"} <= set(legend)
  assert_legends_clear_of_data(figures[0])
  # returns.json next to the PNG: the numbers drawn, read back from the figure.
  with open(tmp_path / "returns.json") as f:
    curves, trajectories = json.load(f)["panels"]
  assert_draws(curves["series"]["MAML"], evaluations["MAML"], "return")
  drawn = trajectories["series"]
  np.testing.assert_allclose(np.c_[drawn["task 0: before adaptation"]["x"],
                                   drawn["task 0: before adaptation"]["y"]], before)
  np.testing.assert_allclose(np.c_[drawn["task 0: after one step"]["x"],
                                   drawn["task 0: after one step"]["y"]], after)
  assert (drawn["task 0: goal"]["x"], drawn["task 0: goal"]["y"]) == ([0.4], [0.4])
  assert (drawn["start"]["x"], drawn["start"]["y"]) == ([0.0], [0.0])


def test_returns_figure_without_paths_keeps_its_legend_off_the_curves(tmp_path, monkeypatch):
  figures = []
  monkeypatch.setattr(plots.plt, "close", figures.append)
  # Curves that fill the corners, where a legend inside the axes would sit.
  evaluations = {label: {f"return_after_{k}_steps": {"mean": m, "ci95": 1.0, "n": 4}
                         for k, m in enumerate(means)}
                 for label, means in (("MAML", [-40, -10, -10, -40]),
                                      ("MAML+L2F", [-10, -40, -40, -10]))}
  plots.plot_returns(str(tmp_path / "returns.png"), evaluations, "HalfCheetahDir")
  assert_legends_clear_of_data(figures[0])
  with open(tmp_path / "returns.json") as f:
    series = json.load(f)["panels"][0]["series"]
  for label, figures_of_label in evaluations.items():
    assert_draws(series[label], figures_of_label, "return")


def test_sinusoid_figure_has_one_legend_below_the_panels(tmp_path, monkeypatch):
  from l2f_tf.domains.sinusoid import SinusoidRegression
  from l2f_tf.meta.learner import MetaLearner
  figures = []
  monkeypatch.setattr(plots.plt, "close", figures.append)
  domain = SinusoidRegression(num_shots=5)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.01)
  domain.plot({"MAML": learner}, str(tmp_path / "test_tasks.png"), num_steps=1, num_tasks=2)
  figure = figures[0]
  assert all(ax.get_legend() is None for ax in figure.axes)  # no panel's data is covered
  legend = [text.get_text() for text in figure.legends[0].get_texts()]
  assert legend == ["true function", "MAML: start of inner loop", "MAML: after 1 step",
                    "support points"]
  assert_legends_clear_of_data(figure)
  with open(tmp_path / "test_tasks.json") as f:
    stored = json.load(f)
  assert stored["legends"] == [legend]
  assert len(stored["panels"]) == 2 and set(stored["panels"][0]["series"]) == set(legend)
  assert len(stored["panels"][0]["series"]["support points"]["x"]) == 5


def test_few_shot_figure_draws_the_numbers_of_results_json(tmp_path, monkeypatch):
  # The figure of a run is drawn from its evaluation (the same tasks and numbers as
  # results.json), not from a separate, smaller set of episodes.
  from l2f_tf.domains.few_shot import FewShotClassification
  from l2f_tf.meta.learner import MetaLearner
  from l2f_tf.models.conv4 import conv4
  from tests.fake_images import write_class_folders
  root = write_class_folders(str(tmp_path / "mini"), classes=(6, 5, 5), images_per_class=8,
                             size=16)
  domain = FewShotClassification(root=root, num_ways=3, num_shots=2, num_queries=3,
                                 meta_batch_size=2, image_size=16, eval_batch_size=4,
                                 backbone=lambda **kw: conv4(filters=4, **kw))
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.1)
  figures = []
  monkeypatch.setattr(plots.plt, "close", figures.append)
  results = {f"accuracy_after_{k}_steps": {"mean": m, "ci95": 0.01, "n": 600}
             for k, m in ((0, 0.2), (1, 0.5), (5, 0.7473))}
  domain.plot({"MAML": learner}, str(tmp_path / "test_tasks.png"), num_steps=5,
              evaluations={"MAML": results})
  curve = figures[0].axes[0].containers[0]
  np.testing.assert_allclose(np.asarray(curve.lines[0].get_xydata(), float),
                             [[0, 20.0], [1, 50.0], [5, 74.73]])
  assert "test episodes" not in figures[0].axes[0].get_title()
  with open(tmp_path / "test_tasks.json") as f:
    stored = json.load(f)
  assert_draws(stored["panels"][0]["series"]["MAML"], results, "accuracy", scale=100)
  assert stored["panels"][0]["series"]["MAML"]["y"] == [20.0, 50.0, 74.73]


def test_accuracy_figure_with_gammas_keeps_both_legends_off_the_data(tmp_path, monkeypatch):
  figures = []
  monkeypatch.setattr(plots.plt, "close", figures.append)
  steps = [0, 1, 2]
  curves = {"MAML": (steps, [0.2, 0.9, 0.2], [0.01] * 3),
            "MAML+L2F": (steps, [0.9, 0.2, 0.9], [0.02] * 3)}
  gammas = {"MAML+L2F": (["conv/kernel", "dense/kernel"], [1.0, 1.0])}
  plots.plot_accuracy_by_steps(str(tmp_path / "accuracy.png"), curves, gammas, title="t")
  assert_legends_clear_of_data(figures[0])
  with open(tmp_path / "accuracy.json") as f:
    accuracy, attenuation = json.load(f)["panels"]
  assert accuracy["series"]["MAML+L2F"]["yerr"] == pytest.approx([2.0] * 3)
  assert attenuation["series"]["MAML+L2F"]["height"] == [1.0, 1.0]
  assert attenuation["xticklabels"] == ["conv/kernel", "dense/kernel"]
