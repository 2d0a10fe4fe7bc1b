"""Smoke mode (l2f_tf.smoke) and the progress lines of a library (non-CLI) run."""

import logging as std_logging
import subprocess
import sys
import textwrap

from l2f_tf import smoke


def test_smoke_mode_caps_loops_only_when_set(monkeypatch):
  monkeypatch.delenv(smoke.ENV, raising=False)
  assert not smoke.active()
  assert smoke.iterations(70000) == 70000 and smoke.tasks(600) == 600
  monkeypatch.setenv(smoke.ENV, "0")
  assert not smoke.active()
  monkeypatch.setenv(smoke.ENV, "1")
  assert smoke.active()
  assert smoke.iterations(70000) == smoke.ITERATIONS and smoke.iterations(2) == 2
  assert smoke.tasks(600) == smoke.TASKS and smoke.tasks(0) == 0
  # Meta-RL evaluates whole meta-batches: the cap is rounded up to one.
  assert smoke.tasks(600, multiple=20) == 20 and smoke.tasks(600, multiple=3) == 6


LIBRARY_RUN = textwrap.dedent("""
    import l2f_tf
    domain = l2f_tf.SinusoidRegression(num_shots=5, meta_batch_size=4)
    learner = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1)
    trainer = l2f_tf.Trainer(learner, domain, "run", num_iterations=5, jit_compile=False)
    l2f_tf.Runner(trainer, log_every_seconds=0.0).train()
    """)


def test_a_library_run_prints_its_progress(tmp_path):
  """A script that trains through the library (no absl app, no logging set up) shows the
  same progress lines as the command line: compile times, meta-iterations/s, ETA."""
  done = subprocess.run([sys.executable, "-c", LIBRARY_RUN], cwd=tmp_path, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Compiled the step" in done.stderr
  assert "meta-iteration 5/5 (100.0%)" in done.stderr and "ETA" in done.stderr
  assert done.stderr.count("meta-iteration 5/5") == 1
  # TensorFlow's start-up lines are filtered as on the command line (l2f_tf.console.NOISE).
  for noise in ("absl::InitializeLog", "cuInit", "oneDNN", "cpu_feature_guard"):
    assert noise not in done.stderr, done.stderr[:2000]


def test_library_progress_leaves_a_configured_logging_alone(monkeypatch):
  """A user who set up INFO logging, or a level on absl's logger, keeps their setup."""
  from absl import logging as absl_logging
  from l2f_tf import console
  monkeypatch.setattr(console, "_library_handler", None)
  logger = absl_logging.get_absl_logger()
  monkeypatch.setattr(logger, "level", std_logging.WARNING)
  assert not console.show_progress_in_library()
  monkeypatch.setattr(logger, "level", std_logging.NOTSET)
  root = std_logging.getLogger()
  handler = std_logging.NullHandler()
  monkeypatch.setattr(root, "handlers", [handler])
  monkeypatch.setattr(root, "level", std_logging.INFO)
  assert not console.show_progress_in_library()


def test_library_progress_keeps_warnings_on_their_usual_way(monkeypatch, caplog, capsys):
  """Once a Runner has set up the progress lines in a process, l2f_tf's INFO records print on
  stderr once, other libraries' INFO records stay hidden, and warnings still reach the root
  logger's handlers (here pytest's caplog)."""
  from absl import logging as absl_logging
  from l2f_tf import console
  logger = absl_logging.get_absl_logger()
  monkeypatch.setattr(console, "_library_handler", None)
  monkeypatch.setattr(logger, "level", std_logging.NOTSET)
  monkeypatch.setattr(logger, "filters", [])
  monkeypatch.setattr(std_logging.getLogger(), "level", std_logging.WARNING)
  assert console.show_progress_in_library()
  console._library_handler.stream = sys.stderr  # pytest's capture of this test
  from l2f_tf.progress import Progress
  with caplog.at_level(std_logging.WARNING):
    Progress(10, label="meta-iteration").update(5, "progress of l2f_tf", force=True)
    absl_logging.warning("a warning")
    absl_logging.info("an INFO line of this test file (not l2f_tf)")
  assert "a warning" in caplog.text
  assert "progress of l2f_tf" not in caplog.text  # printed by the library handler only
  err = capsys.readouterr().err
  assert err.count("progress of l2f_tf") == 1 and "not l2f_tf" not in err
