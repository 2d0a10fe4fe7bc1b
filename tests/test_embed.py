"""l2f_tf.embed on a tiny glyphs set (30 classes x 6 images of 16 x 16, conv4 with 8 filters,
1 epoch): readable files in LEO's format, identical bytes for the same seed, embeddings that do
not depend on the batch, the image pipeline's episodes, and the cache."""

import functools
import json
import os

import numpy as np
import pytest

from l2f_tf.train import pretrain
from l2f_tf.data import episodic, glyphs, readers
from l2f_tf.data.readers import leo_embeddings as le
from l2f_tf.domains.embeddings import FewShotEmbeddings
from l2f_tf.models.conv4 import conv4

GLYPHS = dict(num_classes=30, instances_per_class=6, image_size=16)
TRAINING = dict(epochs=1, batch_size=16, lr=2e-3)
SEED = 0


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def glyph_root(cache):
  return glyphs.ensure_glyphs(cache, seed=SEED, **GLYPHS)


@pytest.fixture(scope="module")
def made(glyph_root, tmp_path_factory):
  """(backbone, out root) of make_embeddings with ensure_glyph_embeddings' settings."""
  out = str(tmp_path_factory.mktemp("out"))
  backbone = pretrain.make_embeddings(glyph_root, out, "glyphs", image_size=16, channels=1,
                                   normalization="unit",
                                   backbone_fn=functools.partial(conv4, filters=8), seed=SEED,
                                   **TRAINING)
  return backbone, out


def read_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def test_files_are_readable_in_the_readers_order(glyph_root, made):
  backbone, out = made
  assert backbone.steps == 7 and 0 <= backbone.train_accuracy <= 1  # 102 images / 16.
  with open(os.path.join(out, "glyphs", pretrain.CLASSES_FILE)) as f:
    classes = json.load(f)["classes"]
  offset = 0
  for split in readers.SPLITS:
    data = le.load_embedding_split(out, "glyphs", "center", split)
    index = readers.load_split(glyph_root, split, channels=1)
    assert data.embedding_dim == 8 and data.class_sizes == [6] * len(index)
    ids = [pretrain.class_id(offset + c) for c in range(len(index))]
    assert data.class_names == ids and list(classes[split]) == ids
    assert list(classes[split].values()) == index.class_names
    offset += len(index)


def test_embeddings_do_not_depend_on_the_batch(glyph_root, made):
  backbone, out = made
  images = pretrain.read_split_images(glyph_root, "test", 16, 1).images
  stored = le.load_embedding_split(out, "glyphs", "center", "test").embeddings
  alone = np.concatenate([pretrain.embed_images(backbone, images[i:i + 1])
                          for i in range(0, len(images), 7)])
  order = np.random.default_rng(0).permutation(len(images))
  shuffled = pretrain.embed_images(backbone, images[order], batch_size=13)
  np.testing.assert_allclose(alone, stored[::7], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(shuffled, stored[order], rtol=1e-5, atol=1e-5)


def test_episodes_hold_the_image_pipelines_images(glyph_root, made):
  backbone, out = made
  index = readers.load_split(glyph_root, "test", image_size=(16, 16), channels=1)
  images = episodic.ImageEpisodeSampler(index, 3, 2, 3)
  vectors = episodic.EmbeddingEpisodeSampler(
      le.load_embedding_split(out, "glyphs", "center", "test"), 3, 2, 3)
  for episode in range(4):
    support, support_y, query, _ = images.load(20202614, episode)
    support_x, vector_y, query_x, _ = vectors.load(20202614, episode)
    features = pretrain.embed_images(backbone, np.concatenate([support, query]))
    np.testing.assert_allclose(np.concatenate([support_x, query_x]), features, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(support_y, vector_y)


def test_glyph_embeddings_are_cached_and_reproducible(cache, made):
  _, out = made
  root = pretrain.ensure_glyph_embeddings(cache, filters=8, seed=SEED, **GLYPHS, **TRAINING)
  assert os.path.basename(root).startswith("glyph_embeddings_v1_30c_6i_16px_conv4x8_1ep_seed0_")
  paths = [le.embedding_path(root, "glyphs", "center", split) for split in readers.SPLITS]
  for path, split in zip(paths, readers.SPLITS):  # The same seed: the same bytes.
    assert read_bytes(path) == read_bytes(le.embedding_path(out, "glyphs", "center", split))
  written = os.path.getmtime(paths[0])
  assert pretrain.ensure_glyph_embeddings(cache, filters=8, seed=SEED, **GLYPHS, **TRAINING) == root
  assert os.path.getmtime(paths[0]) == written  # Reused, not made again.
  original = read_bytes(paths[2])
  with open(paths[2], "wb") as f:  # Damaged: made again, identically.
    f.write(original[:100])
  assert pretrain.ensure_glyph_embeddings(cache, filters=8, seed=SEED, **GLYPHS, **TRAINING) == root
  assert read_bytes(paths[2]) == original
  assert not [name for name in os.listdir(cache) if name.startswith(".")]
  domain = FewShotEmbeddings(root=root, dataset="glyphs", num_ways=3, num_shots=1,
                             num_queries=5, meta_batch_size=2)
  domain.check_data()
  assert domain.build_model().input_shape == (None, 8)


def test_bad_settings_name_the_fix(glyph_root, tmp_path):
  with pytest.raises(ValueError, match="pretrain_backbone: normalization must be one of"):
    pretrain.pretrain_backbone(glyph_root, 16, 1, "zscore")
  with pytest.raises(ValueError, match="pretrain_backbone: epochs must be >= 1"):
    pretrain.pretrain_backbone(glyph_root, 16, 1, "unit", epochs=0)
  with pytest.raises(readers.DatasetError, match="does not exist"):
    pretrain.pretrain_backbone(str(tmp_path / "nowhere"), 16, 1, "unit")
