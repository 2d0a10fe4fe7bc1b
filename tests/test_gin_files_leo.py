"""LEO gin files: the glyph files run end to end (tiny), a miniImageNet file runs through the
CLI on pickles in the exact format of LEO's release and its SavedModel reproduces the test
figure, and every LEO file parses into the learner its name describes."""

import glob
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from l2f_tf import evaluate, export
from l2f_tf.data.readers import leo_embeddings
from l2f_tf.meta.leo import LEO
from l2f_tf.train import experiment, restore
from l2f_tf.train.experiment import build_learner
from tests.test_gin_files import summary_tags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder
LEO_FILES = sorted(os.path.relpath(p, GIN_PARENT) for p in
                   glob.glob(os.path.join(GIN_PARENT, "gin", "leo", "**", "*.gin"), recursive=True) +
                   glob.glob(os.path.join(GIN_PARENT, "gin", "glyphs", "leo*.gin"))
                   if not p.endswith("setup.gin"))
GLYPH_FILES = [f for f in LEO_FILES if f.startswith("gin/glyphs/")]
# Tiny, but through every stage: steps, summaries, validation, evaluation, export, figure.
TINY = ["Trainer.num_iterations = 2", "Trainer.validate_every = 1", "Runner.checkpoint_every = 1",
        "Trainer.summary_every = 2", "Runner.log_every_seconds = 0",
        "LEO.num_latent_steps = 1", "LEO.num_finetuning_steps = 1", "leo_network.num_latents = 4",
        "FewShotEmbeddings.meta_batch_size = 2", "Trainer.num_val_episodes = 3",
        "run_experiment.num_eval_tasks = 4", "FewShotEmbeddings.eval_batch_size = 2",
        "FewShotEmbeddings.plot_episodes = 3"]


def test_every_leo_row_of_the_paper_has_a_gin_file():
  expected = {f"gin/leo/{d}_imagenet_{m}_{k}shot.gin" for d in ("mini", "tiered")
              for m in ("leo", "leo_l2f") for k in (1, 5)}
  expected |= {f"gin/glyphs/{m}_{k}shot.gin" for m in ("leo", "leo_l2f") for k in (1, 5)}
  expected |= {f"gin/leo/ablations/glyphs_leo_l2f_{p}_only_{k}shot.gin"
               for p in ("latents", "weights") for k in (1, 5)}
  assert not sorted(expected - set(LEO_FILES))


@pytest.fixture(scope="module")
def glyph_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("glyph_cache"))


@pytest.mark.parametrize("gin_file", GLYPH_FILES)
def test_glyph_file_runs_end_to_end(gin_file, glyph_cache, tmp_path):
  root = str(tmp_path / "run")
  restore.setup_run(root, [os.path.join(GIN_PARENT, gin_file)], TINY + [
      f"ensure_glyph_embeddings.cache_dir = '{glyph_cache}'",
      "ensure_glyph_embeddings.num_classes = 40", "ensure_glyph_embeddings.instances_per_class = 10",
      "ensure_glyph_embeddings.filters = 8", "ensure_glyph_embeddings.epochs = 1"])
  try:
    results = experiment.run_experiment(root)
  finally:
    restore.release_locks()
  for name in ("results.json", "test_tasks.png", "saved_model/saved_model.pb",
               "best/scores.json"):
    assert os.path.exists(os.path.join(root, name)), name
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


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("leo_mini")
  data = write_leo_pickles(str(base / "leo_embeddings"))
  root = str(base / "run")
  bindings = TINY + [f"FewShotEmbeddings.root = '{data}'", "FewShotEmbeddings.num_queries = 3"]
  subprocess.run([sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
                  "--gin_file=gin/leo/mini_imagenet_leo_l2f_5shot.gin"] +
                 [f"--gin_bindings={b}" for b in bindings], check=True, cwd=REPO,
                 capture_output=True)
  return root, data


def test_mini_imagenet_file_runs_and_its_saved_model_reproduces_the_test_figure(mini_run):
  root, data = mini_run
  with open(os.path.join(root, "results.json")) as f:
    results = json.load(f)
  assert results["domain"] == "mini_imagenet_leo" and results["method"] == "LEO+L2F"
  exported = evaluate.evaluate_saved_model(
      os.path.join(root, "saved_model"), num_tasks=4, seed=20200614, distributions=["test"],
      gin_bindings=[f"FewShotEmbeddings.root = '{data}'"])
  assert exported["test"]["accuracy_after_2_steps"]["mean"] == pytest.approx(
      results["evaluations"]["test"]["accuracy_after_2_steps"]["mean"], abs=1e-6)


def test_saved_model_equals_the_learner_and_checks_its_inputs(mini_run):
  """The export's logits are the restored learner's on the same (normalised) task."""
  root, data = mini_run
  loaded = export.load(os.path.join(root, "saved_model"))
  gin.clear_config()
  domain, learner = restore.restore_learner(root, gin_bindings=[
      f"FewShotEmbeddings.root = '{data}'"])
  batch = next(iter(domain.eval_batches("test", 2, preprocessed=False)))
  logits = loaded.predict(*(np.asarray(f[0]) for f in batch[:3]))
  normalised = next(iter(domain.eval_batches("test", 2)))
  adaptation = learner.adapt(normalised.support_x[0], normalised.support_y[0])
  expected = learner.forward(adaptation.fast_weights, normalised.query_x[0]).numpy()
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(5), 5).astype(np.int32)
  with pytest.raises(ValueError, match=r"support_x has shape \[25, 64\].*\[25, 640\]"):
    loaded.predict(rng.normal(size=(25, 64)).astype(np.float32), labels,
                   rng.normal(size=(3, 640)).astype(np.float32))
  with pytest.raises(ValueError, match=r"exactly K=5 support examples of each of the 5 "
                                       r"classes.*got per class \[6 4 5 5 5\]"):
    unbalanced = labels.copy()
    unbalanced[5] = 0
    loaded.predict(rng.normal(size=(25, 640)).astype(np.float32), unbalanced,
                   rng.normal(size=(3, 640)).astype(np.float32))
  with pytest.raises(ValueError, match=r"labels must be in 0..4"):
    loaded.predict(rng.normal(size=(25, 640)).astype(np.float32), labels + 1,
                   rng.normal(size=(3, 640)).astype(np.float32))


@pytest.mark.parametrize("gin_file", [f for f in LEO_FILES if not f.startswith("gin/glyphs/")
                                      and "glyphs" not in f])
def test_dataset_file_builds_the_learner_it_describes(gin_file, tmp_path_factory):
  data = write_leo_pickles(str(tmp_path_factory.mktemp("pickles")), dim=8, classes=(5, 5, 5),
                           per_class=20)
  domain = restore.parse_domain([os.path.join(GIN_PARENT, gin_file)], [
      "leo_network.num_latents = 4", f"FewShotEmbeddings.root = '{data}'",
      "FewShotEmbeddings.dataset = 'miniImageNet'"])
  learner = build_learner(domain)
  name = os.path.basename(gin_file)
  assert isinstance(learner, LEO)
  assert domain.num_shots == (1 if "1shot" in name else 5)
  assert domain.meta_batch_size == 12 and domain.num_queries == 15
  assert (learner.num_latent_steps, learner.num_finetuning_steps) == (5, 5)
  assert learner.dropout_rate == 0.5 and learner.kl_weight == 1e-3
  if "l2f" in name:
    points = ("latents",) if "latents_only" in name else ("weights",) \
        if "weights_only" in name else ("latents", "weights")
    assert learner.attenuation.points == points
  else:
    assert learner.attenuation is None
  gin.clear_config()
