"""Labelling one's own images with an exported classifier (`l2f_tf.export.image_folders`,
``LoadedLearner.classify``, ``python -m l2f_tf.predict``): images of several formats, modes and
sizes give the predictions of arrays read by the training reader; in the inductive batch-norm
modes a query's prediction does not depend on the others, in the transductive one all go in
one call; every mistake is one ValueError line naming the fix. The command line (a subprocess)
is tested in test_predict_cli.py, slow tier."""

import os
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from l2f_tf import export
from l2f_tf.data import readers
from l2f_tf.domains.arrays import ArrayClassification
from l2f_tf.export import image_folders
from l2f_tf.meta.learner import MetaLearner
from tests import shared_runs
from tests.domains.test_arrays import classification_splits
from tests.fake_images import coded_image, write_class_folders
from tests.rl.test_maml_trpo import policy_learner
from tests.test_export_batch_norm import exported

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, CHANNELS = (16, 16), 3  # The exports' images: 3-way 2-shot, 16x16x3.
# (name, Pillow mode, (width, height)) of each class's two support images: formats, colour
# modes and sizes other than the model's 16x16 RGB, to be converted and resized as in training.
SUPPORT = [[("a.png", "RGB", (40, 40)), ("b.jpg", "RGB", (30, 50))],
           [("a.png", "L", (20, 20)), ("b.jpeg", "L", (48, 32))],
           [("a.png", "RGBA", (24, 24)), ("b.png", "P", (64, 64))]]
QUERIES = [("q0.bmp", "RGB", (33, 33)), ("q1.gif", "P", (20, 28)), ("q2.jpg", "L", (64, 48)),
           ("q3.png", "RGB", (17, 16))]


def write_image(path, class_id: int, image_id: int, mode: str, size) -> str:
  """A class-patterned image (`coded_image`) in Pillow ``mode``, resized to ``size``."""
  image = Image.fromarray(coded_image(2, class_id, image_id, 48)).convert(mode)
  image.resize(size).save(path)
  return str(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """(dataset root whose test/ split is the support folder, the query folder)."""
  base = tmp_path_factory.mktemp("own_images")
  for class_id, images in enumerate(SUPPORT):
    folder = base / "data" / "test" / f"class_{'abc'[class_id]}"
    folder.mkdir(parents=True)
    for image_id, (name, mode, size) in enumerate(images):
      write_image(folder / name, class_id, image_id, mode, size)
  queries = base / "queries"
  queries.mkdir()
  for image_id, (name, mode, size) in enumerate(QUERIES):
    write_image(queries / name, image_id % 3, 10 + image_id, mode, size)
  (queries / "notes.txt").write_text("not an image")
  return str(base / "data"), str(queries)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """{batch-norm mode: the loaded 3-way 2-shot conv4 export (tests/test_export_batch_norm)}."""
  base = tmp_path_factory.mktemp("predict_exports")
  root = write_class_folders(str(base / "data"), size=16)
  return {mode: export.load(exported(root, mode, str(base / mode)))
          for mode in ("support", "transductive")}


def support_dir(folders):
  return os.path.join(folders[0], "test")


def softmax(logits):
  e = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def reference(loaded, folders):
  """The class probabilities [Q, 3] of the query folder's images, computed from arrays read as
  in training: the support set by the dataset reader's index of the split, the queries by its
  `load_image`, all queries in one call."""
  index = readers.load_split(folders[0], "test", image_size=SIZE, channels=CHANNELS)
  support_x = np.stack([index.load_image(source) for name in index.class_names
                        for source in index[name]]).astype(np.float32)
  support_y = np.repeat(np.arange(3), 2).astype(np.int32)
  query_x = np.stack([readers.load_image(os.path.join(folders[1], name), SIZE, CHANNELS)
                      for name, _, _ in QUERIES]).astype(np.float32)
  return index.class_names, softmax(loaded.predict(support_x, support_y, query_x))


def check_against(predictions, names, probabilities, folders):
  assert [p["path"] for p in predictions] == [os.path.join(folders[1], name)
                                              for name, _, _ in QUERIES]
  assert [p["class"] for p in predictions] == [names[i] for i in probabilities.argmax(-1)]
  np.testing.assert_allclose([p["probability"] for p in predictions],
                             probabilities.max(-1), rtol=1e-5)


def test_classify_reads_images_as_training_does(models, folders):
  loaded = models["support"]
  names, probabilities = reference(loaded, folders)
  assert names == ["class_a", "class_b", "class_c"]
  predictions = loaded.classify(support_dir(folders), [folders[1]])  # notes.txt left out
  check_against(predictions, names, probabilities, folders)
  assert np.ptp(probabilities, axis=0).max() > 1e-3  # the images, not a constant, decide
  single = loaded.classify(support_dir(folders), os.path.join(folders[1], "q2.jpg"))
  assert single == [predictions[2]]


def test_inductive_predictions_do_not_depend_on_the_other_queries(models, folders):
  loaded = models["support"]
  assert not image_folders.depends_on_other_queries(loaded)
  together = loaded.classify(support_dir(folders), folders[1], batch_size=3)  # calls of 3, 1
  for prediction in together:
    alone, = loaded.classify(support_dir(folders), prediction["path"])
    assert alone["class"] == prediction["class"]
    assert alone["probability"] == pytest.approx(prediction["probability"], rel=1e-5)


def test_transductive_predicts_all_queries_in_one_call(models, folders):
  loaded = models["transductive"]
  assert image_folders.depends_on_other_queries(loaded)
  names, probabilities = reference(loaded, folders)  # one call of all queries
  check_against(loaded.classify(support_dir(folders), folders[1], batch_size=1), names,
                probabilities, folders)


def corrupt(path) -> str:
  """Writes a file named like a PNG that holds no image; returns its path."""
  path.write_bytes(b"\x89PNG\r\n\x1a\nthis is not image data")
  return str(path)


def truncated(image, path) -> str:
  """Writes the first half of the file ``image`` to ``path``; returns its path."""
  data = image.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return str(path)


def hide_a_class(support, queries):
  os.rename(support / "class_c", support / ".class_c")  # hidden folders are not classes
  return support, queries


def remove_an_image(support, queries):
  os.remove(support / "class_b" / "a.png")
  return support, queries


def add_an_image(support, queries):
  write_image(support / "class_c" / "c.webp", 2, 5, "RGB", (9, 9))
  return support, queries


def corrupt_a_support_image(support, queries):
  corrupt(support / "class_a" / "a.png")
  return support, queries


# name: (how a copy of the support folder and the query folder are spoilt: (support, queries)
# -> the arguments of classify; the message, a regular expression).
MISTAKES = {
    "missing support folder": (lambda support, queries: (support / "nowhere", queries), (
        r"^The support folder .*nowhere does not exist: pass a folder of 3 class folders, each "
        r"named after its class and holding 2 images \(this SavedModel was exported for 3-way "
        r"2-shot classification\)\.$")),
    "support folder without class folders": (lambda support, queries: (queries, queries), (
        r"^The support folder .*queries has no class folders \(it holds images directly: move "
        r"them into class folders\): it needs 3 class folders, each named after its class and "
        r"holding 2 images \(this SavedModel was exported for 3-way 2-shot classification\)\.$")),
    "too few classes": (hide_a_class, (
        r"^The support folder .*support has 2 class folders \(class_a, class_b\), but this "
        r"SavedModel was exported for 3-way 2-shot classification: give it exactly 3 class "
        r"folders, each named after its class and holding 2 images\.$")),
    "too few images": (remove_an_image, (
        r"^The class folder .*class_b has 1 image, but 2 are needed: this SavedModel was "
        r"exported for 3-way 2-shot classification, so each class folder holds exactly 2 "
        r"images \(add 1\)\.$")),
    "too many images": (add_an_image, (
        r"^The class folder .*class_c has 3 images, but 2 are needed: this SavedModel was "
        r"exported for 3-way 2-shot classification, so each class folder holds exactly 2 "
        r"images \(remove 1\)\.$")),
    "unreadable support image": (corrupt_a_support_image, (
        r"^Cannot read the image .*class_a/a\.png: Pillow does not recognise it as an image; "
        r"replace it with an image Pillow opens \(PNG, JPEG, \.\.\.\)\.$")),
    "truncated query": (lambda support, queries: (
        support, [queries, truncated(queries / "q2.jpg", support.parent / "cut.jpg")]), (
            r"^Cannot read the image .*cut\.jpg: it is truncated; replace it with an image "
            r"Pillow opens \(PNG, JPEG, \.\.\.\)\.$")),
    "no query": (lambda support, queries: (support, []), (
        r"^No query given: pass image files or folders of images to label\.$")),
    "missing query": (lambda support, queries: (support, [queries, queries / "gone.png"]), (
        r"^The query .*gone\.png does not exist: pass an image file or a folder of images\.$")),
    "query folder without images": (lambda support, queries: (support, support), (
        r"^The query folder .*support holds no image files \(files named \*\.png, \*\.jpg, "
        r"\.\.\. directly in it; subfolders are not searched\): pass a folder of images, or "
        r"the image files themselves\.$")),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_raises_one_line_naming_the_fix(models, folders, tmp_path, mistake):
  spoil, message = MISTAKES[mistake]
  support = tmp_path / "support"
  shutil.copytree(support_dir(folders), support)
  support, queries = spoil(support, pathlib.Path(folders[1]))
  with pytest.raises(ValueError, match=message):
    models["support"].classify(support, queries)


def test_an_export_that_is_not_an_image_classifier_is_refused(tmp_path_factory, tmp_path):
  """A regression model, a meta-RL policy and a classifier of vectors, each in one line."""
  regression = export.load(shared_runs.sinusoid_export_run(tmp_path_factory).root)
  policy = export.load(export.export_policy(policy_learner(l2f=False), str(tmp_path / "policy"),
                                            observation_dim=2, action_dim=2))
  domain = ArrayClassification(classification_splits(), num_ways=3, num_shots=1,
                               num_queries=2, meta_batch_size=2)
  learner = MetaLearner(domain.build_model(seed=1), domain.loss_fn, num_inner_steps=1)
  vectors = export.load(export.export_for_domain(learner, domain, str(tmp_path / "vectors"),
                                                 max_steps=1))
  about = r"needs the SavedModel of a few-shot image classification run"
  for loaded, message in [
      (regression, rf"is a regression model \(num_classes 0\), not a classifier: labelling "
                   rf"images {about}; predict with l2f_tf\.export\.load\(path\)\.predict"),
      (policy, rf"is a meta-RL policy, not a classifier: labelling images {about}; load a "
               r"policy with l2f_tf\.export\.load \(act, adapt_and_act\)\.$"),
      (vectors, rf"classifies inputs of shape \[4\], not images of \[height, width, 1 or 3\]: "
                rf"labelling images {about}; predict with")]:
    with pytest.raises(ValueError, match=rf"^{loaded.path} {message}"):
      image_folders.classify(loaded, tmp_path, tmp_path)


def test_batch_size_must_be_a_positive_integer(models, folders):
  for bad in (0, 2.0, True):
    with pytest.raises(ValueError, match="^batch_size must be a positive integer, got "):
      models["support"].classify(support_dir(folders), folders[1], batch_size=bad)
