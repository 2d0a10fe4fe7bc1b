"""Tests of image decoding, ClassIndex, checks, pickles and format detection."""

import logging as std_logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from l2f_tf.data import readers
from l2f_tf.data.readers import common


@pytest.fixture
def random_png(tmp_path):
  pixels = np.random.RandomState(0).randint(0, 256, size=(6, 9, 3)).astype(np.uint8)
  path = tmp_path / "image.png"
  Image.fromarray(pixels).save(path)
  return path, pixels


def _index(counts, **kwargs):
  classes = {f"c{i}": [f"img{i}_{j}.png" for j in range(n)] for i, n in enumerate(counts)}
  kwargs.setdefault("image_size", (8, 8))
  return common.ClassIndex(classes, root="/data/mini", split="val", format_name="x", **kwargs)


def test_dataset_errors_are_value_errors():
  assert issubclass(readers.DatasetError, ValueError)
  assert issubclass(readers.ImageDecodeError, readers.DatasetError)


def test_png_decodes_to_the_exact_pixels_written(random_png):
  path, pixels = random_png
  for source in (str(path), path):
    image = readers.load_image(source)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, pixels)
  np.testing.assert_array_equal(readers.load_image(path, size=(6, 9)), pixels)


def test_resize_takes_height_then_width_and_uses_lanczos(random_png):
  path, pixels = random_png
  image = readers.load_image(path, size=(5, 12))
  assert image.shape == (5, 12, 3)
  expected = Image.fromarray(pixels).resize((12, 5), Image.Resampling.LANCZOS)
  np.testing.assert_array_equal(image, np.asarray(expected))


def test_resizing_a_flat_image_keeps_its_colour(tmp_path, write_solid_image, solid_color):
  path = write_solid_image(tmp_path / "flat.png", 3, size=(8, 8))
  image = readers.load_image(path, size=(84, 84))
  assert image.shape == (84, 84, 3)
  np.testing.assert_allclose(image.reshape(-1, 3), [solid_color(3)] * 84 * 84, atol=1)


def test_one_channel_is_the_itu_r_601_luma(random_png):
  path, pixels = random_png
  image = readers.load_image(path, channels=1)
  assert image.shape == (6, 9, 1)
  luma = pixels.astype(np.float64) @ [0.299, 0.587, 0.114]
  np.testing.assert_allclose(image[..., 0], luma, atol=1)


def test_encoded_and_array_sources_decode_like_the_file(random_png, encode_png):
  path, pixels = random_png
  data = encode_png(pixels)
  encoded = np.frombuffer(data, dtype=np.uint8)
  sources = [
      data,
      encoded,  # 1-D array of PNG bytes.
      encoded.reshape(-1, 1),  # What cv2.imencode returns.
      common.ArrayRef([b"", data], 1, origin="x.pkl"),
      common.ArrayRef([data.decode("latin1")], 0, origin="py2.pkl"),  # Python 2 str.
      common.ArrayRef(pixels[None], 0, origin="images.npz"),  # Decoded image array.
  ]
  for source in sources:
    np.testing.assert_array_equal(readers.load_image(source), pixels)


def test_grayscale_array_store_gives_one_or_three_channels():
  gray = np.arange(12, dtype=np.uint8).reshape(1, 3, 4, 1) * 20
  ref = common.ArrayRef(gray, 0)
  np.testing.assert_array_equal(readers.load_image(ref, channels=1), gray[0])
  np.testing.assert_array_equal(readers.load_image(ref), np.repeat(gray[0], 3, axis=-1))


@pytest.mark.parametrize("degrees, turns", [(0, 0), (90, 1), (180, 2), (270, 3), (450, 1)])
def test_rotation_is_counter_clockwise_like_np_rot90(random_png, degrees, turns):
  path, pixels = random_png
  image = readers.load_image(readers.Rotated(path, degrees))
  np.testing.assert_array_equal(image, np.rot90(pixels, turns))


def test_rotation_happens_before_resizing_to_the_requested_shape(random_png):
  path, _ = random_png
  assert readers.load_image(readers.Rotated(path, 90), size=(5, 7)).shape == (5, 7, 3)


def test_float_array_store_is_rejected_with_the_store_name():
  with pytest.raises(readers.ImageDecodeError, match=r"cache\.pkl\[0\].*float32"):
    readers.load_image(common.ArrayRef(np.zeros((1, 4, 4, 3), np.float32), 0, "cache.pkl"))


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_raises_image_decode_error_naming_the_file(tmp_path, suffix):
  pixels = np.random.RandomState(1).randint(0, 256, size=(32, 32, 3)).astype(np.uint8)
  path = tmp_path / f"broken{suffix}"
  Image.fromarray(pixels).save(path)
  _truncate(path)
  with pytest.raises(readers.ImageDecodeError, match="broken") as info:
    readers.load_image(path)
  assert str(info.value) == (f"Cannot decode image {path}: it is truncated; re-extract it "
                             "from the dataset archive, or delete it.")


def test_garbage_and_missing_files_raise_image_decode_error(tmp_path):
  garbage = tmp_path / "garbage.jpg"
  garbage.write_bytes(b"this is not an image")
  with pytest.raises(readers.ImageDecodeError, match="garbage.jpg"):
    readers.load_image(garbage)
  with pytest.raises(readers.ImageDecodeError, match="missing.jpg.*does not exist"):
    readers.load_image(tmp_path / "missing.jpg")


def test_load_image_or_none_skips_a_bad_image_with_a_warning(tmp_path, random_png, caplog):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  with caplog.at_level(std_logging.WARNING):
    assert readers.load_image_or_none(bad, size=(4, 4)) is None
  warnings = [r for r in caplog.records if r.levelno == std_logging.WARNING]
  assert len(warnings) == 1 and str(bad) in warnings[0].getMessage()
  path, pixels = random_png
  np.testing.assert_array_equal(readers.load_image_or_none(path), pixels)


def test_class_index_is_an_ordered_read_only_mapping():
  index = _index([2, 3, 1], image_size=(10, 12), channels=1)
  assert list(index) == index.class_names == ["c0", "c1", "c2"]
  assert len(index) == 3 and index.num_images == 6
  assert index["c1"] == ["img1_0.png", "img1_1.png", "img1_2.png"]
  assert index.image_size == (10, 12) and index.channels == 1
  assert not hasattr(index, "__setitem__")
  assert "3 classes, 6 images" in repr(index)


def test_class_index_load_image_uses_its_size_and_channels(random_png):
  path, _ = random_png
  index = common.ClassIndex({"a": [path]}, root="r", split="train", format_name="x",
                            image_size=(4, 5), channels=1)
  assert index.load_image(index["a"][0]).shape == (4, 5, 1)


def test_check_enough_classes():
  index = _index([5, 5, 5])
  readers.check_index(index, num_ways=3)
  with pytest.raises(readers.DatasetError) as info:
    readers.check_index(index, num_ways=5)
  message = str(info.value)
  assert "'val'" in message and "/data/mini" in message and "3 classes" in message
  assert "5 ways" in message and "at most 3" in message
  with pytest.raises(readers.DatasetError, match="'test' of /elsewhere"):
    readers.check_index(index, num_ways=4, split="test", root="/elsewhere")


def test_check_enough_images_names_the_smallest_class():
  index = _index([20, 7, 19, 20])
  readers.check_index(index, needed=7)
  with pytest.raises(readers.DatasetError) as info:
    readers.check_index(index, needed=20)
  message = str(info.value)
  assert "'c1'" in message and "7 images" in message and "1 other classes" in message
  assert "20 needed" in message and "/data/mini" in message and "'val'" in message


@pytest.mark.parametrize("name, expected", [("train", "train"), ("VAL", "val"),
                                            ("validation", "val"), ("test", "test")])
def test_split_names(name, expected):
  assert common.normalize_split(name) == expected


def test_unknown_split_is_a_dataset_error():
  with pytest.raises(readers.DatasetError, match="'dev'.*'train', 'val', 'test'"):
    common.normalize_split("dev")


def test_python2_pickle_is_loaded_with_latin1(tmp_path, write_py2_pickle):
  array = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
  path = write_py2_pickle(tmp_path / "py2.pkl", {"data": array, "blob": b"\x89PNG\xff"})
  loaded = common.load_pickle(str(path))
  np.testing.assert_array_equal(loaded["data"], array)
  assert loaded["blob"].encode("latin1") == b"\x89PNG\xff"


def test_python3_pickle_is_loaded_as_is(tmp_path):
  path = tmp_path / "py3.pkl"
  path.write_bytes(pickle.dumps({"blob": b"\x89PNG\xff"}))
  assert common.load_pickle(str(path)) == {"blob": b"\x89PNG\xff"}


def test_truncated_or_missing_pickle_is_a_dataset_error(tmp_path):
  path = tmp_path / "cut.pkl"
  path.write_bytes(pickle.dumps({"data": list(range(1000))})[:100])
  with pytest.raises(readers.DatasetError, match="cut.pkl: it is truncated; download it again"):
    common.load_pickle(str(path))
  with pytest.raises(readers.DatasetError, match="nothere.pkl does not exist"):
    common.load_pickle(str(tmp_path / "nothere.pkl"))


def test_missing_root_is_a_dataset_error(tmp_path):
  root = tmp_path / "no_such_dir"
  for call in (readers.detect_format, lambda r: readers.load_split(r, "train")):
    with pytest.raises(readers.DatasetError, match="no_such_dir does not exist"):
      call(root)


def test_unrecognised_root_lists_every_layout_looked_for(tmp_path):
  (tmp_path / "some_file.txt").write_text("x")
  with pytest.raises(readers.DatasetError) as info:
    readers.detect_format(tmp_path)
  message = str(info.value)
  assert str(tmp_path) in message
  for expected in ["mini-imagenet-cache", "train.csv", "<wnid>", "_images_png.pkl",
                   "_images.npz", "images_background"]:
    assert expected in message
  for name in readers.FORMATS:
    assert name in message


def test_unrecognised_root_suggests_a_subfolder_that_is_recognised(tmp_path):
  (tmp_path / "omniglot" / "images_background").mkdir(parents=True)
  with pytest.raises(readers.DatasetError, match="use root=.*omniglot"):
    readers.detect_format(tmp_path)


def test_list_images_keeps_only_images_sorted(tmp_path):
  for name in ["b.JPG", "a.png", "c.jpeg", "notes.txt", ".DS_Store"]:
    (tmp_path / name).write_bytes(b"")
  assert [os.path.basename(p) for p in common.list_images(str(tmp_path))] == [
      "a.png", "b.JPG", "c.jpeg"]


def test_readers_do_not_import_tensorflow():
  code = "import sys, l2f_tf.data.readers; assert 'tensorflow' not in sys.modules"
  repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=repo_root)
