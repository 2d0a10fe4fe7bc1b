"""Few-shot image dataset readers: whatever layout is on disk -> a `ClassIndex` per split.

`load_split(root, split)` recognises the layout under `root` and returns class name -> image
sources, decoded lazily by `load_image`; no TensorFlow. Layouts, checked in this order:

  mini_imagenet_pickle        mini-imagenet-cache-{train,validation,test}.pkl
  mini_imagenet_csv           images/ + {train,val,test}.csv
  mini_imagenet_folders       {train,val,test}/<wnid>/*.jpg
  tiered_imagenet_png_pickle  {split}_images_png.pkl + {split}_labels.pkl
  tiered_imagenet_npz         {split}_images.npz + {split}_labels.pkl
  omniglot                    images_background/ + images_evaluation/

A mistake with the files raises `DatasetError` (a ValueError) naming the path and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from l2f_tf.data.readers import mini_imagenet, omniglot, tiered_imagenet
from l2f_tf.data.readers.common import (IMAGE_EXTENSIONS, SPLITS, ArrayRef, ClassIndex,
                                        DatasetError, ImageDecodeError, Rotated,
                                        check_class_sizes, check_first_images, check_index,
                                        list_images, load_image, load_image_or_none)

# (format name, dataset it belongs to or None for any, detector, reader, what is looked for):
# the order settles ambiguous roots.
_FORMATS = (
    (mini_imagenet.PICKLE_FORMAT, "mini_imagenet", mini_imagenet.is_pickle_layout,
     mini_imagenet.read_pickle_split, "mini-imagenet-cache-{train,validation,test}.pkl"),
    (mini_imagenet.CSV_FORMAT, "mini_imagenet", mini_imagenet.is_csv_layout,
     mini_imagenet.read_csv_split, "images/ with train.csv, val.csv, test.csv"),
    (mini_imagenet.FOLDERS_FORMAT, None, mini_imagenet.is_folders_layout,
     mini_imagenet.read_folders_split, "train/, val/, test/ folders of <wnid>/*.jpg"),
    (tiered_imagenet.PNG_FORMAT, "tiered_imagenet", tiered_imagenet.is_png_pickle_layout,
     tiered_imagenet.read_png_pickle_split, "{split}_images_png.pkl + {split}_labels.pkl"),
    (tiered_imagenet.NPZ_FORMAT, "tiered_imagenet", tiered_imagenet.is_npz_layout,
     tiered_imagenet.read_npz_split, "{split}_images.npz + {split}_labels.pkl"),
    (omniglot.FORMAT, "omniglot", omniglot.is_omniglot_layout,
     omniglot.read_split, "images_background/ and images_evaluation/ (Omniglot)"),
)
FORMATS = tuple(name for name, *_ in _FORMATS)
# Datasets with layouts of their own, by the names experiments give them (few_shot's `name`).
DATASETS = {"mini_imagenet": "miniImageNet", "tiered_imagenet": "tieredImageNet",
            "omniglot": "Omniglot"}
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")
_MAX_SCANNED = 200  # Folders searched per level for a dataset (only when none is found).


def _detect(root: str) -> str | None:
  return next((name for name, _, detector, *_ in _FORMATS if detector(root)), None)


def _subfolders(folder: str) -> list[os.DirEntry]:
  """Up to `_MAX_SCANNED` visible subfolders of `folder`, by name."""
  try:
    with os.scandir(folder) as entries:
      found = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
  except OSError:
    return []
  return sorted(found, key=lambda e: e.name)[:_MAX_SCANNED]


def _find_below(root: str, depth: int = 2) -> tuple[str, str] | None:
  """(folder, format) of the shallowest dataset at most `depth` levels below `root`."""
  level = [root]
  for _ in range(depth):
    level = [entry.path for folder in level for entry in _subfolders(folder)][:_MAX_SCANNED]
    found = next(((path, name) for path in level if (name := _detect(path))), None)
    if found:
      return found
  return None


def _find_above(root: str, depth: int = 2) -> tuple[str, str] | None:
  """(folder, format) of the nearest dataset at most `depth` levels above `root`."""
  folder = os.path.abspath(root)
  for _ in range(depth):
    folder, child = os.path.dirname(folder), folder
    found = _detect(folder) if folder != child else None
    if found:
      return folder, found
  return None


def _unrecognised(root: str) -> str:
  """Why `root` holds no known layout, and what to do: the message of `detect_format`."""
  with os.scandir(root) as scanned:
    entries = sorted((e for e in scanned if not e.name.startswith(".")), key=lambda e: e.name)
  if not entries:
    return (f"Dataset root {root} is empty: put the dataset there (e.g. miniImageNet's train/, "
            "val/ and test/ class folders) or set the root to the folder that holds it.")
  below = _find_below(root)
  if below:
    return (f"Dataset root {root} holds no dataset itself, but its subfolder {below[0]} does "
            f"({below[1]} layout): use root={below[0]}.")
  above = _find_above(root)
  if above:
    return (f"Dataset root {root} is a part of the dataset in {above[0]} ({above[1]} layout): "
            f"use root={above[0]}.")
  files = [e.name for e in entries if e.is_file()]
  archives = [name for name in files if name.lower().endswith(_ARCHIVES)]
  if archives:
    return (f"Dataset root {root} holds {', '.join(archives[:3])} but no extracted dataset: "
            f"extract the archive(s) into {root}.")
  images = [name for name in files if name.lower().endswith(IMAGE_EXTENSIONS)]
  if images:
    return (f"Dataset root {root} holds images ({images[0]}, ...) directly: the class-folder "
            f"layout is {os.path.join(root, 'train', '<class>', '<image>.jpg')}, and the same "
            "for val/ and test/.")
  folders = [e for e in entries if e.is_dir()]
  if any(list_images(e.path) for e in folders[:3]):
    return (f"Dataset root {root} holds class folders ({folders[0].name}/, ...) but no "
            "train/, val/ and test/ split folders: move each split's class folders into "
            f"{os.path.join(root, 'train')}, {os.path.join(root, 'val')} and "
            f"{os.path.join(root, 'test')}.")
  looked_for = "; ".join(f"{desc} ({name})" for name, _, _, _, desc in _FORMATS)
  listed = ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries[:5])
  more = ", ..." if len(entries) > 5 else ""
  return (f"No recognised few-shot dataset in {root} (it holds {listed}{more}). Looked for: "
          f"{looked_for}.")


def detect_format(root: str | os.PathLike) -> str:
  """The name of the dataset layout found in `root` (one of `FORMATS`); DatasetError if there
  is none, saying what to do (use the dataset folder up to two levels down or up, extract an
  archive, make class and split folders) or what was looked for."""
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise DatasetError(f"Dataset root {root} does not exist or is not a folder: set it to "
                       "the folder holding your miniImageNet, tieredImageNet or Omniglot "
                       "files.")
  found = _detect(root)
  if found is None:
    raise DatasetError(_unrecognised(root))
  return found


def load_split(root: str | os.PathLike, split: str, image_size: Sequence[int] | None = None,
               channels: int | None = None, dataset: str | None = None,
               **reader_options) -> ClassIndex:
  """Indexes one split of the dataset in `root`, whatever its layout.

  Args:
    root: The dataset folder (see the module docstring for the layouts).
    split: "train", "val" or "test" ("validation" is accepted for "val").
    image_size: (height, width) images are decoded to; None for the format's default
      (84 x 84 for mini/tieredImageNet, 28 x 28 for Omniglot).
    channels: 1 or 3; None for the format's default (3, or 1 for Omniglot).
    dataset: The dataset the caller expects, e.g. "mini_imagenet": a layout of another one of
      `DATASETS` is then an error. Names not in `DATASETS` (and the class-folder layout, which
      any dataset may use) are not checked.
    **reader_options: Passed to the format's reader (e.g. Omniglot's `seed`, `rotations`).

  Raises:
    DatasetError: If the root, the split's files or their content are not usable.
  """
  if channels not in (None, 1, 3):
    raise ValueError(f"load_split: channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
  root = os.fspath(root)
  format_name = detect_format(root)
  found, reader = next((found, reader) for name, found, _, reader, _ in _FORMATS
                       if name == format_name)
  if dataset in DATASETS and found not in (None, dataset):
    raise DatasetError(f"Dataset root {root} holds {DATASETS[found]} ({format_name} layout), "
                       f"not {DATASETS[dataset]}: set the root to your {DATASETS[dataset]} "
                       "folder.")
  if format_name == omniglot.FORMAT:
    return reader(root, split, image_size, channels, **reader_options)
  index = reader(root, split, image_size, **reader_options)
  if channels is not None:
    index.channels = channels  # e.g. grayscale miniImageNet for an ablation.
  return index


__all__ = [
    "DATASETS", "FORMATS", "SPLITS", "ArrayRef", "ClassIndex", "DatasetError",
    "ImageDecodeError", "Rotated", "check_class_sizes", "check_first_images", "check_index",
    "detect_format", "load_image", "load_image_or_none", "load_split",
]
