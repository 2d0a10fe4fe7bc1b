"""Labelling one's own images with an exported few-shot image classifier.

The support set is a folder of class folders: the class names are the folder names, sorted,
labelled 0..N-1 in that order, each folder holding exactly the K images of the N-way K-shot
export. The queries are image files, or folders whose image files (any format Pillow opens,
by extension) are all taken, sorted. Every image is decoded, converted (RGB or grayscale) and
resized with the dataset readers' `load_image`, as in training. ``LoadedLearner.classify`` and
``python -m l2f_tf.predict`` both call :func:`classify`, so they run the same checks and raise
the same one-line ValueErrors naming the fix.
"""

import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from l2f_tf.data.readers import common
from l2f_tf.export.policy import LoadedPolicy

PathLike = Union[str, os.PathLike]
TRANSDUCTIVE_NOTE = (
    "this SavedModel uses transductive batch norm, so each prediction depends on which queries "
    "are predicted together (here all of them, in one call, as in its evaluation); train with "
    "--gin_bindings=\"BatchNorm.mode = 'support'\" for predictions that depend on each image "
    "alone.")


def _readable_extensions() -> Tuple[str, ...]:
  """The file extensions of the formats Pillow decodes: not those it only writes (PDF), nor
  its stubs, which need a handler of one's own (HDF5, GRIB, WMF, ...)."""
  Image.init()
  decodes = lambda opener: not (isinstance(opener, type) and
                                issubclass(opener, ImageFile.StubImageFile))
  return tuple(sorted(extension for extension, name in Image.registered_extensions().items()
                      if name in Image.OPEN and decodes(Image.OPEN[name][0])))


EXTENSIONS = _readable_extensions()


def image_files(folder: str) -> List[str]:
  """The image files directly in ``folder``, sorted; hidden files (e.g. the ``._`` copies
  macOS writes on other disks) left out."""
  return [path for path in common.list_images(folder, EXTENSIONS)
          if not os.path.basename(path).startswith(".")]


def _count(number: int, noun: str = "image") -> str:
  return f"{number} {noun}{'' if number == 1 else 's'}"


def _exported_for(num_classes: int, num_shots: int) -> str:
  return f"this SavedModel was exported for {num_classes}-way {num_shots}-shot classification"


def image_task(loaded) -> Tuple[int, int, Tuple[int, int], int]:
  """(N, K, (height, width), channels) of the N-way K-shot image classifier ``loaded``;
  ValueError naming what to use instead for a meta-RL policy, a regression model or a
  classifier of vectors."""
  about = f" It was exported for: {loaded.description}." if loaded.description else ""
  if isinstance(loaded, LoadedPolicy):
    raise ValueError(f"{loaded.path} is a meta-RL policy, not a classifier: labelling images "
                     "needs the SavedModel of a few-shot image classification run; load a "
                     "policy with l2f_tf.export.load (act, adapt_and_act).")
  if not loaded.num_classes:
    raise ValueError(f"{loaded.path} is a regression model (num_classes 0), not a classifier: "
                     "labelling images needs the SavedModel of a few-shot image classification "
                     "run; predict with l2f_tf.export.load(path).predict(support_x, support_y, "
                     f"query_x).{about}")
  fn = loaded._module.signatures["adapt_and_predict"]  # pylint: disable=protected-access
  shape = fn.structured_input_signature[1]["support_x"].shape.as_list()
  if len(shape) != 4 or shape[-1] not in (1, 3):
    raise ValueError(f"{loaded.path} classifies inputs of shape {shape[1:]}, not images of "
                     "[height, width, 1 or 3]: labelling images needs the SavedModel of a "
                     "few-shot image classification run; predict with "
                     f"l2f_tf.export.load(path).predict(support_x, support_y, query_x).{about}")
  return loaded.num_classes, shape[0] // loaded.num_classes, (shape[1], shape[2]), shape[3]


def query_paths(queries: Union[PathLike, Sequence[PathLike]]) -> List[str]:
  """The image files of ``queries`` (a path or a list of them: image files, or folders whose
  image files are all taken, sorted), in order; ValueError for a path that does not exist or a
  folder without images."""
  queries = [queries] if isinstance(queries, (str, os.PathLike)) else list(queries)
  if not queries:
    raise ValueError("No query given: pass image files or folders of images to label.")
  paths = []
  for query in map(os.fspath, queries):
    if not os.path.exists(query):
      raise ValueError(f"The query {query} does not exist: pass an image file or a folder of "
                       "images.")
    if not os.path.isdir(query):
      paths.append(query)
      continue
    found = image_files(query)
    if not found:
      raise ValueError(f"The query folder {query} holds no image files (files named *.png, "
                       "*.jpg, ... directly in it; subfolders are not searched): pass a folder "
                       "of images, or the image files themselves.")
    paths += found
  return paths


def class_names(support_dir: PathLike, num_classes: int, num_shots: int) -> List[str]:
  """The sorted class folders of ``support_dir`` (hidden ones left out); ValueError unless it
  is a folder of exactly ``num_classes`` of them."""
  support_dir = os.fspath(support_dir)
  layout = (f"{num_classes} class folders, each named after its class and holding "
            f"{_count(num_shots)}")
  task = _exported_for(num_classes, num_shots)
  if not os.path.isdir(support_dir):
    why = "is not a folder" if os.path.exists(support_dir) else "does not exist"
    raise ValueError(f"The support folder {support_dir} {why}: pass a folder of {layout} "
                     f"({task}).")
  names = sorted(entry.name for entry in os.scandir(support_dir)
                 if entry.is_dir() and not entry.name.startswith("."))
  if not names:
    loose = " (it holds images directly: move them into class folders)" if image_files(
        support_dir) else ""
    raise ValueError(f"The support folder {support_dir} has no class folders{loose}: it needs "
                     f"{layout} ({task}).")
  if len(names) != num_classes:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise ValueError(f"The support folder {support_dir} has {_count(len(names), 'class folder')} "
                     f"({shown}), but {task}: give it exactly {layout}.")
  return names


def read_images(paths: Sequence[str], size: Tuple[int, int], channels: int) -> np.ndarray:
  """[len(paths), height, width, channels] float32 pixel values in [0, 255], each image read as
  in training (`load_image`); ValueError naming an image that cannot be read."""
  images = []
  for path in paths:
    try:
      images.append(common.load_image(path, size, channels))
    except common.ImageDecodeError as error:
      # (The readers' words for an unknown format name the dataset formats, JPEG and PNG.)
      problem = ("Pillow does not recognise it as an image"
                 if isinstance(error.__cause__, UnidentifiedImageError) else error.problem)
      raise ValueError(f"Cannot read the image {path}: {problem}; replace it with an image "
                       "Pillow opens (PNG, JPEG, ...).") from None
  return np.stack(images).astype(np.float32)


def read_support(support_dir: PathLike, num_classes: int, num_shots: int,
                 size: Tuple[int, int], channels: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
  """(support_x [N*K, height, width, channels] float32, support_y [N*K] int32, the class
  names) of the class folders of ``support_dir`` (:func:`class_names`), class by class;
  ValueError for a class folder without exactly K images, before any image is decoded."""
  names = class_names(support_dir, num_classes, num_shots)
  folders = [os.path.join(os.fspath(support_dir), name) for name in names]
  files = [image_files(folder) for folder in folders]
  for folder, found in zip(folders, files):
    if len(found) != num_shots:
      change = "add" if len(found) < num_shots else "remove"
      raise ValueError(f"The class folder {folder} has {_count(len(found))}, but {num_shots} "
                       f"{'is' if num_shots == 1 else 'are'} needed: "
                       f"{_exported_for(num_classes, num_shots)}, so each class folder holds "
                       f"exactly {_count(num_shots)} ({change} {abs(len(found) - num_shots)}).")
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), num_shots)
  return read_images([path for found in files for path in found], size, channels), labels, names


def depends_on_other_queries(loaded) -> bool:
  """Whether a query's prediction depends on the other queries of the call (transductive batch
  norm): then :func:`classify` predicts all queries in one call."""
  return "transductive" in loaded.batch_norm


def classify(loaded, support_dir: PathLike, queries: Union[PathLike, Sequence[PathLike]],
             batch_size: int = 100) -> List[Dict]:
  """[{"path", "class", "probability"}] for each image of ``queries`` (:func:`query_paths`):
  the class (a folder name of ``support_dir``) that ``loaded`` (an N-way K-shot image
  classifier) predicts after adapting to the support set of ``support_dir``, and its softmax
  probability. Queries go in calls of ``batch_size``; under transductive batch norm all go in
  one call (the evaluated setting; see :data:`TRANSDUCTIVE_NOTE`). ValueError (one line, naming
  the fix) for anything wrong: the export, the folders, an image."""
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
      batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
  num_classes, num_shots, size, channels = image_task(loaded)
  paths = query_paths(queries)
  support_x, support_y, names = read_support(support_dir, num_classes, num_shots, size,
                                             channels)
  chunk = len(paths) if depends_on_other_queries(loaded) else int(batch_size)
  predictions = []
  for start in range(0, len(paths), chunk):
    batch = paths[start:start + chunk]
    logits = loaded.predict(support_x, support_y, read_images(batch, size, channels))
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    for path, row in zip(batch, probabilities):
      best = int(np.argmax(row))
      predictions.append({"path": path, "class": names[best], "probability": float(row[best])})
  return predictions
