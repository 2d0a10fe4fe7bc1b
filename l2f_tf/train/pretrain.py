"""Image embeddings in LEO's format (`l2f_tf.data.readers.leo_embeddings`) from any image
dataset the library reads, so `FewShotEmbeddings` (and LEO) run on glyphs, Omniglot or one's
own features as on LEO's files (the library behind ``python -m l2f_tf.embed``):

1. `pretrain_backbone`: a conv4 or resnet12 backbone with a head over all train classes learns
   softmax cross-entropy on the train split (Adam; every random draw comes from ``seed``).
2. Fixed statistics: `BatchNorm` normalises with the statistics of its batch (MAML's
   convention), so features would depend on which images share a batch. One seeded pass over
   the train split in training batches records each layer's batch mean and variance, and the
   embedding network replaces every `BatchNorm` by a `FixedBatchNorm` with their averages: an
   image's embedding depends on that image alone.
3. `embed_splits`: the head's input features of every image of each split, in the reader's
   order (episode ``e`` of embeddings holds the images of the image pipeline's episode ``e``),
   go to ``<out>/<dataset_name>/center/{train,val,test}_embeddings.pkl``, classes with
   key-safe ids ("c0000", ... over the splits) named in ``<out>/<dataset_name>/classes.json``.

`ensure_glyph_embeddings` (gin: ``FewShotEmbeddings.root = @ensure_glyph_embeddings()``) does
it all once for the glyphs dataset, in a cached folder. A split's decoded images are held in
memory (docs/leo_data.md gives the sizes).
"""

import dataclasses
import functools
import os
import re
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf import atomic
from l2f_tf.data import episodic, glyphs, readers
from l2f_tf.data.readers import leo_embeddings
from l2f_tf.models.batch_norm import BatchNorm
from l2f_tf.models.conv4 import conv4
from l2f_tf.models.resnet12 import resnet12
from l2f_tf.progress import Progress

# Bump when pretraining, the statistics or the files change: old glyph caches are then unused.
VERSION = 1
CROP = "center"
CLASSES_FILE = "classes.json"
METADATA_FILE = "embeddings.json"
BACKBONES = {"conv4": conv4, "resnet12": resnet12}


@dataclasses.dataclass
class SplitImages:
  """One split's decoded images, in the reader's class order and image order."""

  images: np.ndarray  # uint8 [M, H, W, C]
  labels: np.ndarray  # int32 [M], the class index of each image
  class_names: List[str]  # the reader's, in index order
  image_names: List[str]  # per image, a name for its key (its file's name, or its position)


@dataclasses.dataclass
class PretrainedBackbone:
  """A backbone trained on the train classes, and how its images are read (as trained)."""

  model: keras.Model  # with its head over all train classes
  features: keras.Model  # up to the head's input, with `FixedBatchNorm`s
  image_size: int
  channels: Optional[int]
  normalization: str
  reader_options: Dict
  train_accuracy: float  # on the train split, with the fixed statistics
  last_epoch_accuracy: float  # of the last epoch's batches (batch statistics)
  seconds: float  # training and the statistics pass
  steps: int  # optimiser steps


class FixedBatchNorm(keras.layers.Layer):
  """``(x - mean) / sqrt(var + epsilon) * gamma + beta`` with fixed per-channel statistics: the
  inference form of a trained `BatchNorm` (``mean`` and ``var`` are population statistics)."""

  def __init__(self, mean, variance, gamma, beta, epsilon: float, **kwargs):
    super().__init__(**kwargs)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    self._scale = tf.constant(scale, tf.float32)
    self._shift = tf.constant(np.asarray(beta, np.float64) - np.asarray(mean) * scale,
                              tf.float32)

  def call(self, inputs):
    return tf.cast(inputs, tf.float32) * self._scale + self._shift


def _image_name(source, position: int) -> str:
  """A key-safe name of an image: its file name without "-", or its position in its class."""
  if isinstance(source, (str, os.PathLike)):
    name = re.sub(r"[^A-Za-z0-9._]", "_", os.path.basename(os.fspath(source)))
    if name:
      return name
  return f"{position:06d}"


def read_split_images(root: str, split: str, image_size: int, channels: Optional[int] = None,
                      reader_options: Optional[Dict] = None) -> SplitImages:
  """Decodes every image of a split (`readers.load_split`) in the reader's order; raises
  DatasetError for an image that cannot be decoded (embeddings cover every image)."""
  index = readers.load_split(root, split, image_size=(image_size, image_size),
                             channels=channels, **dict(reader_options or {}))
  images, labels, names = [], [], []
  for label, class_name in enumerate(index.class_names):
    for position, source in enumerate(index[class_name]):
      images.append(index.load_image(source))
      labels.append(label)
      names.append(_image_name(source, position))
  if not images:
    raise readers.DatasetError(f"Split {split!r} of {root} holds no images: check the root.")
  return SplitImages(np.stack(images), np.asarray(labels, np.int32), index.class_names, names)


def _batches(count: int, batch_size: int, order: Optional[np.ndarray] = None):
  order = np.arange(count) if order is None else order
  for start in range(0, count, batch_size):
    yield order[start:start + batch_size]


def _image_spec(images: np.ndarray) -> tf.TensorSpec:
  """A batch of any size of these images (one trace for every batch, the last one too)."""
  return tf.TensorSpec([None, *images.shape[1:]], tf.as_dtype(images.dtype))


def _population_statistics(model: keras.Model, images: np.ndarray, normalization: str,
                           batch_size: int, seed: int) -> Dict[str, tuple]:
  """Per `BatchNorm` layer: (mean, variance) averaged over the batches of one pass over
  `images` in the training batch size (the statistics the layer normalised with)."""
  layers = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
  if not layers:
    return {}
  probe = keras.Model(model.inputs, [layer.input for layer in layers])

  @tf.function(input_signature=[_image_spec(images)])
  def moments(x):
    outputs = probe(episodic.normalize_images(x, normalization), training=True)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    result = []
    for y in outputs:
      y = tf.cast(y, tf.float32)
      axes = list(range(len(y.shape) - 1))
      mean = tf.reduce_mean(y, axis=axes)
      result.append((mean, tf.reduce_mean(tf.square(y - mean), axis=axes)))
    return result

  sums = [[0.0, 0.0] for _ in layers]
  order = np.random.default_rng([seed, 2]).permutation(len(images))
  total = 0
  for rows in _batches(len(images), batch_size, order):
    for acc, (mean, var) in zip(sums, moments(images[rows])):
      acc[0] = acc[0] + len(rows) * mean.numpy().astype(np.float64)
      acc[1] = acc[1] + len(rows) * var.numpy().astype(np.float64)
    total += len(rows)
  return {layer.name: (acc[0] / total, acc[1] / total) for layer, acc in zip(layers, sums)}


def _fixed_features(model: keras.Model, statistics: Dict[str, tuple]) -> keras.Model:
  """The model up to its head's input (sharing its weights) with fixed batch-norm statistics."""
  head = model.layers[-1]
  if not isinstance(head, keras.layers.Dense):
    raise ValueError(f"The backbone {model.name!r} must end with its Dense head (the features "
                     f"are its input), but ends with {type(head).__name__}.")

  def replace(layer):
    if isinstance(layer, BatchNorm) and layer.mode == "task_norm_i":
      raise ValueError(f"{layer.name}: the pretrained embedding fixes each batch norm's "
                       "population statistics, which TaskNorm-I has not: drop the binding "
                       "BatchNorm.mode = 'task_norm_i' from this LEO run.")
    if isinstance(layer, BatchNorm):
      mean, variance = statistics[layer.name]
      return FixedBatchNorm(mean, variance, layer.gamma.numpy(), layer.beta.numpy(),
                            layer.epsilon, name=layer.name)
    return layer

  return keras.models.clone_model(
      keras.Model(model.inputs, head.input, name=f"{model.name}_features"),
      clone_function=replace)


def _features(network: keras.Model, images: np.ndarray, normalization: str,
              batch_size: int) -> np.ndarray:
  """float32 [M, D] features of `images`, batch by batch in order."""
  call = tf.function(lambda x: network(episodic.normalize_images(x, normalization)),
                     input_signature=[_image_spec(images)])
  return np.concatenate([call(images[rows]).numpy() for rows in
                         _batches(len(images), batch_size)]).astype(np.float32)


def embed_images(backbone: "PretrainedBackbone", images: np.ndarray,
                 batch_size: int = 256) -> np.ndarray:
  """float32 [M, D] embeddings of uint8 images [M, H, W, C] (as `read_split_images` or the
  episode sampler gives them): the backbone's features with fixed statistics, so an image's
  embedding does not depend on the batch it is in."""
  return _features(backbone.features, np.asarray(images), backbone.normalization, batch_size)


def pretrain_backbone(root: str, image_size: int = 84, channels: Optional[int] = None,
                      normalization: str = "imagenet",
                      backbone_fn: Callable[..., keras.Model] = conv4, epochs: int = 10,
                      batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                      reader_options: Optional[Dict] = None,
                      log_every_seconds: float = 10.0,
                      train_images: Optional[SplitImages] = None) -> PretrainedBackbone:
  """Trains ``backbone_fn(num_classes=<train classes>, image_shape=...)`` (ending with its
  Dense head) with softmax cross-entropy on the train split of `root` (Adam, `lr`), `epochs`
  passes of `batch_size` images, then fixes its batch-norm statistics (module docstring).
  Images come from `train_images` or `readers.load_split`, normalised by
  `episodic.normalize_images`; `seed` seeds the initial weights and the batch order.
  ValueError for a bad setting or an unreadable dataset (DatasetError)."""
  if normalization not in episodic.NORMALIZATIONS:
    raise ValueError(f"pretrain_backbone: normalization must be one of "
                     f"{episodic.NORMALIZATIONS}, got {normalization!r}.")
  for setting, value in (("epochs", epochs), ("batch_size", batch_size)):
    if value < 1:
      raise ValueError(f"pretrain_backbone: {setting} must be >= 1, got {value}.")
  start = time.time()
  data = train_images or read_split_images(root, "train", image_size, channels, reader_options)
  num_classes = len(data.class_names)
  keras.utils.set_random_seed(seed)
  model = backbone_fn(num_classes=num_classes, image_shape=data.images.shape[1:])
  optimizer = keras.optimizers.Adam(lr)
  optimizer.build(model.trainable_variables)  # Its slots now, not in train_step's first trace.

  @tf.function(input_signature=[_image_spec(data.images), tf.TensorSpec([None], tf.int32)])
  def train_step(x, y):
    with tf.GradientTape() as tape:
      logits = model(episodic.normalize_images(x, normalization), training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                    tf.float32))
    return loss, correct

  steps_per_epoch = -(-len(data.images) // batch_size)
  logging.info("Pretraining %s on %d train images of %d classes (%dx%dx%d): %d epochs of %d "
               "steps.", model.name, len(data.images), num_classes, *data.images.shape[1:],
               epochs, steps_per_epoch)
  progress = Progress(epochs * steps_per_epoch, every_seconds=log_every_seconds,
                      label="pretraining step")
  step, epoch_accuracy = 0, 0.0
  for epoch in range(epochs):
    order = np.random.default_rng([seed, 1, epoch]).permutation(len(data.images))
    losses, correct = [], 0.0
    for rows in _batches(len(order), batch_size, order):
      loss, right = train_step(data.images[rows], data.labels[rows])
      losses.append(float(loss))
      correct += float(right)
      step += 1
      if step == 1:
        progress.restart(step)  # The first step traced the function.
      progress.update(step, f"epoch {epoch + 1}/{epochs}, loss {np.mean(losses):.3f}, "
                      f"accuracy {correct / (len(losses) * batch_size):.3f}")
    epoch_accuracy = correct / len(data.images)
    logging.info("Pretraining epoch %d/%d: loss %.4f, train accuracy %.4f.", epoch + 1,
                 epochs, float(np.mean(losses)), epoch_accuracy)
  features = _fixed_features(
      model, _population_statistics(model, data.images, normalization, batch_size, seed))
  logits = model.layers[-1](_features(features, data.images, normalization, 256)).numpy()
  accuracy = float(np.mean(np.argmax(logits, -1) == data.labels))
  seconds = time.time() - start
  logging.info("Pretrained %s in %.1f s: train accuracy %.4f with fixed batch-norm statistics "
               "(%.4f in the last epoch, batch statistics).", model.name, seconds, accuracy,
               epoch_accuracy)
  return PretrainedBackbone(model, features, image_size, channels, normalization,
                            dict(reader_options or {}), accuracy, epoch_accuracy, seconds, step)


def class_id(index: int) -> str:
  """The key-safe id of the class numbered `index` over all splits: "c0000", "c0001", ..."""
  return f"c{index:04d}"


def embed_splits(backbone: PretrainedBackbone, image_root: str, out: str, dataset_name: str,
                 splits: Sequence[str] = readers.SPLITS, batch_size: int = 256,
                 images: Optional[Dict[str, SplitImages]] = None,
                 metadata: Optional[Dict] = None) -> Dict[str, str]:
  """Writes ``<out>/<dataset_name>/center/<split>_embeddings.pkl`` of every split (`images`:
  splits already decoded) and ``classes.json`` (per split, class id -> the reader's class name,
  with `metadata`). Returns split -> path."""
  images = dict(images or {})
  folder = os.path.join(os.fspath(out), dataset_name)
  paths, classes, offset = {}, {}, 0
  for split in splits:
    data = images.get(split) or read_split_images(image_root, split, backbone.image_size,
                                                  backbone.channels, backbone.reader_options)
    embeddings = embed_images(backbone, data.images, batch_size)
    ids = [class_id(offset + label) for label in range(len(data.class_names))]
    offset += len(ids)
    path = leo_embeddings.embedding_path(out, dataset_name, CROP, split)
    leo_embeddings.write_embedding_split(path, embeddings, [ids[label] for label in data.labels],
                                         data.image_names)
    classes[split] = dict(zip(ids, data.class_names))
    paths[split] = path
    logging.info("Wrote %d embeddings of dimension %d (%d classes) to %s.", len(embeddings),
                 embeddings.shape[1], len(ids), path)
  atomic.write_json(os.path.join(folder, CLASSES_FILE),
                    {"classes": classes, "image_root": os.fspath(image_root),
                     **({"metadata": metadata} if metadata else {})})
  return paths


def make_embeddings(image_root: str, out: str, dataset_name: str, image_size: int = 84,
                    channels: Optional[int] = None, normalization: str = "imagenet",
                    backbone_fn: Callable[..., keras.Model] = conv4, epochs: int = 10,
                    batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                    reader_options: Optional[Dict] = None) -> PretrainedBackbone:
  """`pretrain_backbone` then `embed_splits` of every split; returns the backbone."""
  train = read_split_images(image_root, "train", image_size, channels, reader_options)
  backbone = pretrain_backbone(image_root, image_size, channels, normalization, backbone_fn,
                               epochs, batch_size, lr, seed, reader_options,
                               train_images=train)
  embed_splits(backbone, image_root, out, dataset_name, images={"train": train},
               metadata={"train_accuracy": backbone.train_accuracy,
                         "pretraining_seconds": backbone.seconds})
  return backbone


# --- the glyphs' embeddings, cached ----------------------------------------------------------
def ensure_glyph_embeddings(cache_dir: Optional[str] = None, num_classes: int = 600,
                            instances_per_class: int = 20, image_size: int = 28,
                            filters: int = 64, epochs: int = 6, batch_size: int = 64,
                            lr: float = 2e-3, seed: int = 0,
                            split_fractions: Sequence[float] = (0.6, 0.15, 0.25)) -> str:
  """The root of conv4 embeddings of the glyphs dataset (``FewShotEmbeddings.root``, with
  ``FewShotEmbeddings.dataset = "glyphs"``), made if needed: `glyphs.ensure_glyphs` with these
  arguments, conv4 with `filters` filters pretrained on its train split, the embeddings in
  ``<cache_dir>/<name>/glyphs/center/``, a cached folder named by a hash of every argument but
  `cache_dir`, `VERSION` and the glyphs dataset's name."""
  glyph_root = glyphs.ensure_glyphs(cache_dir, num_classes, instances_per_class, image_size,
                                    seed, split_fractions)
  params = {"glyphs": os.path.basename(glyph_root), "num_classes": num_classes,
            "instances_per_class": instances_per_class, "image_size": image_size,
            "filters": filters, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "seed": seed, "split_fractions": [float(f) for f in split_fractions],
            "version": VERSION, "backbone": "conv4"}

  def write(folder):
    make_embeddings(glyph_root, folder, "glyphs", image_size=image_size, channels=1,
                    normalization="unit", backbone_fn=functools.partial(conv4, filters=filters),
                    epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    atomic.write_metadata(folder, METADATA_FILE, params)

  name = atomic.keyed_name(f"glyph_embeddings_v{VERSION}_{num_classes}c_{instances_per_class}i_"
                           f"{image_size}px_conv4x{filters}_{epochs}ep_seed{seed}", params)
  return atomic.cached_folder(os.path.join(os.path.dirname(glyph_root), name), METADATA_FILE,
                              params, write, "glyph embeddings folder")


# --- command line ------------------------------------------------------------------------------
