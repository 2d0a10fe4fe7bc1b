"""What a user sees for each bad dataset input: one line naming what is wrong and the fix.

The bad files are written in the real on-disk formats (tests/fake_images.py and the layout
writers of tests/data/readers/), then damaged as a user's copy would be. The table of these
messages is docs/data_errors.md.
"""

import json
import logging as std_logging
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from l2f_tf import atomic
from l2f_tf.data import episodic, glyphs, readers
from l2f_tf.domains import few_shot
from l2f_tf.domains.few_shot import FewShotClassification
from tests.data.readers.test_mini_imagenet import write_cache_pickles
from tests.data.readers.test_tiered_imagenet import write_png_pickle_root
from tests.data.test_glyphs import files_of
from tests.fake_images import write_class_folders

LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               b"size 12345\n")


def _error(call, kind=readers.DatasetError) -> str:
  """The message of the `kind` error `call()` raises, checked to be one line."""
  with pytest.raises(kind) as error:
    call()
  assert type(error.value) is kind
  message = str(error.value)
  assert "\n" not in message and "Traceback" not in message
  return message


def _cut_in_half(path):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


def _folders(tmp_path, name="mini", **kwargs):
  """miniImageNet class folders: 6/5/5 classes of 8 images (n<split><class>_<image>.png)."""
  return write_class_folders(str(tmp_path / name), **kwargs)


def _domain(root, name="mini_imagenet", n=3, k=1, q=5):
  return FewShotClassification(root=root, name=name, num_ways=n, num_shots=k, num_queries=q,
                               image_size=12)


# --- 1. the dataset root ---------------------------------------------------------------------

def test_missing_root(tmp_path):
  assert _error(lambda: readers.load_split(tmp_path / "miniImageNet", "train")) == (
      f"Dataset root {tmp_path / 'miniImageNet'} does not exist or is not a folder: set it to "
      "the folder holding your miniImageNet, tieredImageNet or Omniglot files.")


def test_empty_root(tmp_path):
  (tmp_path / "mini").mkdir()
  assert _error(lambda: readers.load_split(tmp_path / "mini", "train")) == (
      f"Dataset root {tmp_path / 'mini'} is empty: put the dataset there (e.g. miniImageNet's "
      "train/, val/ and test/ class folders) or set the root to the folder that holds it.")


@pytest.mark.parametrize("depth", [1, 2])
def test_dataset_one_or_two_levels_below_the_root(tmp_path, depth):
  root = _folders(tmp_path / "data" if depth == 2 else tmp_path)
  assert _error(lambda: readers.load_split(tmp_path, "train")) == (
      f"Dataset root {tmp_path} holds no dataset itself, but its subfolder {root} does "
      f"(mini_imagenet_folders layout): use root={root}.")


@pytest.mark.parametrize("inside", [("train",), ("train", "n00000002")],
                         ids=["split_folder", "class_folder"])
def test_root_set_to_a_folder_inside_the_dataset(tmp_path, inside):
  root = _folders(tmp_path)
  wrong = os.path.join(root, *inside)
  assert _error(lambda: readers.load_split(wrong, "train")) == (
      f"Dataset root {wrong} is a part of the dataset in {root} (mini_imagenet_folders "
      f"layout): use root={root}.")


def test_split_folders_one_level_deeper(tmp_path):
  # mini/train/{train,val,test}/<wnid>/: an archive extracted into a folder named "train".
  outer = tmp_path / "mini"
  _folders(outer, name="train")
  assert _error(_domain(str(outer)).check_data) == (
      f"The class folders of {outer / 'train'} hold folders, not images: the dataset is one "
      f"level deeper; use root={outer / 'train'}. "
      f"{few_shot.root_binding_hint('FewShotClassification.root')}")


def test_images_directly_in_the_root(tmp_path):
  root = tmp_path / "mini"
  root.mkdir()
  for i in range(3):
    Image.new("RGB", (12, 12)).save(root / f"n0153282900000{i}.jpg")
  assert _error(lambda: readers.load_split(root, "train")) == (
      f"Dataset root {root} holds images (n01532829000000.jpg, ...) directly: the class-folder "
      f"layout is {root / 'train' / '<class>' / '<image>.jpg'}, and the same for val/ and test/.")


def test_class_folders_without_split_folders(tmp_path):
  root = _folders(tmp_path)
  flat = tmp_path / "flat"
  os.rename(os.path.join(root, "train"), flat)  # n00000000/, n00000001/, ... of images
  assert _error(lambda: readers.load_split(flat, "train")) == (
      f"Dataset root {flat} holds class folders (n00000000/, ...) but no train/, val/ and test/ "
      f"split folders: move each split's class folders into {flat / 'train'}, {flat / 'val'} "
      f"and {flat / 'test'}.")


def test_archive_not_extracted(tmp_path):
  root = tmp_path / "omniglot"
  root.mkdir()
  for name in ("images_background.zip", "images_evaluation.zip"):
    (root / name).write_bytes(b"PK\x03\x04")
  assert _error(lambda: readers.load_split(root, "train")) == (
      f"Dataset root {root} holds images_background.zip, images_evaluation.zip but no "
      f"extracted dataset: extract the archive(s) into {root}.")


def test_unrecognised_files_list_the_layouts(tmp_path):
  (tmp_path / "notes.txt").write_text("my dataset")
  assert _error(lambda: readers.load_split(tmp_path, "train")).startswith(
      f"No recognised few-shot dataset in {tmp_path} (it holds notes.txt). Looked for: "
      "mini-imagenet-cache-{train,validation,test}.pkl (mini_imagenet_pickle); ")


def test_another_datasets_layout(tmp_path):
  root = write_png_pickle_root(tmp_path)  # tieredImageNet, for a miniImageNet experiment.
  assert _error(_domain(str(root), n=2, q=1).check_data) == (
      f"Dataset root {root} holds tieredImageNet (tiered_imagenet_png_pickle layout), not "
      "miniImageNet: set the root to your miniImageNet folder. "
      f"{few_shot.root_binding_hint('FewShotClassification.root')}")
  _domain(str(root), name="tiered_imagenet", n=2, q=1).check_data()
  _domain(str(root), name="my_dataset", n=2, q=1).check_data()  # Names of no layout pass.


def test_images_of_another_format(tmp_path):
  root = _folders(tmp_path, extension=".bmp")
  assert _error(lambda: readers.load_split(root, "val")) == (
      f"The class folders of {os.path.join(root, 'val')} hold no .jpg, .jpeg or .png images "
      "(found .bmp files): convert the images to JPEG or PNG.")


# --- 2. a corrupt image ----------------------------------------------------------------------

@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_image_cut_in_half_fails_before_training(tmp_path, extension):
  root = _folders(tmp_path, extension=extension, size=64)
  bad = os.path.join(root, "test", "n02000003", f"n02000003_0000{extension}")
  _cut_in_half(bad)
  # The test split is read before training (it used to be read at the end).
  assert _error(_domain(root).check_data, readers.ImageDecodeError) == (
      f"Cannot decode image {bad}: it is truncated; re-extract it from the dataset archive, "
      "or delete it.")


@pytest.mark.parametrize("content, problem", [
    (b"<html><body>404 Not Found</body></html>",
     "it is an HTML page, not the data (a failed download); re-extract it from the dataset "
     "archive, or delete it"),
    (b"n01532829_0001 label 3\n", "it is not a JPEG or PNG image; re-extract it from the "
     "dataset archive, or delete it"),
    (LFS_POINTER, "it is a Git LFS pointer, not the data; run `git lfs pull` in its repository"),
    (b"", "the file is empty; re-extract it from the dataset archive, or delete it"),
], ids=["html", "text", "lfs_pointer", "empty"])
def test_file_named_jpg_that_is_no_image(tmp_path, content, problem):
  root = _folders(tmp_path, extension=".jpg")
  bad = os.path.join(root, "train", "n00000002", "n00000002_0000.jpg")
  with open(bad, "wb") as f:
    f.write(content)
  message = _error(_domain(root).check_data, readers.ImageDecodeError)
  assert message == f"Cannot decode image {bad}: {problem}."


def test_corrupt_images_met_in_training_name_the_files(tmp_path, caplog):
  # Not the first image of a class (check_data decodes those): met in the tf.data pipeline,
  # skipped with a warning each; the class then runs out of readable images.
  root = write_class_folders(str(tmp_path / "mini"), classes=(3, 3, 3), images_per_class=5)
  bad = [os.path.join(root, "train", "n00000001", f"n00000001_000{i}.png") for i in (1, 2)]
  for path in bad:
    _cut_in_half(path)
  domain = _domain(root, k=2, q=2)
  domain.check_data()

  def train():
    with episodic.raise_data_errors():
      for _ in domain.train_dataset(seed=0).take(2):
        pass

  with caplog.at_level(std_logging.WARNING):
    message = _error(train)
  assert message == (
      f"Class 'n00000001' in split 'train' of {root} has 3 readable images, fewer than the 4 "
      "needed (num_shots=2 + num_queries=2): 2 of its 5 images cannot be decoded (first: "
      f"{bad[0]}: it is truncated); re-extract them or lower num_shots/num_queries.")
  warnings = [r.getMessage() for r in caplog.records if r.levelno == std_logging.WARNING]
  assert (f"Skipping an unreadable image (another of its class replaces it): Cannot decode "
          f"image {bad[0]}: it is truncated; re-extract it from the dataset archive, or delete "
          "it.") in warnings


# --- 3. a class with fewer images than shots + queries ----------------------------------------

def test_small_class_in_the_test_split_fails_before_training(tmp_path):
  root = _folders(tmp_path, images_per_class=8)
  for i in range(3, 8):
    os.remove(os.path.join(root, "test", "n02000004", f"n02000004_{i:04d}.png"))
  domain = _domain(root, k=1, q=5)
  assert _error(domain.check_data) == (
      f"Class 'n02000004' in split 'test' of {root} has 3 images, fewer than the 6 needed per "
      "class (num_shots=1 + num_queries=5): lower num_shots or num_queries, or restore the "
      "missing images.")
  assert "test" not in domain._samplers  # pylint: disable=protected-access
  _domain(root, k=1, q=2).check_data()


# --- 4. a truncated or corrupt pickle ----------------------------------------------------------

@pytest.mark.parametrize("layout, file_name", [
    ("mini", "mini-imagenet-cache-train.pkl"),
    ("tiered", "train_images_png.pkl"),
    ("tiered", "train_labels.pkl"),
])
def test_truncated_pickle(tmp_path, layout, file_name):
  if layout == "mini":
    write_cache_pickles(tmp_path, lambda i: (i, 2 * i, 3 * i))
  else:
    write_png_pickle_root(tmp_path)
  _cut_in_half(tmp_path / file_name)
  assert _error(lambda: readers.load_split(tmp_path, "train")) == (
      f"Cannot unpickle {tmp_path / file_name}: it is truncated; download it again or "
      "re-create it.")


@pytest.mark.parametrize("content, problem", [
    (b"", "the file is empty; download it again or re-create it"),
    (LFS_POINTER, "it is a Git LFS pointer, not the data; run `git lfs pull` in its repository"),
    (b"<!DOCTYPE html><html>Quota exceeded</html>",
     "it is an HTML page, not the data (a failed download); download it again or re-create it"),
    (b"filename,label\nn0153282900000005.jpg,n01532829\n",  # Another file renamed.
     "it is not a pickle, or a damaged one (invalid load key, 'f'); download it again or "
     "re-create it"),
], ids=["empty", "lfs_pointer", "html", "csv"])
def test_pickle_that_is_not_the_data(tmp_path, content, problem):
  root = write_png_pickle_root(tmp_path)
  (root / "val_labels.pkl").write_bytes(content)
  assert _error(lambda: readers.load_split(root, "val")) == (
      f"Cannot unpickle {root / 'val_labels.pkl'}: {problem}.")


def test_truncated_npz(tmp_path):
  np.savez(tmp_path / "train_images.npz", images=np.zeros((4, 8, 8, 3), np.uint8))
  with open(tmp_path / "train_labels.pkl", "wb") as f:
    pickle.dump({"labels": np.array([0, 0, 1, 1])}, f)
  _cut_in_half(tmp_path / "train_images.npz")
  assert _error(lambda: readers.load_split(tmp_path, "train")) == (
      f"{tmp_path / 'train_images.npz'} is not a valid .npz file: it is truncated or not a zip "
      "archive; download it again or re-create it.")


# --- 6. the glyphs cache -----------------------------------------------------------------------

TINY = {"num_classes": 6, "instances_per_class": 2, "image_size": 12}


@pytest.fixture(scope="module")
def tiny_glyphs(tmp_path_factory):
  root = glyphs.ensure_glyphs(tmp_path_factory.mktemp("glyphs"), **TINY)
  return root, files_of(root)


def _copy(root, snapshot, cache_dir):
  copy = os.path.join(cache_dir, os.path.basename(root))
  for relative, data in snapshot.items():
    os.makedirs(os.path.dirname(os.path.join(copy, relative)), exist_ok=True)
    with open(os.path.join(copy, relative), "wb") as f:
      f.write(data)
  return copy


def test_truncated_glyph_image_is_detected_and_regenerated(tiny_glyphs, tmp_path, caplog):
  root, snapshot = tiny_glyphs
  copy = _copy(root, snapshot, tmp_path)
  params = json.loads(snapshot[glyphs.METADATA_FILE])["parameters"]
  assert atomic.folder_problem(copy, glyphs.METADATA_FILE, params) is None
  image = next(name for name in sorted(snapshot) if name.endswith(".png"))
  _cut_in_half(os.path.join(copy, image))
  assert atomic.folder_problem(copy, glyphs.METADATA_FILE, params) == (
      f"{os.path.join(copy, image)} is not the size it was written with")
  with caplog.at_level(std_logging.WARNING):
    assert glyphs.ensure_glyphs(tmp_path, **TINY) == copy
  assert files_of(copy) == snapshot
  assert os.listdir(tmp_path) == [os.path.basename(copy)]  # Nothing left over.
  assert any(f"The glyphs dataset in {copy} is damaged ({os.path.join(copy, image)} is not "
             "the size it was written with): generating it again." == r.getMessage()
             for r in caplog.records)


@pytest.mark.parametrize("damage, problem", [
    (_cut_in_half, "glyphs.json is unreadable"),
    (os.remove, "glyphs.json is missing"),
], ids=["truncated", "deleted"])
def test_damaged_glyph_metadata_is_detected_and_regenerated(tiny_glyphs, tmp_path, damage,
                                                           problem):
  root, snapshot = tiny_glyphs
  copy = _copy(root, snapshot, tmp_path)
  params = json.loads(snapshot[glyphs.METADATA_FILE])["parameters"]
  damage(os.path.join(copy, glyphs.METADATA_FILE))
  assert atomic.folder_problem(copy, glyphs.METADATA_FILE, params).startswith(problem)
  assert glyphs.ensure_glyphs(tmp_path, **TINY) == copy
  assert files_of(copy) == snapshot
