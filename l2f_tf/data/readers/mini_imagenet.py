"""Readers for the three miniImageNet layouts (100 classes x 600 images, 64/16/20 split):

* ``mini_imagenet_csv`` (Ravi & Larochelle): ``images/<file>.jpg`` plus ``{train,val,test}.csv``
  with the header ``filename,label``;
* ``mini_imagenet_folders`` (MAML / MAML++): ``<root>/{train,val,test}/<wnid>/*.jpg``;
* ``mini_imagenet_pickle``: ``mini-imagenet-cache-{train,validation,test}.pkl``, dicts of
  ``image_data`` (uint8 N x 84 x 84 x 3, held in memory: a pickle cannot be memory-mapped)
  and ``class_dict`` ({wnid: [indices]}).

Classes are ordered by name, so label k means the same class whatever the layout.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from l2f_tf.data.readers import common

CSV_FORMAT = "mini_imagenet_csv"
FOLDERS_FORMAT = "mini_imagenet_folders"
PICKLE_FORMAT = "mini_imagenet_pickle"
DEFAULT_IMAGE_SIZE = (84, 84)

# The cache pickles spell the validation split out in full.
_PICKLE_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
# Folder layouts: MAML++ uses "val", a few converted copies use "validation".
_FOLDER_SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def csv_path(root: str, split: str) -> str:
  """Path of the Ravi-Larochelle CSV file of `split`."""
  return os.path.join(root, f"{common.normalize_split(split)}.csv")


def pickle_path(root: str, split: str) -> str:
  """Path of the cache pickle of `split` (the val split is named "validation")."""
  name = _PICKLE_SPLIT_NAMES[common.normalize_split(split)]
  return os.path.join(root, f"mini-imagenet-cache-{name}.pkl")


def is_csv_layout(root: str) -> bool:
  """True if `root` has ``images/`` and at least one split CSV file."""
  return os.path.isdir(os.path.join(root, "images")) and any(
      os.path.isfile(csv_path(root, split)) for split in common.SPLITS)


def is_folders_layout(root: str) -> bool:
  """True if `root` has at least one of the train/val/test class-folder directories."""
  return any(os.path.isdir(os.path.join(root, name))
             for names in _FOLDER_SPLIT_NAMES.values() for name in names)


def is_pickle_layout(root: str) -> bool:
  """True if `root` has at least one ``mini-imagenet-cache-*.pkl`` file."""
  return any(os.path.isfile(pickle_path(root, split)) for split in common.SPLITS)


def _make_index(classes: dict, root: str, split: str, format_name: str,
                image_size: Sequence[int] | None) -> common.ClassIndex:
  ordered = {name: classes[name] for name in sorted(classes)}
  return common.ClassIndex(ordered, root=root, split=split, format_name=format_name,
                           image_size=tuple(image_size or DEFAULT_IMAGE_SIZE), channels=3)


def read_csv_split(root: str, split: str,
                   image_size: Sequence[int] | None = None) -> common.ClassIndex:
  """One split of the Ravi-Larochelle layout (file paths in CSV row order, decoded to
  `image_size`, default 84 x 84); DatasetError for a missing or malformed CSV or image."""
  split = common.normalize_split(split)
  path = csv_path(root, split)
  images_dir = os.path.join(root, "images")
  if not os.path.isfile(path):
    raise common.DatasetError(f"{path} does not exist: the Ravi-Larochelle layout needs "
                              "train.csv, val.csv and test.csv next to images/.")
  if not os.path.isdir(images_dir):
    raise common.DatasetError(f"{images_dir} does not exist: extract the miniImageNet "
                              f"images there (the files named in {path}).")
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
    raise common.DatasetError(f"{path} must start with the header 'filename,label', found "
                              f"{','.join(rows[0]) if rows else 'an empty file'!r}.")
  available = set(os.listdir(images_dir))
  classes, missing = {}, []
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != 2:
      raise common.DatasetError(f"{path}, line {line}: expected 'filename,label', "
                                f"found {','.join(row)!r}.")
    filename, label = row[0].strip(), row[1].strip()
    if filename not in available:
      missing.append(filename)
    classes.setdefault(label, []).append(os.path.join(images_dir, filename))
  if missing:
    raise common.DatasetError(
        f"{path} lists {len(missing)} files that are not in {images_dir} (first: "
        f"{', '.join(missing[:3])}): extract all miniImageNet images into that folder.")
  return _make_index(classes, root, split, CSV_FORMAT, image_size)


def read_folders_split(root: str, split: str,
                       image_size: Sequence[int] | None = None) -> common.ClassIndex:
  """One split of ``<root>/<split>/<wnid>/*.jpg`` (``val/`` may be ``validation/``), paths
  sorted by name; DatasetError if the split folder is missing or holds no class images."""
  split = common.normalize_split(split)
  candidates = [os.path.join(root, name) for name in _FOLDER_SPLIT_NAMES[split]]
  split_dir = next((path for path in candidates if os.path.isdir(path)), None)
  if split_dir is None:
    raise common.DatasetError(f"{candidates[0]} does not exist: the class-folder layout "
                              "needs train/, val/ and test/ folders of <wnid>/ folders.")
  classes = {name: common.list_images(os.path.join(split_dir, name))
             for name in os.listdir(split_dir)
             if os.path.isdir(os.path.join(split_dir, name))}
  if not classes:
    raise common.DatasetError(f"{split_dir} contains no class folders: expected "
                              f"{split_dir}/<wnid>/<image>.jpg.")
  if not any(classes.values()):
    raise common.DatasetError(_no_images(split_dir, sorted(classes)[0]))
  return _make_index(classes, root, split, FOLDERS_FORMAT, image_size)


def _no_images(split_dir: str, first_class: str) -> str:
  """Why no class folder of `split_dir` holds an image, judged by its first one, and the fix."""
  with os.scandir(os.path.join(split_dir, first_class)) as scanned:
    entries = [e for e in scanned if not e.name.startswith(".")]
  if any(e.is_dir() for e in entries):
    return (f"The class folders of {split_dir} hold folders, not images: the dataset is one "
            f"level deeper; use root={split_dir}.")
  suffixes = sorted({os.path.splitext(e.name)[1].lower() or e.name for e in entries})
  if suffixes:
    return (f"The class folders of {split_dir} hold no .jpg, .jpeg or .png images (found "
            f"{', '.join(suffixes[:5])} files): convert the images to JPEG or PNG.")
  return (f"The class folders of {split_dir} are empty: extract the images into "
          f"{split_dir}/<wnid>/.")


def read_pickle_split(root: str, split: str,
                      image_size: Sequence[int] | None = None) -> common.ClassIndex:
  """One split of ``mini-imagenet-cache-<split>.pkl`` as `ArrayRef`s into its ``image_data``;
  DatasetError if the pickle is missing, unreadable or lacks the expected keys."""
  split = common.normalize_split(split)
  path = pickle_path(root, split)
  data = common.load_pickle(path)
  if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
    found = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise common.DatasetError(f"{path} should hold a dict with keys 'image_data' and "
                              f"'class_dict', found {found}: download the file again.")
  images = np.asarray(data["image_data"])
  if images.ndim != 4 or images.dtype != np.uint8:
    raise common.DatasetError(f"{path}: 'image_data' should be uint8 N x H x W x 3, found "
                              f"{images.dtype} {images.shape}.")
  classes = {}
  for name, indices in data["class_dict"].items():
    indices = [int(i) for i in indices]
    if indices and not 0 <= min(indices) <= max(indices) < len(images):
      raise common.DatasetError(f"{path}: class {name!r} refers to images outside the "
                                f"{len(images)} in 'image_data': the file is inconsistent.")
    name = name.decode() if isinstance(name, bytes) else str(name)
    classes[name] = [common.ArrayRef(images, i, origin=path) for i in indices]
  return _make_index(classes, root, split, PICKLE_FORMAT, image_size)
