"""LEO's embedding pickles: reading the real format, every bad file's message, writing, and the
episode sampler over embeddings (the image pipeline's episodes, determinism, layout)."""

import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data import episodic, readers
from l2f_tf.data.readers import leo_embeddings as le
from tests.fake_images import decode_codes, write_class_folders

DIM = 640


def real_keys(classes, per_class, interleave=False):
  """Keys as in LEO's files ("1234-n01532829-n01532829_00001234.JPEG"), and their classes."""
  rows = [(c, i) for c in range(classes) for i in range(per_class)]
  if interleave:  # Class 1's first row before class 0's second: first appearance decides.
    rows = sorted(rows, key=lambda r: (r[1], r[0]))
  wnids = [f"n{1532829 + 7 * c:08d}" for c in range(classes)]
  keys = [f"{1234 + 10 * c + i}-{wnids[c]}-{wnids[c]}_{1234 + 100 * c + i:08d}.JPEG"
          for c, i in rows]
  return keys, [wnids[c] for c, _ in rows], rows, wnids


def write_real(root, split="train", classes=6, per_class=20, dim=DIM, dataset="miniImageNet",
               crop="center", interleave=False, **overrides):
  """A pickle in exactly the released format (protocol 2, dict of numpy arrays)."""
  keys, _, rows, _ = real_keys(classes, per_class, interleave)
  rng = np.random.default_rng([classes, per_class, dim])
  data = {"embeddings": rng.normal(size=(len(keys), dim)).astype(np.float32),
          "labels": np.asarray([c for c, _ in rows], np.int64),
          "keys": np.asarray(keys)}
  data.update(overrides)
  path = os.path.join(str(root), dataset, crop, f"{split}_embeddings.pkl")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    pickle.dump(data, f, protocol=2)
  return path, data


def test_reads_the_real_format_classes_by_first_appearance(tmp_path):
  path, data = write_real(tmp_path, interleave=True)
  with open(path, "rb") as f:
    assert set(pickle.load(f, encoding="latin1")) == {"embeddings", "labels", "keys"}
  split = le.load_embedding_split(tmp_path, "miniImageNet", "center", "train")
  _, _, _, wnids = real_keys(6, 20)
  assert split.class_names == wnids and split.embedding_dim == DIM
  assert split.embeddings.dtype == np.float32 and split.path == path
  for c, rows in enumerate(split.class_rows):  # A class's rows in file order.
    np.testing.assert_array_equal(rows, np.arange(20) * 6 + c)
  np.testing.assert_array_equal(split.embeddings, data["embeddings"])
  # Keys stored as byte strings (a Python 2 file's str) read the same.
  write_real(tmp_path, "val", keys=np.asarray([k.encode() for k in data["keys"]]))
  assert le.load_embedding_split(tmp_path, "miniImageNet", "center", "val").class_names == (
      split.class_names)


def bad_files():
  keys, _, _, _ = real_keys(6, 20)
  embeddings = np.zeros((120, DIM), np.float32) + 1
  nan, inf = embeddings.copy(), embeddings.copy()
  nan[7, 3], inf[9, 0] = np.nan, np.inf
  renamed = list(keys)
  renamed[5] = keys[5].replace("-n", "-x", 1)
  return {
      "missing field": (("whole", {"keys": np.asarray(keys), "embeddings": embeddings}),
                        r"lacks 'labels'"),
      "not a dict": (("whole", [1, 2, 3]), "holds a list, not a dict"),
      "1-D embeddings": ({"embeddings": np.zeros(120, np.float32)}, "not a 2-D float array"),
      "int embeddings": ({"embeddings": np.zeros((120, DIM), np.int32)},
                         "not a 2-D float array"),
      "lengths": ({"labels": np.zeros(119)}, "120 embeddings but 120 keys and 119 labels"),
      "malformed key": ({"keys": np.asarray(keys[:3] + ["n01-x"] + keys[4:])},
                        r"Key 'n01-x' \(row 3\).*three parts"),
      "class mismatch": ({"keys": np.asarray(renamed)}, "gives class 'x01532829' but image"),
      "duplicate": ({"keys": np.asarray(keys[:4] + keys[3:4] + keys[5:])},
                    r"appears twice \(rows 3 and 4\)"),
      "nan": ({"embeddings": nan}, r"1 embeddings with NaN or infinite values \(first: row 7"),
      "inf": ({"embeddings": inf}, "row 9"),
  }


@pytest.mark.parametrize("case", sorted(bad_files()))
def test_each_bad_file_gives_one_clear_line(tmp_path, case):
  content, message = bad_files()[case]
  if isinstance(content, dict):  # Fields replaced in a good file.
    path, _ = write_real(tmp_path, **content)
  else:  # ("whole", the file's whole content).
    path, _ = write_real(tmp_path)
    with open(path, "wb") as f:
      pickle.dump(content[1], f, protocol=2)
  with pytest.raises(readers.DatasetError, match=message) as error:
    le.load_embedding_split(tmp_path, "miniImageNet", "center", "train")
  text = str(error.value)
  assert "\n" not in text and path in text
  assert "write it again" in text or "download it again" in text


def test_unreadable_and_missing_files(tmp_path):
  path, _ = write_real(tmp_path)
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[:len(content) // 2])
  with pytest.raises(readers.DatasetError, match="it is truncated; download or write it again"):
    le.load_embedding_split(tmp_path, "miniImageNet", "center", "train")
  with open(path, "wb") as f:
    f.write(b"<html><body>Not found</body></html>")
  with pytest.raises(readers.DatasetError, match="HTML page"):
    le.load_embedding_split(tmp_path, "miniImageNet", "center", "train")
  # A missing file names the expected path and what the nearest folder holds.
  with pytest.raises(readers.DatasetError, match=r"val_embeddings.pkl does not exist \(.*center "
                     r"holds train_embeddings.pkl\)") as error:
    le.load_embedding_split(tmp_path, "miniImageNet", "center", "val")
  assert os.path.join(str(tmp_path), "miniImageNet", "center", "val_embeddings.pkl") in str(
      error.value)
  os.rename(tmp_path / "miniImageNet", tmp_path / "embeddings")
  with pytest.raises(readers.DatasetError, match=r"holds embeddings/\): set the root \(root=.*"
                     r"embeddings\?\)"):
    le.load_embedding_split(tmp_path, "miniImageNet", "center", "train")
  with pytest.raises(readers.DatasetError, match="only for the 'center' crop"):
    le.load_embedding_split(tmp_path, "tieredImageNet", "multiview", "train")
  with pytest.raises(readers.DatasetError, match="Unknown embedding crop 'left'"):
    le.embedding_path(tmp_path, "miniImageNet", "left", "train")


def test_write_round_trip_and_refusals(tmp_path):
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(12, 5))
  classes = ["b", "a", "b", "c"] * 3
  images = [f"{i:04d}.png" for i in range(12)]
  path = le.embedding_path(tmp_path, "glyphs", "center", "test")
  le.write_embedding_split(path, embeddings, classes, images, ids=range(100, 112))
  with open(path, "rb") as f:
    raw = pickle.load(f, encoding="latin1")
  assert raw["keys"][0] == le.make_key(100, "b", "0000.png") == "100-b-b_0000.png"
  assert raw["embeddings"].dtype == np.float32 and list(raw["labels"][:4]) == [0, 1, 0, 2]
  split = le.load_embedding_split(tmp_path, "glyphs", "center", "test")
  assert split.class_names == ["b", "a", "c"] and split.class_sizes == [6, 3, 3]
  np.testing.assert_array_equal(split.class_rows[0], [0, 2, 4, 6, 8, 10])
  np.testing.assert_allclose(split.embeddings, embeddings.astype(np.float32))
  assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".")]
  for bad_classes, bad_images, message in (
      (["a-b"] * 12, images, "Class name 'a-b'"), (["a_b"] * 12, images, "Class name 'a_b'"),
      (classes, ["x-1.png"] * 12, "Image name 'x-1.png'"),
      (classes[:11], images, "12 embeddings but 11 class names")):
    with pytest.raises(readers.DatasetError, match=message):
      le.write_embedding_split(path, embeddings, bad_classes, bad_images)
  with pytest.raises(readers.DatasetError, match=r"key '7-b-b_same.png' \(row 2\) repeats"):
    le.write_embedding_split(path, embeddings, classes, ["same.png"] * 12, ids=[7] * 12)
  with pytest.raises(readers.DatasetError, match="Id '1-2'"):
    le.write_embedding_split(path, embeddings, classes, images, ids=["1-2"] * 12)
  with pytest.raises(readers.DatasetError, match="NaN or infinite"):
    le.write_embedding_split(path, embeddings * np.nan, classes, images)


def test_dimensions_must_agree_between_splits(tmp_path):
  write_real(tmp_path, "train", dim=8)
  write_real(tmp_path, "val", dim=9)
  splits = [le.load_embedding_split(tmp_path, "miniImageNet", "center", s)
            for s in ("train", "val")]
  with pytest.raises(readers.DatasetError, match=r"dimensions differ between splits .*: 8, .*"
                     r": 9\): write all splits with the same backbone"):
    le.check_same_dimension(splits)


# --- episodes ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
  return write_class_folders(str(tmp_path_factory.mktemp("images")), classes=(7, 5, 5),
                             images_per_class=9, size=12)


def coded_embeddings(root, out, split="train"):
  """A file of the image split's classes and images, in the reader's order; the row of
  (class c, image i) is (split, c, i, 1, ...), as the image's pixel (0, 0) codes it."""
  index = readers.load_split(root, split, image_size=(12, 12))
  s = readers.SPLITS.index(split)
  rows, classes, images = [], [], []
  for c, name in enumerate(index.class_names):
    for i, _ in enumerate(index[name]):
      rows.append([s, c, i, 1.0, 0.0])
      classes.append(name)
      images.append(f"{i:04d}.png")
  path = le.embedding_path(out, "fake", "center", split)
  le.write_embedding_split(path, np.asarray(rows), classes, images)
  return index, le.load_embedding_split(out, "fake", "center", split)


def test_episodes_are_those_of_the_image_pipeline(image_root, tmp_path):
  index, split = coded_embeddings(image_root, tmp_path)
  images = episodic.ImageEpisodeSampler(index, 3, 2, 4)
  embedded = episodic.EmbeddingEpisodeSampler(split, 3, 2, 4)
  image_eps = episodic.split_arrays(episodic.episode_dataset(
      images, 11, num_episodes=10, batch_size=4, drop_remainder=False))
  vector_eps = episodic.split_arrays(episodic.episode_dataset(
      embedded, 11, num_episodes=10, batch_size=4, drop_remainder=False))
  for field in ("support", "query"):
    codes = decode_codes(getattr(image_eps, f"{field}_x"))
    vectors = getattr(vector_eps, f"{field}_x")
    np.testing.assert_array_equal(codes, vectors[..., :3].astype(int))
    np.testing.assert_array_equal(getattr(image_eps, f"{field}_y"),
                                  getattr(vector_eps, f"{field}_y"))
  for e in range(20):
    np.testing.assert_array_equal(images.choose(5, e)[0], embedded.choose(5, e)[0])


def test_episode_layout_determinism_and_normalisation(image_root, tmp_path):
  _, split = coded_embeddings(image_root, tmp_path)
  sampler = episodic.EmbeddingEpisodeSampler(split, 3, 2, 4)
  normalize = lambda x: tf.numpy_function(episodic.l2_normalize, [x], tf.float32)

  def stream(seed, preprocess=normalize, **kwargs):
    return episodic.split_arrays(episodic.episode_dataset(
        sampler, seed, num_episodes=6, batch_size=3, preprocess=preprocess, **kwargs))

  a, b, other = stream(0), stream(0), stream(1)
  assert a.support_x.shape == (6, 6, 5) and a.query_x.shape == (6, 12, 5)
  assert a.support_x.dtype == np.float32 and a.support_y.dtype == np.int32
  for field in a:
    assert field is not None
  np.testing.assert_array_equal(a.query_x, b.query_x)
  assert not np.array_equal(a.query_x, other.query_x)
  np.testing.assert_allclose(np.linalg.norm(a.query_x, axis=-1), 1.0, rtol=1e-6)
  raw = stream(0, preprocess=None)
  np.testing.assert_allclose(a.query_x, episodic.l2_normalize(raw.query_x))
  for t in range(6):
    np.testing.assert_array_equal(a.support_y[t], np.repeat(np.arange(3), 2))
    np.testing.assert_array_equal(a.query_y[t], np.repeat(np.arange(3), 4))
    classes = raw.support_x[t, :, 1].reshape(3, 2)  # One class per label, disjoint sets.
    assert (classes == classes[:, :1]).all() and len(set(classes[:, 0])) == 3
    support_ids = set(map(tuple, raw.support_x[t, :, 1:3]))
    assert not support_ids & set(map(tuple, raw.query_x[t, :, 1:3]))
  shard = episodic.split_arrays(episodic.episode_dataset(
      sampler, 0, episodes=tf.data.Dataset.range(4, 6), batch_size=2, preprocess=normalize))
  np.testing.assert_array_equal(shard.query_x, a.query_x[4:6])


def test_episode_sizes_are_checked(image_root, tmp_path):
  _, split = coded_embeddings(image_root, tmp_path)
  with pytest.raises(readers.DatasetError, match=r"has 7 classes, fewer than the 8 ways"):
    episodic.EmbeddingEpisodeSampler(split, 8, 1, 1)
  with pytest.raises(readers.DatasetError, match=r"Class 'n00000000' of .*train_embeddings.pkl "
                     r"has 9 embeddings \(and 6 other classes\), fewer than the 10 needed"):
    episodic.EmbeddingEpisodeSampler(split, 3, 5, 5)
  with pytest.raises(ValueError, match="num_shots must be >= 1"):
    episodic.EmbeddingEpisodeSampler(split, 3, 0, 5)
