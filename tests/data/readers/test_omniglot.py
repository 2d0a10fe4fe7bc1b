"""Tests of the Omniglot reader: character split, rotated classes and 1-bit PNG decoding."""

import numpy as np
import pytest
from PIL import Image

from l2f_tf.data import readers
from l2f_tf.data.readers import omniglot

# folder -> alphabet -> number of characters; 3 drawings per character.
LAYOUT = {"images_background": {"Latin": 3, "Greek": 3},
          "images_evaluation": {"Kannada": 2, "Atlantean": 2}}
DRAWINGS = 3
SMALL_SPLIT = {"num_train": 6, "num_val": 2}  # 10 characters: 6 / 2 / 2.


def _pattern(character_id, drawing):
  """The 28 x 28 black-and-white drawing written for a character (0 = stroke, 255 = paper)."""
  rng = np.random.RandomState(100 * character_id + drawing)
  return np.where(rng.rand(28, 28) < 0.3, 0, 255).astype(np.uint8)


def _all_characters():
  names = [f"{alphabet}/character{c:02d}" for alphabets in LAYOUT.values()
           for alphabet, count in alphabets.items() for c in range(1, count + 1)]
  return {name: i for i, name in enumerate(names)}


@pytest.fixture
def root(tmp_path):
  ids = _all_characters()
  for folder, alphabets in LAYOUT.items():
    for alphabet, count in alphabets.items():
      for c in range(1, count + 1):
        name = f"{alphabet}/character{c:02d}"
        directory = tmp_path / folder / alphabet / f"character{c:02d}"
        directory.mkdir(parents=True)
        for d in range(DRAWINGS):
          # Omniglot's PNGs are 1-bit ("1" mode) images.
          Image.fromarray(_pattern(ids[name], d)).convert("1").save(
              directory / f"{ids[name]:04d}_{d + 1:02d}.png")
  return tmp_path


def test_split_rule_on_the_full_character_list():
  names = [f"alphabet{i // 40:02d}/character{i % 40:02d}" for i in range(1623)]
  splits = {s: omniglot.split_characters(names[::-1], s) for s in ("train", "val", "test")}
  assert [len(splits[s]) for s in ("train", "val", "test")] == [1100, 100, 423]
  assert sorted(splits["train"] + splits["val"] + splits["test"]) == sorted(names)
  # The documented rule: sort, shuffle with RandomState(1), cut at 1100 and 1200.
  shuffled = [sorted(names)[i] for i in np.random.RandomState(1).permutation(1623)]
  assert splits["train"] == sorted(shuffled[:1100])
  assert splits["val"] == sorted(shuffled[1100:1200])
  assert omniglot.split_characters(names, "test", num_train=1000) == sorted(shuffled[1100:])
  assert omniglot.split_characters(names, "train", seed=2) != splits["train"]


def test_detected_and_split_into_disjoint_rotated_classes(root):
  assert readers.detect_format(root) == "omniglot"
  characters = {}
  for split in ("train", "val", "test"):
    index = readers.load_split(root, split, **SMALL_SPLIT)
    assert index.format_name == "omniglot"
    assert index.image_size == (28, 28) and index.channels == 1
    names = omniglot.split_characters(list(_all_characters()), split, **SMALL_SPLIT)
    expected = [f"{n}/rot{d:03d}" for n in names for d in (0, 90, 180, 270)]
    assert index.class_names == expected
    assert all(len(sources) == DRAWINGS for sources in index.values())
    characters[split] = set(names)
  assert [len(characters[s]) for s in ("train", "val", "test")] == [6, 2, 2]
  assert set.union(*characters.values()) == set(_all_characters())


def test_images_decode_to_the_drawing_and_its_rotations(root):
  index = readers.load_split(root, "train", **SMALL_SPLIT)
  ids = _all_characters()
  character = index.class_names[0].rsplit("/", 1)[0]
  for degrees in (0, 90, 180, 270):
    for d, source in enumerate(index[f"{character}/rot{degrees:03d}"]):
      image = index.load_image(source)
      assert image.shape == (28, 28, 1) and image.dtype == np.uint8
      np.testing.assert_array_equal(image[..., 0],
                                    np.rot90(_pattern(ids[character], d), degrees // 90))


def test_channels_and_size_options(root):
  index = readers.load_split(root, "val", image_size=(14, 14), channels=3, **SMALL_SPLIT)
  image = index.load_image(next(iter(index.values()))[0])
  assert image.shape == (14, 14, 3)
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_full_size_drawings_are_resized_to_28(root):
  path = next((root / "images_background" / "Latin" / "character01").iterdir())
  Image.new("1", (105, 105), 1).save(path)
  image = readers.load_image(path, (28, 28), channels=1)
  assert image.shape == (28, 28, 1) and (image == 255).all()


def test_rotations_option(root):
  index = readers.load_split(root, "test", rotations=(0,), **SMALL_SPLIT)
  assert len(index) == 2 and all(name.endswith("/rot000") for name in index)
  assert all(isinstance(s, str) for sources in index.values() for s in sources)
  with pytest.raises(readers.DatasetError, match="multiples of 90"):
    readers.load_split(root, "test", rotations=(0, 45), **SMALL_SPLIT)


def test_default_split_on_an_incomplete_copy_is_a_dataset_error(root):
  with pytest.raises(readers.DatasetError, match="Only 10 Omniglot characters.*1623"):
    readers.load_split(root, "train")


def test_missing_evaluation_folder_is_named(root):
  (root / "images_evaluation").rename(root / "elsewhere")
  with pytest.raises(readers.DatasetError, match="images_evaluation does not exist"):
    readers.load_split(root, "train", **SMALL_SPLIT)


def test_alphabet_in_both_folders_is_rejected(root):
  (root / "images_evaluation" / "Latin" / "character01").mkdir(parents=True)
  with pytest.raises(readers.DatasetError, match="'Latin/character01' is in both"):
    readers.load_split(root, "train", **SMALL_SPLIT)


def test_character_with_too_few_drawings_is_reported(root):
  index = readers.load_split(root, "train", **SMALL_SPLIT)
  readers.check_index(index, needed=DRAWINGS)
  with pytest.raises(readers.DatasetError, match=r"3 images \(and 23 other classes\)"):
    readers.check_index(index, needed=DRAWINGS + 1)
