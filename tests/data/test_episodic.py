"""The episodic pipeline: episode invariants, determinism, laziness and bad data."""

import os

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data import arrays, episodic, readers, sinusoid_tasks
from tests.data.test_arrays import points
from tests.fake_images import decode_codes, write_class_folders

N, K, Q = 3, 2, 3


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
  return write_class_folders(str(tmp_path_factory.mktemp("mini")), classes=(6, 5, 5),
                             images_per_class=8, size=16)


def sampler(root, split="train", n=N, k=K, q=Q):
  index = readers.load_split(root, split, image_size=(16, 16))
  return episodic.ImageEpisodeSampler(index, n, k, q)


def episodes(root, seed=0, start=0, num=6, batch=2, **kwargs):
  dataset = episodic.episode_dataset(sampler(root), seed, start=start, num_episodes=num,
                                     batch_size=batch, **kwargs)
  return episodic.split_arrays(dataset)


def test_episode_invariants(dataset_root):
  ep = episodes(dataset_root, num=8)
  assert ep.support_x.shape == (8, N * K, 16, 16, 3) and ep.query_x.shape == (8, N * Q, 16, 16, 3)
  for t in range(8):
    support, query = decode_codes(ep.support_x[t]), decode_codes(ep.query_x[t])
    assert set(support[:, 0]) == {0}  # train split only
    np.testing.assert_array_equal(ep.support_y[t], np.repeat(np.arange(N), K))
    np.testing.assert_array_equal(ep.query_y[t], np.repeat(np.arange(N), Q))
    # Each label is one class, the same in support and query; N distinct classes.
    label_class = {}
    for codes, labels in ((support, ep.support_y[t]), (query, ep.query_y[t])):
      for (_, c, _), y in zip(codes, labels):
        assert label_class.setdefault(int(y), c) == c
    assert len(set(label_class.values())) == N
    # No image is both in the support and the query set (or twice in either).
    images = [tuple(code) for code in np.concatenate([support, query])]
    assert len(images) == len(set(images)) == N * (K + Q)


def test_same_seed_same_episodes_and_label_order_is_shuffled(dataset_root):
  a, b = episodes(dataset_root, seed=3), episodes(dataset_root, seed=3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  c = episodes(dataset_root, seed=4)
  assert not np.array_equal(a.support_x, c.support_x)
  # The class that gets label 0 changes from episode to episode (labels are shuffled).
  first_class = [decode_codes(a.support_x[t])[0, 1] for t in range(6)]
  assert len(set(first_class)) > 1


def test_resuming_at_an_episode_gives_the_rest_of_the_stream(dataset_root):
  whole = episodes(dataset_root, num=6)
  rest = episodes(dataset_root, start=2, num=4)
  np.testing.assert_array_equal(whole.query_x[2:], rest.query_x)


def test_normalisation():
  pixels = np.full((1, 2, 2, 3), 255, np.uint8)
  unit = episodic.normalize_images(pixels, "unit").numpy()
  np.testing.assert_allclose(unit, 1.0)
  imagenet = episodic.normalize_images(pixels, "imagenet").numpy()[0, 0, 0]
  expected = (1 - np.array(episodic.IMAGENET_MEAN)) / np.array(episodic.IMAGENET_STD)
  np.testing.assert_allclose(imagenet, expected, rtol=1e-6)
  with pytest.raises(ValueError, match="normalization"):
    episodic.normalize_images(pixels, "zscore")


def test_images_are_read_lazily(dataset_root, monkeypatch):
  calls = []
  original = episodic.load_image
  monkeypatch.setattr(episodic, "load_image", lambda *a: calls.append(a) or original(*a))
  s = sampler(dataset_root)
  assert not calls  # indexing the split decodes nothing
  s.load(seed=0, episode=0)
  assert len(calls) == N * (K + Q)


def test_an_unreadable_image_is_skipped_with_a_warning_and_replaced(tmp_path, caplog):
  root = write_class_folders(str(tmp_path), classes=(3, 3, 3), images_per_class=6, size=16)
  bad = os.path.join(root, "train", "n00000000", "n00000000_0000.png")
  with open(bad, "r+b") as f:
    f.truncate(40)  # a truncated PNG
  s = sampler(root, n=3, k=2, q=3)
  for e in range(4):  # every class appears in every 3-way episode
    support_x, _, query_x, _ = s.load(0, e)
    codes = decode_codes(np.concatenate([support_x, query_x]))
    assert (0, 0, 0) not in {tuple(c) for c in codes}
    assert len(codes) == 15
  assert sum("n00000000_0000.png" in r.getMessage() for r in caplog.records) == 1


def test_a_class_with_too_few_readable_images_names_the_class(tmp_path):
  root = write_class_folders(str(tmp_path), classes=(3, 3, 3), images_per_class=5, size=16)
  with open(os.path.join(root, "train", "n00000001", "n00000001_0003.png"), "wb") as f:
    f.write(b"not a png")
  s = sampler(root, n=3, k=2, q=3)
  with pytest.raises(readers.DatasetError, match=r"'n00000001'.* 4 readable images, fewer "
                     r"than the 5 needed .*n00000001_0003.png: it is not a JPEG or PNG image"):
    s.load(0, 0)


def test_too_few_classes_or_images_are_clear_errors(dataset_root):
  with pytest.raises(readers.DatasetError, match="fewer than the 7 ways"):
    sampler(dataset_root, n=7)
  with pytest.raises(readers.DatasetError, match="fewer than the 9 needed"):
    sampler(dataset_root, k=4, q=5)
  with pytest.raises(ValueError, match="num_shots must be >= 1"):
    sampler(dataset_root, k=0)


def test_every_episode_pipeline_runs_without_tf_data_autotuning(dataset_root):
  """Deleting an iterator waits for its pipeline's autotuning thread, which pauses up to a
  minute between optimisations: dropping a long-lived iterator stalled the caller (seconds to
  tens of seconds, docs/testing.md). Every episode stream of the library turns it off."""
  x, y = points()
  pipelines = {
      "images": episodic.episode_dataset(sampler(dataset_root), 0, num_episodes=2),
      "images, no prefetch": episodic.episode_dataset(sampler(dataset_root), 0, prefetch=False),
      "arrays": arrays.TaskPointSampler(x, y, "a", 2, 2).dataset(
          0, tf.data.Dataset.range(4), batch_size=2),
      "sinusoid": sinusoid_tasks.episode_dataset(sinusoid_tasks.SinusoidTasks(), 2, 3, 3, 0)}
  for name, dataset in pipelines.items():
    assert dataset.options().autotune.enabled is False, name
  assert tf.data.Dataset.range(3).options().autotune.enabled is not False  # the default differs
