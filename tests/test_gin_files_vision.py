"""Few-shot gin files: every glyphs file and one miniImageNet file run end to end (tiny), and
every miniImageNet / tieredImageNet file parses into the learner its comment describes."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from l2f_tf import evaluate, export
from l2f_tf.meta.attenuation import TaskConditionedAttenuation, TaskIndependentAttenuation
from l2f_tf.train import experiment, restore
from l2f_tf.train.experiment import build_learner
from tests.fake_images import write_class_folders
from tests.test_gin_files import summary_tags
from tests.test_plots import assert_draws

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # holds the package's gin/ folder


def gin_files(folder):
  return sorted(os.path.relpath(p, GIN_PARENT) for p in glob.glob(
      os.path.join(GIN_PARENT, "gin", folder, "**", "*.gin"), recursive=True)
      if os.path.basename(p) != "setup.gin")


GLYPH_FILES = [f for f in gin_files("glyphs")  # LEO's: tests/test_gin_files_leo.py
               if not os.path.basename(f).startswith("leo")]
DATASET_FILES = gin_files("mini_imagenet") + gin_files("tiered_imagenet")
# Tiny, but through every stage: first- and second-order steps, validation, top-k, ensemble.
TINY = ["Trainer.num_iterations = 2", "Trainer.first_order_until = 1",
        "Trainer.validate_every = 1", "Runner.checkpoint_every = 1", "Trainer.summary_every = 2",
        "Trainer.keep_best = 2", "Runner.log_every_seconds = 0",
        "MetaLearner.num_inner_steps = 2", "conv4.filters = 4",
        "Trainer.num_val_episodes = 3", "run_experiment.num_eval_tasks = 4",
        "FewShotClassification.eval_batch_size = 2", "FewShotClassification.plot_episodes = 3"]


@pytest.fixture(scope="module")
def glyph_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("glyph_cache"))


def test_every_few_shot_experiment_of_the_paper_has_a_gin_file():
  """Tables 1-2 (every MAML / MAML+L2F row), Tables 3-6 ablations, and the glyphs files."""
  methods, shots = ("maml", "l2f"), (1, 5)
  expected = {f"gin/glyphs/{m}_{k}shot.gin" for m in methods for k in shots}
  expected |= {f"gin/{d}/{b}_{m}_{k}shot.gin" for d in ("mini_imagenet", "tiered_imagenet")
               for b in ("conv4", "resnet12") for m in methods for k in shots}
  ablations = [f"{m}_{n}steps" for m in methods for n in range(1, 7)]  # Table 3
  ablations += [f"task_independent_{s}" for s in ("filter", "layer", "network", "parameter")]
  ablations += ["l2f_prototype_embedding", "l2f_unconstrained", "l2f_affine"]  # Tables 5, 6
  expected |= {f"gin/mini_imagenet/ablations/{a}.gin" for a in ablations}
  assert not sorted(expected - set(GLYPH_FILES + DATASET_FILES))


@pytest.mark.parametrize("gin_file", GLYPH_FILES)
def test_glyph_file_runs_end_to_end(gin_file, glyph_cache, tmp_path):
  root = str(tmp_path / "run")
  restore.setup_run(root, [os.path.join(GIN_PARENT, gin_file)], TINY + [
      f"ensure_glyphs.cache_dir = '{glyph_cache}'", "ensure_glyphs.num_classes = 40",
      "ensure_glyphs.instances_per_class = 10"])
  results = experiment.run_experiment(root)
  for name in ("results.json", "test_tasks.png", "saved_model/saved_model.pb",
               "best/scores.json"):
    assert os.path.exists(os.path.join(root, name)), name
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


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
  """conv4_l2f_5shot.gin through the CLI on a tiny miniImageNet class-folder copy (JPEGs)."""
  base = tmp_path_factory.mktemp("mini_run")
  data = write_class_folders(str(base / "mini"), classes=(6, 5, 5), images_per_class=8,
                             size=20, extension=".jpg")
  root = str(base / "run")
  bindings = TINY + [f"FewShotClassification.root = '{data}'",
                     "FewShotClassification.image_size = 16",
                     "FewShotClassification.num_queries = 2"]
  subprocess.run([sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
                  "--gin_file=gin/mini_imagenet/conv4_l2f_5shot.gin"] +
                 [f"--gin_bindings={b}" for b in bindings], check=True, cwd=REPO,
                 capture_output=True)
  return root, data


def test_mini_imagenet_file_runs_and_its_saved_model_reproduces_the_test_figure(mini_run):
  root, data = mini_run
  with open(os.path.join(root, "results.json")) as f:
    results = json.load(f)
  assert results["domain"] == "mini_imagenet" and results["method"] == "MAML+L2F"
  exported = evaluate.evaluate_saved_model(
      os.path.join(root, "saved_model"), num_tasks=4, seed=20200614, distributions=["test"],
      gin_bindings=[f"FewShotClassification.root = '{data}'"])
  assert exported["test"]["accuracy_after_2_steps"]["mean"] == pytest.approx(
      results["evaluations"]["test"]["accuracy_after_2_steps"]["mean"], abs=1e-6)


def test_saved_model_names_what_is_wrong_with_the_input(mini_run):
  loaded = export.load(os.path.join(mini_run[0], "saved_model"))
  rng = np.random.default_rng(0)
  images = lambda n, size=16: rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
  labels = np.repeat(np.arange(5), 5).astype(np.int32)
  logits = loaded.predict(images(25), labels, images(7))
  assert logits.shape == (7, 5)
  with pytest.raises(ValueError,
                     match=r"query_x has shape \[7, 20, 20, 3\].*5-way 5-shot.*16x16x3"):
    loaded.predict(images(25), labels, images(7, size=20))
  with pytest.raises(ValueError, match=r"support_x has shape \[5, 16, 16, 3\].*expects support_x "
                                       r"\[25, 16, 16, 3\]"):
    loaded.predict(images(5), labels[::5], images(7))  # 1-shot input for a 5-shot model
  with pytest.raises(ValueError, match=r"labels must be in 0..4"):
    loaded.predict(images(25), labels + 1, images(7))
  with pytest.raises(ValueError, match="integer class labels"):
    loaded.predict(images(25), labels.astype(np.float32), images(7))


def _expected(gin_file):
  name = os.path.basename(gin_file)
  steps = re.search(r"(\d)steps", name)
  return {"resnet12": "resnet12" in name, "shots": 1 if "1shot" in name else 5,
          "steps": int(steps.group(1)) if steps else 5}


@pytest.mark.parametrize("gin_file", DATASET_FILES)
def test_dataset_file_builds_the_learner_it_describes(gin_file, tmp_path):
  domain = restore.parse_domain([os.path.join(GIN_PARENT, gin_file)], [
      "FewShotClassification.image_size = 16", "resnet12.channels = (4, 4, 4, 4)",
      "conv4.filters = 4"])
  assert domain.root.startswith("data/")  # the user points it at their copy
  domain._channels = 3  # no dataset on disk: build the model without reading a split
  domain.sampler = lambda split: type("S", (), {"item_shape": (16, 16, 3)})()
  learner = build_learner(domain)
  expected = _expected(gin_file)
  assert len(learner.inner_variables) == (18 if expected["resnet12"] else 6)
  assert domain.num_shots == expected["shots"]
  assert domain.meta_batch_size == (4 if expected["shots"] == 1 else 2)
  assert learner.num_inner_steps == expected["steps"]
  assert learner.task_reduction == "sum"
  name = os.path.basename(gin_file)
  attenuation = learner.attenuation
  if name.startswith("task_independent"):
    assert isinstance(attenuation, TaskIndependentAttenuation)
    assert attenuation.scope == name[len("task_independent_"):-len(".gin")]
  elif "l2f" in name:
    assert isinstance(attenuation, TaskConditionedAttenuation)
    assert attenuation.embedding == ("prototype_mean" if "prototype" in name else "gradient_mean")
    assert attenuation.transform == next(
        (t for t in ("unconstrained", "affine") if t in name), "sigmoid")
  else:
    assert attenuation is None
