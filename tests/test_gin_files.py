"""The package's gin files: every experiment of the paper has one, every dataset file parses
into the learner its name describes, and a bad binding or file name is one clear error.

Running them is tests/test_end_to_end.py (one file per domain, default tier) and
tests/test_gin_files_*.py (every other file, slow tier)."""

import os
import re

import gin
import pytest

from l2f_tf.meta.attenuation import TaskConditionedAttenuation, TaskIndependentAttenuation
from l2f_tf.meta.leo import LEO
from l2f_tf.train import restore
from l2f_tf.train.experiment import build_learner
from tests.end_to_end import (DATASET_FILES, DEFAULT_TIER_FILES, GIN_PARENT, GLYPH_FILES,
                              LEO_FILES, RL_FILES, SINUSOID_FILES, write_leo_pickles)


def test_every_sinusoid_experiment_of_the_paper_has_a_gin_file():
  """Table 7 rows and the Table 4 / Table 6 ablations (extra files are welcome)."""
  expected = [f"gin/sinusoid/{m}_{k}shot.gin" for m in ("maml", "l2f") for k in (5, 10, 20)]
  expected += [f"gin/sinusoid/ablations/task_independent_{s}.gin"
               for s in ("network", "layer", "filter", "parameter")]
  expected += [f"gin/sinusoid/ablations/task_conditioned_{t}.gin"
               for t in ("unconstrained", "affine")]
  assert not sorted(set(expected) - set(SINUSOID_FILES))


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


def test_every_leo_row_of_the_paper_has_a_gin_file():
  expected = {f"gin/leo/{d}_imagenet_{m}_{k}shot.gin" for d in ("mini", "tiered")
              for m in ("leo", "leo_l2f") for k in (1, 5)}
  expected |= {f"gin/glyphs/{m}_{k}shot.gin" for m in ("leo", "leo_l2f") for k in (1, 5)}
  expected |= {f"gin/leo/ablations/glyphs_leo_l2f_{p}_only_{k}shot.gin"
               for p in ("latents", "weights") for k in (1, 5)}
  assert not sorted(expected - set(LEO_FILES))


def test_every_environment_has_both_learners():
  environments = ("navigation2d", "halfcheetah_vel", "halfcheetah_dir", "ant_vel", "ant_dir")
  expected = {f"gin/rl/{e}_{m}.gin" for e in environments for m in ("maml", "l2f")}
  assert not sorted(expected - set(RL_FILES))


def test_the_default_tier_runs_one_file_of_each_domain():
  runnable = SINUSOID_FILES + GLYPH_FILES + LEO_FILES + RL_FILES
  assert set(DEFAULT_TIER_FILES.values()) <= set(runnable)


def _expected(gin_file):
  name = os.path.basename(gin_file)
  steps = re.search(r"(\d)steps", name)
  return {"resnet12": "resnet12" in name, "shots": 1 if "1shot" in name else 5,
          "steps": int(steps.group(1)) if steps else 5}


@pytest.mark.parametrize("gin_file", DATASET_FILES)
def test_dataset_file_builds_the_learner_it_describes(gin_file):
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


@pytest.mark.parametrize("gin_file", [f for f in LEO_FILES if "glyphs" not in f])
def test_leo_dataset_file_builds_the_learner_it_describes(gin_file, tmp_path_factory):
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


def test_bad_binding_names_the_fix(tmp_path):
  with pytest.raises(ValueError, match="gin_bindings"):
    restore.setup_run(str(tmp_path), ["gin/sinusoid/l2f_5shot.gin"], ["Trainer.num_iteration = 3"])
  with pytest.raises(ValueError, match="does not exist"):
    restore.setup_run(str(tmp_path), ["gin/sinusoid/nope.gin"], [])
