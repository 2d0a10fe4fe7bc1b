"""Tests of the three miniImageNet layouts on tiny datasets written in the real formats."""

import pickle
import shutil

import numpy as np
import pytest

from l2f_tf.data import readers
from l2f_tf.data.readers import mini_imagenet

# Class wnids per split, deliberately not sorted; 4 images per class.
CLASSES = {"train": ["n03", "n01", "n04", "n02"], "val": ["n12", "n11", "n13"],
           "test": ["n21", "n23", "n22"]}
IMAGES_PER_CLASS = 4


def _colour_ids():
  """Maps split -> wnid -> the solid-colour index of each of its images, in file order."""
  ids, counter = {}, 0
  for split, wnids in CLASSES.items():
    ids[split] = {}
    for wnid in wnids:
      ids[split][wnid] = list(range(counter, counter + IMAGES_PER_CLASS))
      counter += IMAGES_PER_CLASS
  return ids


def _assert_images_match(index, split, solid_color, size=(84, 84), order=None):
  """Every class has its images, each decoding to the colour written for it (JPEG tol.)."""
  ids = _colour_ids()[split]
  assert index.class_names == sorted(CLASSES[split])
  for wnid, colour_ids in ids.items():
    sources = index[wnid]
    assert len(sources) == IMAGES_PER_CLASS
    for source, colour_id in zip(sources, order(colour_ids) if order else colour_ids):
      image = index.load_image(source)
      assert image.shape == (*size, 3) and image.dtype == np.uint8
      np.testing.assert_allclose(image.reshape(-1, 3).mean(0), solid_color(colour_id), atol=3)


@pytest.fixture
def csv_root(tmp_path, write_solid_image):
  """Ravi-Larochelle layout; CSV rows of each class listed in reverse file order."""
  for split, classes in _colour_ids().items():
    rows = ["filename,label"]
    for wnid, colour_ids in classes.items():
      for j, colour_id in reversed(list(enumerate(colour_ids))):
        name = f"{wnid}{j:08d}.jpg"
        write_solid_image(tmp_path / "images" / name, colour_id)
        rows.append(f"{name},{wnid}")
    (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
  return tmp_path


@pytest.fixture
def folders_root(tmp_path, write_solid_image):
  for split, classes in _colour_ids().items():
    for wnid, colour_ids in classes.items():
      for j, colour_id in enumerate(colour_ids):
        write_solid_image(tmp_path / split / wnid / f"{wnid}_{j:04d}.jpg", colour_id)
    (tmp_path / split / "README.txt").write_text("not a class")
  return tmp_path


def _cache(split, solid_color):
  """The dict of one cache pickle, with the images of the classes interleaved."""
  classes = _colour_ids()[split]
  order = [(wnid, j) for j in range(IMAGES_PER_CLASS) for wnid in classes]
  image_data = np.zeros((len(order), 84, 84, 3), np.uint8)
  class_dict = {wnid: [] for wnid in classes}
  for row, (wnid, j) in enumerate(order):
    image_data[row] = solid_color(classes[wnid][j])
    class_dict[wnid].append(row)
  return {"image_data": image_data, "class_dict": class_dict}


def write_cache_pickles(root, solid_color):
  """The cache-pickle layout of `CLASSES` in `root` (a pathlib.Path); returns `root`."""
  for split, name in [("train", "train"), ("val", "validation"), ("test", "test")]:
    with open(root / f"mini-imagenet-cache-{name}.pkl", "wb") as f:
      pickle.dump(_cache(split, solid_color), f, protocol=pickle.HIGHEST_PROTOCOL)
  return root


@pytest.fixture
def pickle_root(tmp_path, solid_color):
  return write_cache_pickles(tmp_path, solid_color)


@pytest.mark.parametrize("root_fixture, format_name", [
    ("csv_root", "mini_imagenet_csv"), ("folders_root", "mini_imagenet_folders"),
    ("pickle_root", "mini_imagenet_pickle")])
def test_each_layout_is_detected_and_read_with_every_image_in_its_class(
    request, solid_color, root_fixture, format_name):
  root = request.getfixturevalue(root_fixture)
  assert readers.detect_format(root) == format_name
  for split in ["train", "val", "test"]:
    index = readers.load_split(root, split)
    assert index.format_name == format_name and index.split == split
    assert len(index) == len(CLASSES[split])
    assert index.num_images == len(CLASSES[split]) * IMAGES_PER_CLASS
    order = reversed if root_fixture == "csv_root" else None
    _assert_images_match(index, split, solid_color, order=order)


def test_pickle_val_split_is_read_from_the_validation_file(pickle_root, solid_color):
  for name in ["val", "validation"]:
    index = readers.load_split(pickle_root, name)
    assert index.split == "val"
    _assert_images_match(index, "val", solid_color)


def test_pickle_sources_share_one_array(pickle_root):
  index = readers.load_split(pickle_root, "train")
  stores = {id(source.store) for sources in index.values() for source in sources}
  assert len(stores) == 1


def test_image_size_override_resizes(csv_root, solid_color):
  index = readers.load_split(csv_root, "test", image_size=(32, 40))
  assert index.image_size == (32, 40)
  _assert_images_match(index, "test", solid_color, size=(32, 40), order=reversed)


def test_channels_override_gives_grayscale(folders_root):
  index = readers.load_split(folders_root, "train", channels=1)
  assert index.load_image(index["n01"][0]).shape == (84, 84, 1)


def test_python2_cache_pickle_is_read(tmp_path, solid_color, write_py2_pickle):
  write_py2_pickle(tmp_path / "mini-imagenet-cache-test.pkl", _cache("test", solid_color))
  index = readers.load_split(tmp_path, "test")
  _assert_images_match(index, "test", solid_color)


def test_csv_listing_missing_images_names_them(csv_root):
  (csv_root / "images" / "n2100000002.jpg").unlink()
  with pytest.raises(readers.DatasetError) as info:
    readers.load_split(csv_root, "test")
  message = str(info.value)
  assert "test.csv lists 1 files" in message and "n2100000002.jpg" in message
  assert str(csv_root / "images") in message
  readers.load_split(csv_root, "train")  # Other splits are unaffected.


def test_csv_with_a_wrong_header_or_row_is_rejected(csv_root):
  (csv_root / "val.csv").write_text("file,class\nn1100000000.jpg,n11\n")
  with pytest.raises(readers.DatasetError, match="val.csv must start with the header"):
    readers.load_split(csv_root, "val")
  (csv_root / "val.csv").write_text("filename,label\nn1100000000.jpg\n")
  with pytest.raises(readers.DatasetError, match="val.csv, line 2"):
    readers.load_split(csv_root, "val")


@pytest.mark.parametrize("root_fixture, removed, split, pattern", [
    ("csv_root", "test.csv", "test", "test.csv does not exist"),
    ("folders_root", "val", "val", r"val does not exist.*train/, val/ and test/"),
    ("pickle_root", "mini-imagenet-cache-validation.pkl", "val",
     "mini-imagenet-cache-validation.pkl does not exist")])
def test_missing_split_file_is_named(request, root_fixture, removed, split, pattern):
  root = request.getfixturevalue(root_fixture)
  path = root / removed
  if path.is_dir():
    shutil.rmtree(path)
  else:
    path.unlink()
  with pytest.raises(readers.DatasetError, match=pattern):
    readers.load_split(root, split)


def test_folders_split_without_class_folders_is_rejected(tmp_path):
  (tmp_path / "train").mkdir()
  with pytest.raises(readers.DatasetError, match="contains no class folders"):
    readers.load_split(tmp_path, "train")


def test_folder_class_with_too_few_images_is_reported(folders_root):
  for path in sorted((folders_root / "train" / "n02").iterdir())[1:]:
    path.unlink()
  index = readers.load_split(folders_root, "train")
  assert [len(index[w]) for w in index] == [4, 1, 4, 4]
  with pytest.raises(readers.DatasetError, match="'n02'.*1 images"):
    readers.check_index(index, needed=2)
  with pytest.raises(readers.DatasetError, match="4 classes, fewer than the 5 ways"):
    readers.check_index(index, num_ways=5)


def test_pickle_with_wrong_content_is_rejected(tmp_path):
  path = tmp_path / "mini-imagenet-cache-train.pkl"
  path.write_bytes(pickle.dumps({"images": np.zeros((1, 84, 84, 3), np.uint8)}))
  with pytest.raises(readers.DatasetError, match="keys 'image_data' and 'class_dict'"):
    readers.load_split(tmp_path, "train")
  path.write_bytes(pickle.dumps({"image_data": np.zeros((2, 84, 84, 3), np.uint8),
                                 "class_dict": {"n01": [0, 5]}}))
  with pytest.raises(readers.DatasetError, match="'n01' refers to images outside the 2"):
    readers.load_split(tmp_path, "train")


def test_corrupt_jpeg_in_a_split_can_be_skipped(folders_root):
  bad = folders_root / "train" / "n03" / "n03_0001.jpg"
  bad.write_bytes(bad.read_bytes()[:200])
  index = readers.load_split(folders_root, "train")
  with pytest.raises(readers.ImageDecodeError, match="n03_0001.jpg"):
    index.load_image(index["n03"][1])
  loaded = [readers.load_image_or_none(s, index.image_size) for s in index["n03"]]
  assert [image is None for image in loaded] == [False, True, False, False]


def test_paths_helpers():
  assert mini_imagenet.pickle_path("/r", "val") == "/r/mini-imagenet-cache-validation.pkl"
  assert mini_imagenet.csv_path("/r", "validation") == "/r/val.csv"
