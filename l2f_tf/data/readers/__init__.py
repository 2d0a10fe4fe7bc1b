"""Few-shot image dataset readers: whatever layout is on disk -> a `ClassIndex` per split.

`load_split(root, split)` recognises the layout under `root` (see `detect_format`) and returns
an ordered mapping class name -> image sources, decoded lazily by `load_image`. Readers are
pure Python/numpy/Pillow (no TensorFlow), so they are testable on tiny files and reusable by
any input pipeline. Supported layouts, checked in this order:

  mini_imagenet_pickle        mini-imagenet-cache-{train,validation,test}.pkl
  mini_imagenet_csv           images/ + {train,val,test}.csv
  mini_imagenet_folders       {train,val,test}/<wnid>/*.jpg
  tiered_imagenet_png_pickle  {split}_images_png.pkl + {split}_labels.pkl
  tiered_imagenet_npz         {split}_images.npz + {split}_labels.pkl
  omniglot                    images_background/ + images_evaluation/

Every mistake a user can make with the files raises `DatasetError` (a ValueError) whose
message names the path and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from l2f_tf.data.readers import mini_imagenet, omniglot, tiered_imagenet
from l2f_tf.data.readers.common import (SPLITS, ArrayRef, ClassIndex, DatasetError,
                                        ImageDecodeError, Rotated, check_enough_classes,
                                        check_enough_images, load_image, load_image_or_none)

# (format name, detector, reader, what is looked for): the order settles ambiguous roots.
_FORMATS = (
    (mini_imagenet.PICKLE_FORMAT, mini_imagenet.is_pickle_layout,
     mini_imagenet.read_pickle_split, "mini-imagenet-cache-{train,validation,test}.pkl"),
    (mini_imagenet.CSV_FORMAT, mini_imagenet.is_csv_layout,
     mini_imagenet.read_csv_split, "images/ with train.csv, val.csv, test.csv"),
    (mini_imagenet.FOLDERS_FORMAT, mini_imagenet.is_folders_layout,
     mini_imagenet.read_folders_split, "train/, val/, test/ folders of <wnid>/*.jpg"),
    (tiered_imagenet.PNG_FORMAT, tiered_imagenet.is_png_pickle_layout,
     tiered_imagenet.read_png_pickle_split, "{split}_images_png.pkl + {split}_labels.pkl"),
    (tiered_imagenet.NPZ_FORMAT, tiered_imagenet.is_npz_layout,
     tiered_imagenet.read_npz_split, "{split}_images.npz + {split}_labels.pkl"),
    (omniglot.FORMAT, omniglot.is_omniglot_layout,
     omniglot.read_split, "images_background/ and images_evaluation/ (Omniglot)"),
)
FORMATS = tuple(name for name, *_ in _FORMATS)


def _detect(root: str) -> str | None:
  return next((name for name, detector, *_ in _FORMATS if detector(root)), None)


def detect_format(root: str | os.PathLike) -> str:
  """Returns the name of the dataset layout found in `root` (one of `FORMATS`).

  Args:
    root: The dataset folder.

  Raises:
    DatasetError: If `root` does not exist or holds none of the known layouts; the message
      lists what was looked for and suggests a subfolder that does hold one.
  """
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise DatasetError(f"Dataset root {root} does not exist or is not a folder: set it to "
                       "the folder holding your miniImageNet, tieredImageNet or Omniglot "
                       "files.")
  found = _detect(root)
  if found is not None:
    return found
  hints = [os.path.join(root, name) for name in sorted(os.listdir(root))
           if os.path.isdir(os.path.join(root, name)) and _detect(os.path.join(root, name))]
  hint = f" A subfolder does: use root={hints[0]}." if hints else ""
  looked_for = "; ".join(f"{desc} ({name})" for name, _, _, desc in _FORMATS)
  raise DatasetError(f"No recognised few-shot dataset in {root}. Looked for: {looked_for}."
                     f"{hint}")


def load_split(root: str | os.PathLike, split: str, image_size: Sequence[int] | None = None,
               channels: int | None = None, **reader_options) -> ClassIndex:
  """Indexes one split of the dataset in `root`, whatever its layout.

  Args:
    root: The dataset folder (see the module docstring for the layouts).
    split: "train", "val" or "test" ("validation" is accepted for "val").
    image_size: (height, width) images are decoded to; None for the format's default
      (84 x 84 for mini/tieredImageNet, 28 x 28 for Omniglot).
    channels: 1 or 3; None for the format's default (3, or 1 for Omniglot).
    **reader_options: Passed to the format's reader (e.g. Omniglot's `seed`, `num_train`,
      `num_val`, `rotations`).

  Returns:
    The split's `ClassIndex`.

  Raises:
    DatasetError: If the root, the split's files or their content are not usable.
  """
  if channels not in (None, 1, 3):
    raise ValueError(f"load_split: channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
  root = os.fspath(root)
  format_name = detect_format(root)
  reader = next(reader for name, _, reader, _ in _FORMATS if name == format_name)
  if format_name == omniglot.FORMAT:
    return reader(root, split, image_size, channels, **reader_options)
  index = reader(root, split, image_size, **reader_options)
  if channels is not None:
    index.channels = channels  # e.g. grayscale miniImageNet for an ablation.
  return index


__all__ = [
    "FORMATS", "SPLITS", "ArrayRef", "ClassIndex", "DatasetError", "ImageDecodeError",
    "Rotated", "check_enough_classes", "check_enough_images", "detect_format", "load_image",
    "load_image_or_none", "load_split",
]
