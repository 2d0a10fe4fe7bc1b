"""Readers for the two tieredImageNet layouts, indexing ~780k images without decoding them.

tieredImageNet has 608 ImageNet classes (351/97/160 train/val/test) in 34 categories:

* ``tiered_imagenet_png_pickle`` (Ren et al. 2018): ``{split}_images_png.pkl``, a list of
  encoded PNGs (bytes, or ``cv2.imencode``'s uint8 arrays; held in memory, decoded when used),
  plus ``{split}_labels.pkl``, a dict with ``label_specific`` (class of each image),
  ``label_general``, ``label_specific_str`` (class names) and ``label_general_str``.
* ``tiered_imagenet_npz``: ``{split}_images.npz`` (key ``images``, uint8 N x H x W x 3) plus
  ``{split}_labels.pkl`` (key ``labels``). ``np.load`` ignores mmap_mode for .npz, so
  `open_npz_array` memory-maps an uncompressed ``images.npy`` member (``np.savez``) itself; a
  compressed one is loaded whole on first access, with a warning to re-save it uncompressed.

The Python 2 label pickles are read by `common.load_pickle`. Classes are ordered by label.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Sequence

import numpy as np
from absl import logging

from l2f_tf.data.readers import common

PNG_FORMAT = "tiered_imagenet_png_pickle"
NPZ_FORMAT = "tiered_imagenet_npz"
DEFAULT_IMAGE_SIZE = (84, 84)
_PNG, _NPZ, _LABELS = "_images_png.pkl", "_images.npz", "_labels.pkl"  # After "<split>".


def _path(root: str, split: str, suffix: str) -> str:
  """``<root>/<split><suffix>``, e.g. ``<root>/train_labels.pkl``."""
  return os.path.join(root, f"{common.normalize_split(split)}{suffix}")


def is_png_pickle_layout(root: str) -> bool:
  """True if `root` has at least one ``{split}_images_png.pkl``."""
  return any(os.path.isfile(_path(root, split, _PNG)) for split in common.SPLITS)


def is_npz_layout(root: str) -> bool:
  """True if `root` has at least one ``{split}_images.npz``."""
  return any(os.path.isfile(_path(root, split, _NPZ)) for split in common.SPLITS)


class _LazyNpzMember:
  """A compressed .npz member, inflated into memory the first time an item is read."""

  def __init__(self, path: str, key: str, shape: tuple, dtype: np.dtype):
    self._path, self._key, self._array = path, key, None
    self.shape, self.dtype = shape, dtype

  def __len__(self) -> int:
    return self.shape[0] if self.shape else 0

  def __getitem__(self, index):
    if self._array is None:
      logging.warning("%s stores %r compressed: loading it whole into memory. Re-save it "
                      "with np.savez (uncompressed) to memory-map it instead.",
                      self._path, self._key)
      with np.load(self._path) as archive:
        self._array = archive[self._key]
    return self._array[index]


def open_npz_array(path: str, key: str = "images"):
  """Array `key` of an .npz file, unread: an ``np.memmap`` if stored uncompressed, else an
  indexable (``len()``, ``shape``, ``dtype``) inflated on first access. DatasetError if the
  file is missing, not a valid .npz, or lacks `key`."""
  try:
    with zipfile.ZipFile(path) as archive:
      member = f"{key}.npy"
      if member not in archive.namelist():
        keys = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
        raise common.DatasetError(f"{path} has no array {key!r} (found {keys}): expected "
                                  f"the {key!r} array of the tieredImageNet npz layout.")
      info = archive.getinfo(member)
      with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        shape, fortran_order, dtype = (np.lib.format.read_array_header_1_0(stream)
                                       if version == (1, 0) else
                                       np.lib.format.read_array_header_2_0(stream))
        header_length = stream.tell() if info.compress_type == zipfile.ZIP_STORED else None
  except FileNotFoundError:
    raise common.DatasetError(f"{path} does not exist: check the dataset root.") from None
  except common.DatasetError:
    raise
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    problem = common.file_problem(common.read_head(path), e, "download it again or re-create it",
                                  "it is truncated or not a zip archive")
    raise common.DatasetError(f"{path} is not a valid .npz file: {problem}.") from e
  if header_length is None or dtype.hasobject:
    return _LazyNpzMember(path, key, shape, dtype)
  # The data of an uncompressed member sits in the zip file after its local header.
  with open(path, "rb") as f:
    f.seek(info.header_offset)
    local_header = f.read(30)
  name_length, extra_length = struct.unpack("<HH", local_header[26:30])
  offset = info.header_offset + 30 + name_length + extra_length + header_length
  try:
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran_order else "C")
  except ValueError as e:  # The file is shorter than its header says.
    raise common.DatasetError(f"{path} is truncated (its images end early): download it "
                              "again or re-create it.") from e


def _read_labels(root: str, split: str, keys: Sequence[str]) -> tuple[np.ndarray, list | None]:
  """Returns (label of each image, class names or None) from ``{split}_labels.pkl``."""
  path = _path(root, split, _LABELS)
  data = common.load_pickle(path)
  if not isinstance(data, dict):
    raise common.DatasetError(f"{path} should hold a dict of labels, found "
                              f"{type(data).__name__}: download the file again.")
  key = next((k for k in keys if k in data), None)
  if key is None:
    raise common.DatasetError(f"{path} has none of the keys {list(keys)} (found "
                              f"{sorted(data)}): is it a tieredImageNet label file?")
  labels = np.asarray(data[key]).reshape(-1)
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise common.DatasetError(f"{path}: {key!r} should hold integer class labels, found "
                              f"{labels.dtype}.")
  names = data.get("label_specific_str")
  if names is not None:
    names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
  return labels.astype(np.int64), names


def _read_split(root: str, split: str, image_size: Sequence[int] | None,
                format_name: str) -> common.ClassIndex:
  """One split of either layout: a class per label (named by ``label_specific_str`` if
  present, else ``class_0000``, ...), in label order, of `ArrayRef`s in file order."""
  split = common.normalize_split(split)
  labels_file = _path(root, split, _LABELS)
  if format_name == PNG_FORMAT:
    path = _path(root, split, _PNG)
    labels, names = _read_labels(root, split, ("label_specific", "labels"))
    store = common.load_pickle(path)
    if not isinstance(store, (list, tuple)):
      raise common.DatasetError(f"{path} should hold a list of PNG-encoded images, found "
                                f"{type(store).__name__}: download the file again.")
  else:
    path = _path(root, split, _NPZ)
    labels, names = _read_labels(root, split, ("labels", "label_specific"))
    store = open_npz_array(path, "images")
    if len(store.shape) != 4 or store.dtype != np.uint8:
      raise common.DatasetError(f"{path}: 'images' should be uint8 N x H x W x 3, found "
                                f"{store.dtype} {store.shape}.")
  if len(labels) != len(store):
    raise common.DatasetError(
        f"{labels_file} has {len(labels)} labels but {path} holds {len(store)} images: "
        "the two files do not belong together; download both again.")
  if labels.size and labels.min() < 0:
    raise common.DatasetError(f"{labels_file}: labels must be >= 0, found {labels.min()}.")
  if names is not None and labels.size and labels.max() >= len(names):
    raise common.DatasetError(f"{labels_file}: label {labels.max()} has no entry in "
                              f"'label_specific_str' ({len(names)} names).")
  order = np.argsort(labels, kind="stable")
  unique, starts = np.unique(labels[order], return_index=True)
  classes = {}
  for label, indices in zip(unique, np.split(order, starts[1:])):
    name = names[label] if names is not None else f"class_{label:04d}"
    classes[name] = [common.ArrayRef(store, int(i), origin=path) for i in indices]
  return common.ClassIndex(classes, root=root, split=split, format_name=format_name,
                           image_size=tuple(image_size or DEFAULT_IMAGE_SIZE), channels=3)


def read_png_pickle_split(root: str, split: str,
                          image_size: Sequence[int] | None = None) -> common.ClassIndex:
  """One split of the PNG-pickle layout, decoded to `image_size` (default 84 x 84);
  DatasetError for a missing, unreadable or inconsistent file."""
  return _read_split(root, split, image_size, PNG_FORMAT)


def read_npz_split(root: str, split: str,
                   image_size: Sequence[int] | None = None) -> common.ClassIndex:
  """One split of the npz layout; see `read_png_pickle_split`."""
  return _read_split(root, split, image_size, NPZ_FORMAT)
