"""Error bars and the progress line."""

import numpy as np
import pytest

from l2f_tf import progress as progress_lib
from l2f_tf.progress import Progress, format_duration
from l2f_tf.stats import (difference_t_ci95, mean_and_ci95, mean_and_t_ci95,
                          t_quantile_975)


def test_ci95_is_1_96_standard_errors():
  values = [1.0, 2.0, 3.0, 4.0]
  result = mean_and_ci95(values)
  assert result["mean"] == 2.5 and result["n"] == 4
  assert result["ci95"] == pytest.approx(1.96 * np.std(values, ddof=1) / 2.0)
  assert result["num_non_finite"] == 0
  assert mean_and_ci95([1.0, np.inf, np.nan])["num_non_finite"] == 2
  with pytest.raises(ValueError):
    mean_and_ci95([])


@pytest.mark.parametrize("df, expected", [  # scipy.stats.t.ppf(0.975, df), 6 decimals
    (1, 12.706205), (2, 4.302653), (3, 3.182446), (10, 2.228139), (1.5, 6.016663),
    (2.5, 3.574655), (35, 2.030108), (200, 1.971896), (1e6, 1.959966)])
def test_t_quantile_matches_students_t(df, expected):
  assert t_quantile_975(df) == pytest.approx(expected, abs=2e-6)
  with pytest.raises(ValueError, match="df > 0"):
    t_quantile_975(0)


def test_a_mean_over_seeds_uses_t_and_a_difference_uses_welch():
  result = mean_and_t_ci95([0.80, 0.82, 0.87])
  std = np.std([0.80, 0.82, 0.87], ddof=1)
  assert result["mean"] == pytest.approx(0.83) and result["n"] == 3
  assert result["ci95"] == pytest.approx(4.302653 * std / np.sqrt(3), rel=1e-6)
  with pytest.raises(ValueError, match="at least 2"):
    mean_and_t_ci95([0.8])
  # Welch by hand: sample variances 0.0001 and 0.0004, so variances of the means va, vb =
  # 0.0001 / 3, 0.0004 / 3 and df = (va + vb)^2 / (va^2 / 2 + vb^2 / 2) = 2.94.
  a, b = [0.89, 0.90, 0.91], [0.84, 0.86, 0.88]
  difference = difference_t_ci95(a, b)
  va, vb = 0.0001 / 3, 0.0004 / 3
  df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
  assert difference["mean"] == pytest.approx(0.04)
  assert difference["df"] == pytest.approx(df) and 2.9 < df < 3.0
  assert difference["ci95"] == pytest.approx(t_quantile_975(df) * np.sqrt(va + vb))
  assert difference_t_ci95([1.0, 1.0], [0.5, 0.5]) == {"mean": 0.5, "ci95": 0.0, "df": 2.0}


def test_progress_reports_rate_and_eta(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  progress = Progress(total=1000, start=0, every_seconds=0.0, label="step")
  progress._last_time -= 2.0  # pretend 2 s passed  # pylint: disable=protected-access
  assert progress.update(100, "loss 1.0")
  assert progress.steps_per_second == pytest.approx(50.0, rel=0.05)
  assert "step 100/1000 (10.0%) loss 1.0" in lines[0]
  assert "ETA 18s" in lines[0] or "ETA 17s" in lines[0]
  assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"
  # A restart (after a call that compiled) measures the rate from there on.
  progress.restart(500)
  progress._last_time -= 1.0  # pylint: disable=protected-access
  progress.update(600)
  assert progress.steps_per_second == pytest.approx(100.0, rel=0.05)


def test_a_final_forced_line_does_not_repeat_the_last_one(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  progress = Progress(total=3, every_seconds=0.0, label="meta-iteration")
  assert progress.update(3, "done")
  assert not progress.update(3, "done", force=True)  # the loop's closing line, same step
  assert progress.update(2, force=True) and len(lines) == 2  # another step is logged


def test_progress_rate_reads_seconds_per_step_when_slow_and_names_its_unit(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  progress = Progress(total=80, every_seconds=0.0, label="meta-iteration")
  progress._last_time -= 40.0  # two iterations in 40 s  # pylint: disable=protected-access
  progress.update(2)
  assert "20.0 s/meta-iteration" in lines[-1] and "0.0 meta-iterations/s" not in lines[-1]
  evaluation = Progress(total=600, every_seconds=0.0, label="test episode (checkpoint 100)",
                        unit="episode")
  evaluation._last_time -= 1.0  # pylint: disable=protected-access
  evaluation.update(30)
  assert "test episode (checkpoint 100) 30/600" in lines[-1]
  assert "30.0 episodes/s" in lines[-1] and ")s/s" not in lines[-1]


def test_rate_texts_are_per_second_when_fast_and_per_unit_when_slow():
  rate_text_of = progress_lib.rate_text_of
  assert rate_text_of(12345.6, "env step") == "12346 env steps/s"
  assert rate_text_of(30.0, "episode") == "30.0 episodes/s"
  assert rate_text_of(1.0, "meta-iteration") == "1.0 meta-iterations/s"
  assert rate_text_of(0.05, "meta-iteration") == "20.0 s/meta-iteration"  # not "0.1 .../s"
  assert rate_text_of(1 / 125, "meta-iteration") == "2m05s/meta-iteration"
  assert rate_text_of(2.0, "batch") == "2.0 batches/s"
  for no_rate in (None, 0.0, float("nan"), float("inf")):
    assert rate_text_of(no_rate, "step") == "-"
  # Without a unit, the rate counts the label's noun, never the label with its remark.
  assert progress_lib.unit_of("test episode (checkpoint 100)") == "episode"
  assert progress_lib.unit_of("meta-iteration") == "meta-iteration"
  assert Progress(10, label="val episode (best so far)").unit == "episode"


def test_every_progress_line_of_the_library_names_a_sensible_unit(monkeypatch):
  """The callers that count evaluation tasks (final evaluation, each checkpoint of the few-shot
  protocol, validation, meta-RL held-out tasks) log 'N <unit>s/s' with a unit, not a label."""
  import types
  from l2f_tf.train import evaluation, meta_rl_trainer, validation
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda fmt, *args: lines.append(fmt % args))

  class Immediate(Progress):  # Logs every update, as if a second had passed since the last.
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **{**kwargs, "every_seconds": 0.0})

    def update(self, step, message="", force=False):
      self._last_time -= 1.0  # pylint: disable=protected-access
      return super().update(step, message, force)

  def predictions(learner, episodes, max_steps, num_tasks=None, label="", unit=None, **kwargs):
    Immediate(num_tasks, label=label, unit=unit).update(num_tasks // 20)
    return np.zeros((num_tasks, max_steps + 1, 1)), np.zeros((num_tasks, 1))

  monkeypatch.setattr(evaluation.predictions, "predictions", predictions)
  monkeypatch.setattr(evaluation.predictions, "metric_values",
                      lambda outputs, labels, metric: np.zeros(outputs.shape[:2]))
  domain = types.SimpleNamespace(eval_batches=lambda split, n: None, eval_vectorized=False,
                                 task_metric=None, metric_name="accuracy")
  evaluation.domain_predictions(None, domain, "test", 600, 5)
  evaluation.evaluate_checkpoints(None, domain, "test", 600, [5], [{"step": 100, "path": ""}],
                                  lambda path: None)
  validation.Validator(types.SimpleNamespace(num_inner_steps=5), domain, 600, "val")(7)
  monkeypatch.setattr(meta_rl_trainer, "Progress", Immediate)
  batch = types.SimpleNamespace(returns=np.zeros((2, 3)), x=None, y=None)
  trainer = types.SimpleNamespace(
      domain=types.SimpleNamespace(meta_batch_size=2),
      task_env=types.SimpleNamespace(sample_tasks=lambda n, seed: [{}] * n),
      start_policies=lambda tasks, seed: (None, None, None),
      sample=lambda tasks, params, seed: batch,
      _adapt=lambda batch, embeddings: (None, None))
  meta_rl_trainer.MetaRLTrainer.held_out_returns(trainer, 40, 1, 0)
  assert "test task 30/600 (5.0%)  | 30.0 tasks/s" in lines[0]
  assert "test episode (checkpoint 100) 30/600 (5.0%)  | 30.0 episodes/s" in lines[1]
  assert "val episode 30/600 (5.0%)  | 30.0 episodes/s" in lines[2]
  assert "held-out task 2/40 (5.0%)  | 2.0 tasks/s" in lines[4]  # (after the validation line)
  assert not any(")s/s" in line or " 0.0 " in line for line in lines)
