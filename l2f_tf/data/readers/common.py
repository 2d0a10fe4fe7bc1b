"""Types, image decoding and checks shared by the few-shot dataset readers (no TensorFlow).

A reader turns files on disk into a `ClassIndex`: class name -> image *sources*, cheap
references decoded only when an episode needs them (so tieredImageNet is indexed without
decoding it). A source is a JPEG/PNG file path, encoded image bytes (``bytes`` or a 1-D
``uint8`` array), an `ArrayRef` (an item of an indexable store of decoded ``uint8`` images or
encoded bytes) or a `Rotated` source (Omniglot's extra classes). `load_image` decodes any of
them to ``uint8`` H x W x C with Pillow, never normalised (the tf.data pipeline does that).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validation": "val", "valid": "val"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_LFS_POINTER = b"version https://git-lfs"


class DatasetError(ValueError):
  """A dataset on disk is missing, incomplete or malformed; the message says how to fix it."""


class ImageDecodeError(DatasetError):
  """One image cannot be read or decoded: `image` names it (a path or ``<file>[<index>]``),
  `problem` says what is wrong ("it is truncated")."""

  def __init__(self, message: str, image: str = "", problem: str = ""):
    super().__init__(message)
    self.image, self.problem = image, problem


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayRef:
  """Item `index` of `store` (numpy array, memmap or list of ``uint8`` images or encoded
  bytes), named `origin` (usually its file) in messages."""

  store: Any
  index: int
  origin: str = "<array>"

  def __repr__(self) -> str:
    return f"{self.origin}[{self.index}]"


@dataclasses.dataclass(frozen=True)
class Rotated:
  """`source` rotated counter-clockwise by `degrees` (0, 90, 180 or 270)."""

  source: Any
  degrees: int

  def __repr__(self) -> str:
    return f"{describe_source(self.source)} rotated by {self.degrees} degrees"


Source = Union[str, os.PathLike, bytes, np.ndarray, ArrayRef, Rotated]


def describe_source(source: Source) -> str:
  """Returns a short human-readable name for an image source (used in messages)."""
  if isinstance(source, (str, os.PathLike)):
    return os.fspath(source)
  if isinstance(source, (bytes, bytearray, np.ndarray)):
    return f"<{len(source)} encoded bytes>"
  return repr(source)


class ClassIndex(Mapping):
  """Ordered, read-only mapping class name -> list of image sources of one split ("train",
  "val" or "test") of the dataset in `root`, in the layout `format_name` (`detect_format`);
  images are decoded to `image_size` (height, width) with `channels` (3: RGB, 1: grayscale)."""

  def __init__(self, classes: Mapping[str, Sequence[Source]], *, root: str, split: str,
               format_name: str, image_size: tuple[int, int], channels: int = 3):
    self._classes = {name: list(sources) for name, sources in classes.items()}
    self.root = os.fspath(root)
    self.split = split
    self.format_name = format_name
    self.image_size = (int(image_size[0]), int(image_size[1]))
    self.channels = channels

  def __getitem__(self, name: str) -> list[Source]:
    return self._classes[name]

  def __iter__(self):
    return iter(self._classes)

  def __len__(self) -> int:
    return len(self._classes)

  @property
  def class_names(self) -> list[str]:
    """Class names in index order (the order class labels should follow)."""
    return list(self._classes)

  @property
  def num_images(self) -> int:
    """Total number of images over all classes."""
    return sum(len(sources) for sources in self._classes.values())

  def load_image(self, source: Source) -> np.ndarray:
    """Decodes `source` at this index's `image_size` and `channels` (see `load_image`)."""
    return load_image(source, self.image_size, channels=self.channels)

  def __repr__(self) -> str:
    return (f"ClassIndex({self.format_name!r}, split={self.split!r}, "
            f"{len(self)} classes, {self.num_images} images, root={self.root!r})")


def normalize_split(split: str) -> str:
  """Maps a split name to one of `SPLITS` ("validation" -> "val"); DatasetError if unknown."""
  name = _SPLIT_ALIASES.get(str(split).lower(), str(split).lower())
  if name not in SPLITS:
    raise DatasetError(f"Unknown split {split!r}: use one of 'train', 'val', 'test'.")
  return name


def load_pickle(path: str, encoding: str | None = None,
                fix: str = "download it again or re-create it") -> Any:
  """Loads a pickle; a DatasetError naming `fix` if it is missing or unreadable. `encoding`
  None tries Python 3's default, then "latin1" (Python 2 pickles store byte strings and numpy
  buffers as ``str``; latin1 maps each byte to one code point, see `_open_pil`)."""
  try:
    with open(path, "rb") as f:
      if encoding:
        return pickle.load(f, encoding=encoding)
      try:
        return pickle.load(f)
      except UnicodeDecodeError:
        f.seek(0)
        logging.info("%s is a Python 2 pickle; loading it with encoding='latin1'.", path)
        return pickle.load(f, encoding="latin1")
  except FileNotFoundError:
    raise DatasetError(f"{path} does not exist: check the dataset root.") from None
  except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, ValueError,
          TypeError, IndexError, MemoryError, OSError) as e:
    fallback = None
    if isinstance(e, pickle.UnpicklingError):
      fallback = f"it is not a pickle, or a damaged one ({str(e).rstrip('.')})"
    elif isinstance(e, (ImportError, AttributeError)):
      fallback = f"it refers to code this Python lacks ({type(e).__name__}: {e})"
    problem = file_problem(read_head(path), e, fix, fallback)
    raise DatasetError(f"Cannot unpickle {path}: {problem}.") from e


def read_head(path: str, size: int = 64) -> bytes | None:
  """The first `size` bytes of the file `path`, or None if it cannot be read."""
  try:
    with open(path, "rb") as f:
      return f.read(size)
  except OSError:
    return None


def file_problem(head: bytes | None, error: BaseException, fix: str,
                 fallback: str | None = None) -> str:
  """"<what is wrong>; <what to do>" for a data file reading raised `error` on: an empty file,
  a Git LFS pointer or an HTML page (a failed download) is recognised from its first bytes
  `head` (None: unknown), an EOFError or "truncated" is "it is truncated"; `fallback` words any
  other error (default "<error type>: <error message>")."""
  if head is not None:
    if not head:
      return f"the file is empty; {fix}"
    if head.startswith(_LFS_POINTER):
      return "it is a Git LFS pointer, not the data; run `git lfs pull` in its repository"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
      return f"it is an HTML page, not the data (a failed download); {fix}"
  text = str(error).strip().rstrip(".")
  if isinstance(error, EOFError) or "truncated" in text.lower():
    problem = "it is truncated"
  else:
    problem = fallback or (f"{type(error).__name__}: {text}" if text else type(error).__name__)
  return f"{problem}; {fix}"


def _decode_error(source: Source, error: BaseException) -> ImageDecodeError:
  """The ImageDecodeError of `source`: names the image, what is wrong and what to do."""
  base, name, fallback = source, describe_source(source), None
  while isinstance(base, Rotated):
    base = base.source
  if isinstance(error, UnidentifiedImageError):
    fallback = "it is not a JPEG or PNG image"
  elif isinstance(error, OSError) and isinstance(base, (str, os.PathLike)):
    fallback = str(error).replace(f" '{os.fspath(base)}'", "").strip() or None
  if isinstance(base, (str, os.PathLike)):
    head, fix = read_head(os.fspath(base)), "re-extract it from the dataset archive, or delete it"
  elif isinstance(base, ArrayRef):
    head, fix = None, f"download {base.origin} again or re-create it"
  else:
    head, fix = None, "re-encode it"
  problem = file_problem(head, error, fix, fallback)
  return ImageDecodeError(f"Cannot decode image {name}: {problem}.", name,
                          problem.partition("; ")[0])


def _is_encoded(item: Any) -> bool:
  """True for encoded image bytes: bytes-like, or a 1-D / N x 1 array (cv2.imencode's)."""
  if isinstance(item, np.ndarray):
    return item.ndim == 1 or (item.ndim == 2 and item.shape[1] == 1)
  return isinstance(item, (bytes, bytearray, memoryview))


def _open_pil(source: Source) -> Image.Image:
  """Returns a fully decoded PIL image for `source` (rotations applied)."""
  if isinstance(source, Rotated):
    if source.degrees % 90:
      raise DatasetError(f"Rotation must be a multiple of 90 degrees, got {source!r}.")
    image = _open_pil(source.source)
    turns = (source.degrees // 90) % 4
    ops = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
           Image.Transpose.ROTATE_270)
    return image if turns == 0 else image.transpose(ops[turns])
  item = source.store[source.index] if isinstance(source, ArrayRef) else source
  if isinstance(item, str) and isinstance(source, ArrayRef):
    item = item.encode("latin1")  # Encoded bytes from a Python 2 pickle (see load_pickle).
  if _is_encoded(item):
    data = item.tobytes() if isinstance(item, np.ndarray) else bytes(item)
    image = Image.open(io.BytesIO(data))
  elif isinstance(item, np.ndarray):
    if item.dtype != np.uint8:
      name = describe_source(source)
      raise ImageDecodeError(f"Image {name} has dtype {item.dtype}; expected uint8 pixels: "
                             "re-create the file with uint8 images.", name,
                             f"it has dtype {item.dtype}")
    if item.ndim == 3 and item.shape[-1] == 1:
      item = item[..., 0]  # Pillow reads H x W (not H x W x 1) as grayscale.
    return Image.fromarray(np.ascontiguousarray(item))
  else:
    image = Image.open(item)
  image.load()  # Decode now so that a truncated file fails here, not in the pipeline.
  return image


def load_image(source: Source, size: Sequence[int] | None = None, channels: int = 3) -> np.ndarray:
  """Decodes one image source to ``uint8`` (height, width, channels), not normalised.

  `size` (height, width): resized to it, after any rotation, with Lanczos filtering (what the
  MAML preprocessing scripts used); None keeps the stored size. `channels` 3 converts to RGB,
  1 to grayscale. ImageDecodeError if the image is missing, unreadable, truncated or corrupt.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}.")
  try:
    image = _open_pil(source)
    image = image.convert("RGB" if channels == 3 else "L")
    if size is not None and image.size != (size[1], size[0]):
      image = image.resize((int(size[1]), int(size[0])), Image.Resampling.LANCZOS)
  except DatasetError:
    raise
  except FileNotFoundError:
    name = describe_source(source)
    raise ImageDecodeError(f"Image file {name} does not exist: restore it or re-extract the "
                           "dataset.", name, "it does not exist") from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise _decode_error(source, e) from e
  return np.asarray(image, dtype=np.uint8).reshape(image.size[1], image.size[0], channels)


def load_image_or_none(source: Source, size: Sequence[int] | None = None,
                       channels: int = 3) -> np.ndarray | None:
  """Like `load_image`, but logs a warning and returns None for an undecodable image (a
  pipeline can skip one bad file of a large dataset)."""
  try:
    return load_image(source, size, channels)
  except ImageDecodeError as e:
    logging.warning("Skipping image %s: %s", describe_source(source), e)
    return None


def check_class_sizes(class_sizes: Mapping[str, int], where: str, num_ways: int = 0,
                      needed: int = 0, needed_as: str = "shots + queries", items: str = "images",
                      fix: str = "restore the missing images", within: str = "in") -> None:
  """Raises DatasetError if `where` (e.g. "split 'val' of <root>") has fewer than `num_ways`
  classes, or a class fewer than `needed` (K + Q, spelt `needed_as`) items; the message names
  the smallest such class, how many are short, and the fix."""
  if len(class_sizes) < num_ways:
    raise DatasetError(
        f"{where[:1].upper()}{where[1:]} has {len(class_sizes)} classes, fewer than the "
        f"{num_ways} ways requested: lower num_ways to at most {len(class_sizes)} or check that "
        f"{where} is complete.")
  short = [(count, name) for name, count in class_sizes.items() if count < needed]
  if short:
    count, name = min(short)
    others = f" (and {len(short) - 1} other classes)" if len(short) > 1 else ""
    raise DatasetError(
        f"Class {name!r} {within} {where} has {count} {items}{others}, fewer than the {needed} "
        f"needed per class ({needed_as}): lower num_shots or num_queries, or {fix}.")


def check_index(class_index: ClassIndex, num_ways: int = 0, needed: int = 0,
                split: str | None = None, root: str | None = None,
                needed_as: str = "shots + queries") -> None:
  """:func:`check_class_sizes` of a split's index (`split`, `root`: the names in the message,
  by default the index's own)."""
  check_class_sizes({name: len(sources) for name, sources in class_index.items()},
                    f"split {split or class_index.split!r} of {root or class_index.root}",
                    num_ways=num_ways, needed=needed, needed_as=needed_as)


def check_first_images(class_index: ClassIndex) -> None:
  """Decodes the first image of every class (once per file); raises the first ImageDecodeError:
  a dataset unreadable throughout (Git LFS pointers, an interrupted extraction) fails before
  training starts. Later bad images are met lazily."""
  checked = set()
  for sources in class_index.values():
    if not sources:
      continue
    base = sources[0].source if isinstance(sources[0], Rotated) else sources[0]
    if isinstance(base, (str, os.PathLike)):
      key = os.fspath(base)
    else:
      key = (id(base.store), base.index) if isinstance(base, ArrayRef) else id(base)
    if key not in checked:
      checked.add(key)
      load_image(base, None, class_index.channels)


def list_images(directory: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
  """Returns the sorted paths of the image files (by extension: one of `extensions`, lower
  case) directly in `directory`."""
  return [os.path.join(directory, name) for name in sorted(os.listdir(directory))
          if name.lower().endswith(tuple(extensions))]
