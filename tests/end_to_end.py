"""End-to-end runs of the package's gin files, with every check a finished run must pass.

One function per domain runs a gin file with tiny bindings (through every stage: training steps,
summaries, validation where the domain has it, evaluation, export, figure) and checks the run
folder, results.json and the TensorBoard tags. tests/test_end_to_end.py runs one file of each
domain in the default tier; tests/test_gin_files_*.py run every other file in the slow tier.
"""

import glob
import json
import os
from typing import List

import gin
import numpy as np
import tensorflow as tf

from l2f_tf import run_folder
from l2f_tf.data.readers import leo_embeddings
from l2f_tf.train import experiment, restore
from tests.test_plots import assert_draws

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder


def gin_files(pattern: str) -> List[str]:
  """The package's gin files matching ``pattern`` under gin/ (the shared ``*setup.gin`` files
  excluded), as the names users pass to --gin_file."""
  return sorted(os.path.relpath(p, GIN_PARENT) for p in glob.glob(
      os.path.join(GIN_PARENT, "gin", pattern), recursive=True) if not p.endswith("setup.gin"))


SINUSOID_FILES = [f for f in gin_files("sinusoid/**/*.gin") if "learners" not in f]
GLYPH_FILES = [f for f in gin_files("glyphs/*.gin") if not os.path.basename(f).startswith("leo")]
DATASET_FILES = gin_files("mini_imagenet/**/*.gin") + gin_files("tiered_imagenet/**/*.gin")
LEO_FILES = gin_files("leo/**/*.gin") + gin_files("glyphs/leo*.gin")
LEO_GLYPH_FILES = [f for f in LEO_FILES if f.startswith("gin/glyphs/")]
RL_FILES = gin_files("rl/*.gin")

# One file per domain runs in the default tier (tests/test_end_to_end.py); the slow tier runs
# the others (tests/test_gin_files_*.py).
DEFAULT_TIER_FILES = {"sinusoid": "gin/sinusoid/l2f_5shot.gin",
                      "glyphs": "gin/glyphs/l2f_1shot.gin",
                      "leo": "gin/glyphs/leo_l2f_1shot.gin",
                      "rl": "gin/rl/navigation2d_l2f.gin"}


def summary_tags(directory: str) -> set:
  """Tags of every scalar/tensor summary written in a TensorBoard directory."""
  import tensorflow as tf
  tags = set()
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


def _run(gin_file: str, root: str, bindings: List[str]) -> dict:
  restore.setup_run(root, [os.path.join(GIN_PARENT, gin_file)], bindings)
  try:
    return experiment.run_experiment(root)
  finally:
    run_folder.release_locks()


def _assert_files(root: str, names) -> None:
  for name in names:
    assert os.path.exists(os.path.join(root, name)), name


SINUSOID_TINY = ["Trainer.num_iterations = 4", "Trainer.summary_every = 2",
                 "Runner.checkpoint_every = 2", "Trainer.jit_compile = False",
                 "run_experiment.num_eval_tasks = 6", "SinusoidRegression.meta_batch_size = 3",
                 "Runner.log_every_seconds = 0"]
# The landscape logging (on in gin/sinusoid/setup.gin) costs seconds of tracing per run; it is
# checked end to end on these files and switched off on the others.
LANDSCAPE_CHECKED = ("gin/sinusoid/maml_5shot.gin", "gin/sinusoid/l2f_5shot.gin")


def check_sinusoid_file(gin_file: str, root: str) -> None:
  landscape = gin_file in LANDSCAPE_CHECKED
  results = _run(gin_file, root,
                 SINUSOID_TINY + ([] if landscape else ["Trainer.landscape = False"]))
  _assert_files(root, ("operative_config.gin", "results.json", "test_tasks.png",
                       "saved_model/saved_model.pb", "checkpoints/checkpoint"))
  assert glob.glob(os.path.join(root, "train", "events.out.tfevents.*"))
  figures = results["evaluations"]["test"]
  assert set(figures) == {f"mse_after_{k}_steps" for k in (0, 1, 2, 5)}
  assert figures["mse_after_1_steps"]["n"] == 6
  tags = summary_tags(os.path.join(root, "train"))
  assert {"meta_loss", "outer_lr", "query_loss_after_step/0",
          "query_loss_after_step/1"} <= tags
  assert sum(t.startswith("degree_of_conflict/") for t in tags) == 6
  assert sum(t.startswith("landscape/") for t in tags) == (6 if landscape else 0)
  expected_gammas = 0 if os.path.basename(gin_file).startswith("maml") else 6
  assert sum(t.startswith("gamma/") for t in tags) == expected_gammas
  # The export's default step counts (the glyph checks bind export_max_steps): the training
  # setting, and at most max(2 * that, 10) steps.
  exported = tf.train.load_checkpoint(os.path.join(root, "saved_model", "variables",
                                                   "variables"))
  num_steps = int(exported.get_tensor("num_steps/.ATTRIBUTES/VARIABLE_VALUE"))
  assert num_steps == gin.query_parameter("MetaLearner.num_inner_steps")
  assert exported.get_tensor("max_steps/.ATTRIBUTES/VARIABLE_VALUE") == max(2 * num_steps, 10)


# Tiny, but through every stage: first- and second-order steps, validation, top-k, ensemble.
VISION_TINY = ["Trainer.num_iterations = 2", "Trainer.first_order_until = 1",
               "Trainer.validate_every = 1", "Runner.checkpoint_every = 1",
               "Trainer.summary_every = 2", "Trainer.keep_best = 2", "Runner.log_every_seconds = 0",
               "MetaLearner.num_inner_steps = 2", "conv4.filters = 4",
               "Trainer.num_val_episodes = 3", "run_experiment.num_eval_tasks = 4",
               "FewShotClassification.eval_batch_size = 2",
               "FewShotClassification.plot_episodes = 3",
               # The SavedModel's steps signatures up to 2 steps (default 10): tracing each one,
               # with the gradients of every step's batch-norm and pooling ops, was half of the
               # export. tests/test_evaluate_steps.py checks the step counts and their default.
               "run_experiment.export_max_steps = 2"]


def check_glyph_file(gin_file: str, root: str, glyph_cache: str) -> None:
  results = _run(gin_file, root, VISION_TINY + [
      f"ensure_glyphs.cache_dir = '{glyph_cache}'", "ensure_glyphs.num_classes = 40",
      "ensure_glyphs.instances_per_class = 10"])
  _assert_files(root, ("results.json", "test_tasks.png", "saved_model/saved_model.pb",
                       "best/scores.json"))
  assert set(results["evaluations"]) == {"test", "test_ensemble"}
  test = results["evaluations"]["test"]
  assert set(test) == {f"accuracy_after_{k}_steps" for k in (0, 1, 2)}
  assert test["accuracy_after_2_steps"]["n"] == 4
  assert 0 <= test["accuracy_after_2_steps"]["mean"] <= 1
  assert "sqrt_p_1_minus_p" in test["accuracy_after_2_steps"]
  # The figure draws results.json's test numbers (all 4 episodes, every step), read back from
  # test_tasks.json, which stores what test_tasks.png draws.
  with open(os.path.join(root, "test_tasks.json")) as f:
    drawn = json.load(f)["panels"][0]["series"]
  ensemble = f"{results['method']}, best checkpoints ensembled"
  assert list(drawn) == [results["method"], ensemble]
  assert_draws(drawn[results["method"]], test, "accuracy", scale=100)
  assert_draws(drawn[ensemble], results["evaluations"]["test_ensemble"], "accuracy", scale=100)
  assert sorted(results["validation"]["history"]) == ["1", "2"]
  tags = summary_tags(os.path.join(root, "train"))
  assert sum(t.startswith("degree_of_conflict/") for t in tags) == 6
  assert sum(t.startswith("landscape/") for t in tags) == 6  # conv4 with batch norm.
  assert {"query_accuracy_after_step/0", "query_accuracy_after_step/2",
          "query_loss_after_step/2"} <= tags
  l2f = "l2f" in os.path.basename(gin_file)
  assert sum(t.startswith("gamma/") for t in tags) == (6 if l2f else 0)
  assert "val/accuracy_after_2_steps" in summary_tags(os.path.join(root, "eval"))


# Tiny, but through every stage: steps, summaries, validation, evaluation, export, figure.
LEO_TINY = ["Trainer.num_iterations = 2", "Trainer.validate_every = 1",
            "Runner.checkpoint_every = 1", "Trainer.summary_every = 2",
            "Runner.log_every_seconds = 0", "LEO.num_latent_steps = 1",
            "LEO.num_finetuning_steps = 1", "leo_network.num_latents = 4",
            "FewShotEmbeddings.meta_batch_size = 2", "Trainer.num_val_episodes = 3",
            "run_experiment.num_eval_tasks = 4", "FewShotEmbeddings.eval_batch_size = 2",
            "FewShotEmbeddings.plot_episodes = 3"]


def write_leo_pickles(root, dim=640, classes=(7, 6, 6), per_class=12, seed=0):
  """miniImageNet/center/{train,val,test}_embeddings.pkl as in LEO's release (keys
  "<id>-<wnid>-<wnid>_<file>"), with class-dependent embeddings."""
  rng = np.random.default_rng(seed)
  for split, count in zip(("train", "val", "test"), classes):
    centers = rng.normal(size=(count, dim))
    rows, wnids, files = [], [], []
    for c in range(count):
      wnid = f"n{split[:2]}{c:06d}"
      for i in range(per_class):
        rows.append(centers[c] + rng.normal(size=dim))
        wnids.append(wnid)
        files.append(f"{i:08d}.JPEG")
    leo_embeddings.write_embedding_split(
        leo_embeddings.embedding_path(root, "miniImageNet", "center", split),
        np.asarray(rows, np.float32), wnids, files)
  return root


def check_leo_glyph_file(gin_file: str, root: str, glyph_cache: str) -> None:
  results = _run(gin_file, root, LEO_TINY + [
      f"ensure_glyph_embeddings.cache_dir = '{glyph_cache}'",
      "ensure_glyph_embeddings.num_classes = 40", "ensure_glyph_embeddings.instances_per_class = 10",
      "ensure_glyph_embeddings.filters = 8", "ensure_glyph_embeddings.epochs = 1"])
  _assert_files(root, ("results.json", "test_tasks.png", "saved_model/saved_model.pb",
                       "best/scores.json"))
  l2f = "l2f" in os.path.basename(gin_file)
  assert results["method"] == ("LEO+L2F" if l2f else "LEO")
  test = results["evaluations"]["test"]
  assert set(test) == {f"accuracy_after_{k}_steps" for k in (0, 1, 2)}
  assert test["accuracy_after_2_steps"]["n"] == 4
  tags = summary_tags(os.path.join(root, "train"))
  assert {"query_accuracy_after_step/2", "latent_kl", "meta_loss"} <= tags
  assert sum(t.startswith("degree_of_conflict/") for t in tags) == 5  # LEO's 5 matrices
  assert sorted(t for t in tags if t.startswith("gamma/")) == (
      ["gamma/latents", "gamma/weights"] if l2f else [])


RL_TINY = ["MetaRLDomain.meta_batch_size = 2", "MetaRLDomain.trajectories_per_task = 2",
           "MetaRLDomain.horizon = 5", "run_experiment.num_eval_tasks = 2",
           "run_experiment.eval_steps = (1, 2)", "MetaRLDomain.hidden_units = (8, 8)",
           "MetaRLTrainer.num_iterations = 2", "Runner.checkpoint_every = 1",
           "Runner.log_every_seconds = 0", "MetaRLTrainer.conflict_every = 2",
           "MetaRLDomain.num_workers = 0"]  # worker processes: tests/rl/test_sampler.py


def check_rl_file(gin_file: str, root: str) -> None:
  results = _run(gin_file, root, RL_TINY)
  l2f = os.path.basename(gin_file).endswith("_l2f.gin")
  assert results["method"] == ("MAML+L2F" if l2f else "MAML")
  assert results["meta_iterations"] == 2
  assert results["averaging"] == "trajectory"
  assert sorted(results["evaluations"]["test"]) == sorted(
      [f"return_after_{k}_steps" for k in range(3)]
      + ["return_after_0_steps_without_attenuation"] * l2f)  # theta's return, before gamma
  with open(os.path.join(root, "results.json")) as f:
    assert json.load(f)["evaluations"]["test"]["return_after_1_steps"]["n"] == 2
  assert os.path.getsize(os.path.join(root, "returns.png")) > 5_000
  assert os.path.exists(os.path.join(root, "saved_model", "saved_model.pb"))
  tags = summary_tags(os.path.join(root, "train"))
  assert {"return_before_adaptation", "return_after_adaptation", "kl", "backtracks",
          "env_steps_per_second"} <= tags
  assert sum(t.startswith("gamma/") for t in tags) == (7 if l2f else 0)
  assert sum(t.startswith("degree_of_conflict/") for t in tags) == 7  # At iteration 2.
  assert "test/return_after_1_steps" in summary_tags(os.path.join(root, "eval"))
