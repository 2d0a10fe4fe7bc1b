"""Exported models (supervised and meta-RL) and the evaluate tool fail clearly on bad input:
checks inside the graph for any consumer, checks in ``export.load`` before the call, and
``evaluate``'s errors (the command line's one line: tests/test_export_bad_inputs_slow.py)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf import evaluate, export
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.run_folder import RunFolder
from tests import shared_runs
from tests.domains.test_few_shot import domain as few_shot_domain
from tests.fake_images import write_class_folders
from tests.rl.test_maml_trpo import policy_learner

SINUSOID_CONFIG = shared_runs.SINUSOID_CONFIG


@pytest.fixture(scope="module")
def sinusoid_run(tmp_path_factory):
  """(run folder, its SavedModel loaded raw): the session's finished-looking sinusoid run (3
  inner steps exported)."""
  folder = shared_runs.sinusoid_export_run(tmp_path_factory)
  return folder, tf.saved_model.load(folder.saved_model)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
  path = export.export_policy(policy_learner(l2f=True),
                              str(tmp_path_factory.mktemp("rl") / "sm"), observation_dim=2,
                              action_dim=2, name="Navigation2D")
  return path, tf.saved_model.load(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  """The path of an exported 3-way 2-shot image learner on 16x16x3 pixel values. The checks
  under test are the export's, whatever the network: a flatten-dense one traces a tenth of
  conv4's functions (the glyph end-to-end run exports a conv4), and max_steps=1 traces one
  inner step in the step-count signatures (unused here), not the default 10."""
  base = tmp_path_factory.mktemp("images")
  dense = lambda num_classes, image_shape: keras.Sequential(
      [keras.Input(image_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])
  domain = few_shot_domain(write_class_folders(str(base / "data"), size=16), backbone=dense)
  learner = MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1, inner_lr=0.1)
  return export.export_for_domain(learner, domain, str(base / "saved_model"), max_steps=1)


def trajectories(rng, n=3, h=5, obs=2, act=2):
  return [rng.normal(size=(n, h, obs)).astype(np.float32),
          rng.normal(size=(n, h, act)).astype(np.float32),
          rng.normal(size=(n, h)).astype(np.float32), np.ones((n, h), np.float32),
          rng.normal(size=(4, obs)).astype(np.float32)]


def as_kwargs(names, values):
  return {name: tf.constant(value) for name, value in zip(names, values)}


# --- supervised ----------------------------------------------------------------------------------
def test_raw_signature_checks_shapes_and_values_in_the_graph(sinusoid_run):
  _, raw = sinusoid_run
  single, batch = raw.signatures["adapt_and_predict"], raw.signatures["adapt_and_predict_batch"]
  x = np.linspace(-1, 1, 5, dtype=np.float32)[:, None]
  call = lambda fn, *v: fn(**as_kwargs(["support_x", "support_y", "query_x"], v))
  assert call(single, x, x, x)["predictions"].shape == (5, 1)
  error = tf.errors.InvalidArgumentError
  # A signature call does not check shapes itself: the graph does, naming the input.
  with pytest.raises(error, match=r"Shape of tensor support_x \[5,2\] is not compatible with "
                                  r"expected shape \[\?,1\]"):
    call(single, np.zeros((5, 2), np.float32), x, x)
  with pytest.raises(error, match="query_x has NaN or infinite values"):
    call(single, x, x, np.full_like(x, np.inf))
  with pytest.raises(error, match="support_y has NaN or infinite values"):
    call(single, x, x * np.nan, x)
  with pytest.raises(error, match="The support set is empty"):
    call(single, x[:0], x[:0], x)
  with pytest.raises(error, match="The support set is empty"):
    call(batch, x[None, :0], x[None, :0], x[None])
  with pytest.raises(error, match="same number of examples"):
    call(single, x, x[:3], x)
  with pytest.raises(error, match="same number of tasks as query_x"):
    call(batch, x[None], x[None], np.stack([x, x]))


def test_load_names_expected_and_passed_inputs(sinusoid_run):
  folder, _ = sinusoid_run
  loaded = export.load(folder.root)  # A run folder: its saved_model/.
  assert isinstance(loaded, export.LoadedLearner) and loaded.path == folder.saved_model
  x = np.linspace(-1, 1, 5)[:, None]  # float64 and int inputs are converted.
  assert loaded.predict(x, x, np.arange(3)[:, None]).shape == (3, 1)
  with pytest.raises(ValueError, match=r"support_x has dtype <U1, but this SavedModel expects "
                                       r"support_x \[\?, 1\] float32 \(all inputs: support_x "
                                       r"\[\?, 1\] float32; support_y .*sinusoid regression"):
    loaded.predict(np.full((5, 1), "a"), x, x)
  with pytest.raises(ValueError, match=r"query_x has shape \[3\], but this SavedModel expects "
                                       r"query_x \[\?, 1\] float32"):
    loaded.predict(x, x, np.zeros(3))
  # The graph's checks come back as one ValueError line, without TF's boilerplate.
  with pytest.raises(ValueError, match=r"^Bad input for this SavedModel: support_x has NaN or "
                                       r"infinite values : Tensor had NaN values\. It was "
                                       r"exported for: sinusoid"):
    loaded.predict(x * np.nan, x, x)
  with pytest.raises(ValueError, match=r"^Bad input for this SavedModel: The support set is "
                                       r"empty: support_x needs at least one example per task; "
                                       r"got support_x \[0 1\]\."):
    loaded.predict(x[:0], x[:0], x)


def test_image_export_warns_once_about_the_pixel_range(images, capfd):
  rng = np.random.default_rng(0)
  pixels = lambda n, high=255.0: rng.uniform(0, high, (n, 16, 16, 3)).astype(np.float32)
  labels = np.repeat(np.arange(3), 2).astype(np.int32)
  raw = tf.saved_model.load(images)
  single = raw.signatures["adapt_and_predict"]
  call = lambda *v: single(**as_kwargs(["support_x", "support_y", "query_x"], v))["predictions"]
  call(pixels(6), labels, pixels(4))
  assert "WARNING" not in capfd.readouterr().err
  call(pixels(6, 1.0), labels, pixels(4, 1.0))  # Scaled to [0, 1]: wrong for this model.
  err = capfd.readouterr().err
  assert "expects support_x and query_x with values in [0, 255]" in err
  assert "hold values in [" in err and "(Printed once.)" in err
  call(pixels(6, 1.0), labels, pixels(4, 1.0))
  assert "WARNING" not in capfd.readouterr().err  # Once per loaded model.
  assert raw.input_range_warned.numpy()
  loaded = export.load(images)  # A new load warns again, e.g. about normalised images.
  loaded.predict(pixels(6) / 255 - 0.5, labels, pixels(4))
  assert "hold values in [-0.4" in capfd.readouterr().err
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"support_y labels must be in 0..2"):
    call(pixels(6), labels + 1, pixels(4))
  with pytest.raises(ValueError, match=r"support_x has shape \[6, 16, 16\], but this SavedModel "
                                       r"expects support_x \[6, 16, 16, 3\] float32.*3-way 2-shot"):
    loaded.predict(pixels(6)[..., 0], labels, pixels(4))


# --- meta-RL -------------------------------------------------------------------------------------
def test_load_returns_a_policy_that_acts_like_the_raw_saved_model(policy):
  path, raw = policy
  loaded = export.load(path)
  assert isinstance(loaded, export.LoadedPolicy)
  assert (loaded.observation_dim, loaded.action_dim, loaded.num_steps) == (2, 2, 1)
  assert loaded.description.startswith("Navigation2D policy: act(observations [B, 2])")
  values = trajectories(np.random.default_rng(0))
  got = loaded.adapt_and_act(*values)
  expected = raw.adapt_and_act(*values)
  np.testing.assert_allclose(got["mean"], expected["mean"].numpy(), rtol=1e-6)
  np.testing.assert_allclose(loaded.act(values[-1])["mean"],
                             raw.signatures["act"](observations=values[-1])["mean"].numpy())


def test_policy_rejects_bad_trajectories_in_the_graph_and_in_load(policy):
  path, raw = policy
  loaded = export.load(path)
  rng = np.random.default_rng(1)
  adapt = lambda *v: raw.signatures["adapt_and_act"](**as_kwargs(loaded.TRAJECTORIES, v))
  error = tf.errors.InvalidArgumentError
  short = trajectories(rng)
  short[1] = short[1][:, :4]  # actions of 4 steps, the rest 5
  with pytest.raises(error, match=r"must agree on N \(trajectories\) and H \(steps\)"):
    adapt(*short)
  with pytest.raises(ValueError, match=r"^Bad input for this SavedModel: observations \[N, H, "
                                       r"obs_dim\].*must agree on N \(trajectories\) and H "
                                       r"\(steps\); got observations \[3 5 2\] actions \[3 4 2\] "
                                       r"rewards \[3 5\] mask \[3 5\]\. It was exported for: "
                                       r"Navigation2D policy"):
    loaded.adapt_and_act(*short)
  wide = trajectories(rng, obs=3)[:4] + [short[4]]  # Only the trajectories' observations.
  with pytest.raises(error, match=r"Shape of tensor observations \[3,5,3\] is not compatible "
                                  r"with expected shape \[\?,\?,2\]"):
    adapt(*wide)
  with pytest.raises(ValueError, match=r"observations has shape \[3, 5, 3\], but this "
                                       r"SavedModel expects observations \[\?, \?, 2\] float32"):
    loaded.adapt_and_act(*wide)
  with pytest.raises(error, match=r"Shape of tensor observations \[4,3\]"):
    raw.signatures["act"](observations=tf.zeros([4, 3]))
  with pytest.raises(ValueError, match=r"observations has shape \[4\], but this SavedModel "
                                       r"expects observations \[\?, 2\] float32"):
    loaded.act(np.zeros(4))
  nan = trajectories(rng)
  nan[2][0, 0] = np.nan
  with pytest.raises(ValueError, match="rewards has NaN or infinite values"):
    loaded.adapt_and_act(*nan)
  with pytest.raises(error, match="observations has NaN or infinite values"):
    raw.signatures["act"](observations=tf.fill([1, 2], np.inf))
  empty = trajectories(rng)
  empty[3] = np.zeros_like(empty[3])
  with pytest.raises(error, match=r"The support trajectories are empty: mask needs at least one "
                                  r"real step"):
    adapt(*empty)
  with pytest.raises(ValueError, match="The support trajectories are empty"):
    loaded.adapt_and_act(*(v[:0] for v in empty[:4]), empty[4])


# --- paths and the evaluate tool -----------------------------------------------------------------
def test_paths_without_a_saved_model_get_one_line_naming_what_to_do(sinusoid_run, tmp_path):
  folder, _ = sinusoid_run
  assert export.saved_model_dir(folder.root) == folder.saved_model
  assert export.saved_model_dir(folder.saved_model) == folder.saved_model
  unfinished = RunFolder(str(tmp_path / "unfinished"))
  os.makedirs(unfinished.checkpoints)
  with open(unfinished.config, "w") as f:
    f.write(SINUSOID_CONFIG)
  for path in (unfinished.root, unfinished.saved_model):
    with pytest.raises(ValueError, match=(
        rf"^No SavedModel in the run folder {unfinished.root} \(no saved_model/\): it has no "
        rf"checkpoint yet .*Run `python run_experiment.py --root_dir={unfinished.root}` to "
        "finish it")):
      export.load(path)
  with open(os.path.join(unfinished.checkpoints, "checkpoint"), "w") as f:
    f.write("")
  with pytest.raises(ValueError, match="it stopped before exporting its model"):
    export.load(unfinished.root)
  with pytest.raises(ValueError, match=rf"^No SavedModel at {tmp_path}: it has no "
                                       r"saved_model.pb and is not a run folder"):
    export.load(str(tmp_path))
  with pytest.raises(ValueError, match=r"it does not exist\. Pass a run folder or its "
                                       r"saved_model/ directory\.$"):
    export.load(str(tmp_path / "nowhere"))
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "saved_model.pb").write_text("not a protobuf")
  with pytest.raises(ValueError, match="could not be loaded as a SavedModel"):
    export.load(str(broken))


def test_evaluate_takes_a_run_folder_and_names_what_a_policy_needs(sinusoid_run, policy):
  folder, _ = sinusoid_run
  results = evaluate.evaluate_saved_model(folder.root, num_tasks=4, seed=1)
  assert results["test"]["mse_after_3_steps"]["n"] == 4
  with pytest.raises(ValueError, match="is a meta-RL policy outside a run folder: .* pass the "
                                       "run folder"):
    evaluate.evaluate_saved_model(policy[0], num_tasks=4, seed=1)
  # A supervised SavedModel adapts as exported: a learner binding would be ignored.
  with pytest.raises(ValueError, match="learner bindings do not apply here"):
    evaluate.evaluate_saved_model(folder.root, num_tasks=4, seed=1,
                                  gin_bindings=["MetaLearner.later_steps_lr = 0.01"])


