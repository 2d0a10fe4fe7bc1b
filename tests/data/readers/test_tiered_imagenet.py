"""Tests of the tieredImageNet PNG-pickle and npz layouts on tiny files in the real formats."""

import io
import pickle
import zipfile

import numpy as np
import pytest

from l2f_tf.data import readers
from l2f_tf.data.readers import tiered_imagenet
from tests import fake_images

# Classes per split (label_specific_str) and their higher-level categories; 4 images each.
NAMES = {"train": ["n201", "n202", "n203"], "val": ["n301", "n302"], "test": ["n401", "n402"]}
IMAGES_PER_CLASS = 4


def _split_data(split):
  """Random 8 x 8 images with labels in shuffled order (images of a class not contiguous)."""
  rng = np.random.RandomState(len(split))
  labels = rng.permutation(np.repeat(np.arange(len(NAMES[split])), IMAGES_PER_CLASS))
  images = rng.randint(0, 256, size=(len(labels), 8, 8, 3)).astype(np.uint8)
  return images, labels


def _labels_dict(labels, split):
  return {"label_specific": labels, "label_general": labels // 2,
          "label_specific_str": NAMES[split],
          "label_general_str": [f"category{i}" for i in range(2)]}


def _assert_index(index, split, names, size=None):
  images, labels = _split_data(split)
  assert index.class_names == names
  assert index.num_images == len(labels)
  for label, name in enumerate(names):
    expected = np.flatnonzero(labels == label)  # In file order.
    assert [source.index for source in index[name]] == list(expected)
    for source, row in zip(index[name], expected):
      image = readers.load_image(source, size)
      np.testing.assert_array_equal(image, images[row])  # PNG / raw arrays are lossless.


def _write_pickle(path, obj):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def write_png_pickle_root(root):
  """The PNG-pickle layout of `NAMES` in `root` (a pathlib.Path); returns `root`."""
  for split in NAMES:
    images, labels = _split_data(split)
    _write_pickle(root / f"{split}_images_png.pkl",
                  [fake_images.encode_png(im) for im in images])
    _write_pickle(root / f"{split}_labels.pkl", _labels_dict(labels, split))
  return root


@pytest.fixture
def png_root(tmp_path):
  return write_png_pickle_root(tmp_path)


@pytest.fixture
def npz_root(tmp_path):
  for split in NAMES:
    images, labels = _split_data(split)
    np.savez(tmp_path / f"{split}_images.npz", images=images)
    _write_pickle(tmp_path / f"{split}_labels.pkl", {"labels": labels})
  return tmp_path


def test_png_pickle_layout(png_root):
  assert readers.detect_format(png_root) == "tiered_imagenet_png_pickle"
  for split in NAMES:
    index = readers.load_split(png_root, split)
    assert index.image_size == (84, 84) and index.format_name == "tiered_imagenet_png_pickle"
    _assert_index(index, split, NAMES[split], size=(8, 8))
  index = readers.load_split(png_root, "train")
  assert index.load_image(index["n201"][0]).shape == (84, 84, 3)


def test_png_pickle_of_cv2_encoded_arrays(tmp_path, encode_png):
  images, labels = _split_data("val")
  encoded = [np.frombuffer(encode_png(im), np.uint8).reshape(-1, 1) for im in images]
  _write_pickle(tmp_path / "val_images_png.pkl", encoded)
  _write_pickle(tmp_path / "val_labels.pkl", _labels_dict(labels, "val"))
  _assert_index(readers.load_split(tmp_path, "val"), "val", NAMES["val"], size=(8, 8))


def test_python2_pickles_are_read_with_latin1(tmp_path, encode_png, write_py2_pickle):
  images, labels = _split_data("test")
  write_py2_pickle(tmp_path / "test_images_png.pkl", [encode_png(im) for im in images])
  # Small labels are ASCII bytes: Python 2 str keys and names, but no latin1 needed.
  write_py2_pickle(tmp_path / "test_labels.pkl", _labels_dict(labels, "test"),
                   needs_latin1=False)
  _assert_index(readers.load_split(tmp_path, "test"), "test", NAMES["test"], size=(8, 8))


def test_npz_layout_is_memory_mapped(npz_root):
  assert readers.detect_format(npz_root) == "tiered_imagenet_npz"
  for split in NAMES:
    index = readers.load_split(npz_root, split)
    names = [f"class_{i:04d}" for i in range(len(NAMES[split]))]
    _assert_index(index, split, names)  # Stored size 8 x 8 kept.
    assert isinstance(index[names[0]][0].store, np.memmap)


def test_npz_labels_with_class_names_use_them(npz_root):
  _, labels = _split_data("val")
  _write_pickle(npz_root / "val_labels.pkl", {"labels": labels,
                                              "label_specific_str": NAMES["val"]})
  assert readers.load_split(npz_root, "val").class_names == NAMES["val"]


def test_compressed_npz_is_inflated_lazily(tmp_path):
  images, labels = _split_data("train")
  np.savez_compressed(tmp_path / "train_images.npz", images=images)
  _write_pickle(tmp_path / "train_labels.pkl", {"labels": labels})
  store = tiered_imagenet.open_npz_array(str(tmp_path / "train_images.npz"))
  assert not isinstance(store, np.ndarray) and len(store) == len(images)
  assert store._array is None  # pylint: disable=protected-access
  _assert_index(readers.load_split(tmp_path, "train"), "train",
                [f"class_{i:04d}" for i in range(3)])


def test_open_npz_array_of_a_fortran_ordered_array(tmp_path):
  array = np.asfortranarray(np.arange(60, dtype=np.int16).reshape(3, 4, 5))
  np.savez(tmp_path / "f.npz", other=np.zeros(3), images=array)
  store = tiered_imagenet.open_npz_array(str(tmp_path / "f.npz"))
  assert isinstance(store, np.memmap)
  np.testing.assert_array_equal(store, array)


def test_npz_errors(tmp_path):
  np.savez(tmp_path / "train_images.npz", pictures=np.zeros((2, 8, 8, 3), np.uint8))
  _write_pickle(tmp_path / "train_labels.pkl", {"labels": np.array([0, 1])})
  with pytest.raises(readers.DatasetError, match=r"no array 'images' \(found \['pictures'\]\)"):
    readers.load_split(tmp_path, "train")
  (tmp_path / "train_images.npz").write_bytes(b"PK\x03\x04 truncated")
  with pytest.raises(readers.DatasetError, match="train_images.npz is not a valid .npz"):
    readers.load_split(tmp_path, "train")
  for save in (np.savez, np.savez_compressed):
    save(tmp_path / "train_images.npz", images=np.zeros((2, 8, 8), np.float32))
    with pytest.raises(readers.DatasetError, match="should be uint8 N x H x W x 3"):
      readers.load_split(tmp_path, "train")
  np.savez(tmp_path / "train_images.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
  data = (tmp_path / "train_images.npz").read_bytes()
  (tmp_path / "train_images.npz").write_bytes(data[:len(data) // 2])  # Interrupted download.
  with pytest.raises(readers.DatasetError, match="train_images.npz is not a valid .npz"):
    readers.load_split(tmp_path, "train")


def test_npz_member_shorter_than_its_header_is_truncated(tmp_path):
  _write_pickle(tmp_path / "train_labels.pkl", {"labels": np.zeros(100, np.int64)})
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(
      header, {"descr": "|u1", "fortran_order": False, "shape": (100, 8, 8, 3)})
  with zipfile.ZipFile(tmp_path / "train_images.npz", "w") as archive:  # Stored, valid zip.
    archive.writestr("images.npy", header.getvalue() + bytes(2 * 8 * 8 * 3))
  with pytest.raises(readers.DatasetError, match="train_images.npz is truncated"):
    readers.load_split(tmp_path, "train")


def test_labels_and_images_of_different_lengths_are_rejected(png_root):
  _, labels = _split_data("train")
  _write_pickle(png_root / "train_labels.pkl", _labels_dict(labels[:-1], "train"))
  with pytest.raises(readers.DatasetError) as info:
    readers.load_split(png_root, "train")
  message = str(info.value)
  assert "train_labels.pkl has 11 labels" in message
  assert "train_images_png.pkl holds 12 images" in message


def test_labels_pickle_without_labels_is_rejected(png_root):
  _write_pickle(png_root / "val_labels.pkl", {"names": ["x"]})
  with pytest.raises(readers.DatasetError, match=r"val_labels.pkl has none of the keys"):
    readers.load_split(png_root, "val")


def test_missing_labels_file_is_named(png_root):
  (png_root / "test_labels.pkl").unlink()
  with pytest.raises(readers.DatasetError, match="test_labels.pkl does not exist"):
    readers.load_split(png_root, "test")


def test_corrupt_png_in_the_pickle_names_its_position(tmp_path, encode_png):
  images, labels = _split_data("val")
  encoded = [encode_png(im) for im in images]
  encoded[5] = encoded[5][:40]
  _write_pickle(tmp_path / "val_images_png.pkl", encoded)
  _write_pickle(tmp_path / "val_labels.pkl", _labels_dict(labels, "val"))
  index = readers.load_split(tmp_path, "val")
  bad = next(s for sources in index.values() for s in sources if s.index == 5)
  with pytest.raises(readers.ImageDecodeError, match=r"val_images_png\.pkl\[5\]"):
    index.load_image(bad)
  assert readers.load_image_or_none(bad) is None


def test_enough_classes_and_images(png_root):
  index = readers.load_split(png_root, "val")
  readers.check_index(index, num_ways=2)
  readers.check_index(index, needed=IMAGES_PER_CLASS)
  with pytest.raises(readers.DatasetError, match="'val' of .* has 2 classes"):
    readers.check_index(index, num_ways=5)
  with pytest.raises(readers.DatasetError, match="'n301'.*4 images .and 1 other classes."):
    readers.check_index(index, needed=20)
