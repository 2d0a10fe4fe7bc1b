"""Figures read back: the plotted values are the inputs, and legends name what is drawn."""

import numpy as np

from l2f_tf import plots


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
  assert {"task 0", "before adaptation", "after one step", "goal"} <= set(legend)


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
