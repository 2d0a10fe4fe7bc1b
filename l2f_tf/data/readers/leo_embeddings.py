"""Pre-computed image embeddings in the format of LEO's released files (Rusu et al., 2019).

LEO meta-learns on features of a backbone pre-trained on the train classes. Its authors
released them for miniImageNet and tieredImageNet; `l2f_tf.embed` writes the same format for
any dataset the library reads (e.g. glyphs). On disk::

  <root>/<dataset>/<crop>/{train,val,test}_embeddings.pkl

``dataset`` is "miniImageNet", "tieredImageNet" or any folder name of one's own, ``crop``
"center" or "multiview" (tieredImageNet has only "center"). Each file is a pickle (written by
Python 2: it is loaded with ``encoding="latin1"``) of a dict:

  "embeddings": float32 [N, D] (D = 640 in the released files),
  "labels":     [N] integers (not used: classes come from the keys),
  "keys":       [N] strings "<id>-<class>-<class>_<image file>", e.g.
                "1234-n01532829-n01532829_00001234.JPEG".

Classes are indexed in the order of their first row, rows kept in file order, so a file's
episodes are a pure function of it (`l2f_tf.data.episodic`). A bad file raises `DatasetError`
naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from l2f_tf import atomic
from l2f_tf.data.readers.common import SPLITS, DatasetError, load_pickle, normalize_split

DATASETS = ("miniImageNet", "tieredImageNet")
CROPS = ("center", "multiview")
FIELDS = ("embeddings", "labels", "keys")
_LISTED = 6  # Entries of a folder named in a "file does not exist" message.


@dataclasses.dataclass(eq=False)
class EmbeddingSplit:
  """One split's embeddings (read from `path`): float32 [N, D] `embeddings`, one row per
  image in file order (not normalised), `class_names` in the order of their first row (the
  class index order), and per class its int64 `class_rows` in file order."""

  path: str
  embeddings: np.ndarray
  class_names: list[str]
  class_rows: list[np.ndarray]

  @property
  def embedding_dim(self) -> int:
    return int(self.embeddings.shape[1])

  @property
  def class_sizes(self) -> list[int]:
    """Rows per class, in class index order."""
    return [len(rows) for rows in self.class_rows]

  def __repr__(self) -> str:
    return (f"EmbeddingSplit({self.path!r}, {len(self.class_names)} classes, "
            f"{len(self.embeddings)} rows of dimension {self.embedding_dim})")


def make_key(id: Any, cls: str, image: str) -> str:  # pylint: disable=redefined-builtin
  """The key of one row: ``"<id>-<cls>-<cls>_<image>"`` (what `parse_key` reads back)."""
  return f"{id}-{cls}-{cls}_{image}"


def parse_key(key: Any) -> tuple[str, str] | None:
  """(class, image file) of a key split at "-" into exactly (id, class, image file), as LEO's
  reference code parses it, or None if malformed."""
  if isinstance(key, bytes):
    key = key.decode("latin1")
  if not isinstance(key, str):
    return None
  parts = key.split("-")
  if len(parts) != 3 or not parts[1] or not parts[2]:
    return None
  return parts[1], parts[2]


def embedding_path(root: str | os.PathLike, dataset: str, crop: str, split: str) -> str:
  """``<root>/<dataset>/<crop>/<split>_embeddings.pkl``; DatasetError for an unknown crop or
  split, or multiview crops of tieredImageNet."""
  if crop not in CROPS:
    raise DatasetError(f"Unknown embedding crop {crop!r}: use one of {CROPS}.")
  if crop == "multiview" and dataset == "tieredImageNet":
    raise DatasetError("tieredImageNet embeddings exist only for the 'center' crop, not "
                       "'multiview': set the crop to 'center'.")
  if not dataset or os.sep in dataset or dataset in (".", ".."):
    raise DatasetError(f"Embedding dataset {dataset!r} must be the name of a folder under the "
                       "root, e.g. 'miniImageNet', 'tieredImageNet' or 'glyphs'.")
  return os.path.join(os.fspath(root), dataset, crop, f"{normalize_split(split)}_embeddings.pkl")


def _missing_file_message(path: str, root: str) -> str:
  """Names the missing file, what the nearest existing folder above it holds, and the fix."""
  folder = os.path.dirname(path)
  while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
    folder = os.path.dirname(folder)
  try:
    entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder)
                     if not e.name.startswith("."))
  except OSError:
    entries = None
  if entries is None:
    held = "no folder above it exists"
  elif not entries:
    held = f"{folder} is empty"
  else:
    more = ", ..." if len(entries) > _LISTED else ""
    held = f"{folder} holds {', '.join(entries[:_LISTED])}{more}"
  if not os.path.isdir(root):
    held = f"the root {root} does not exist; {held}"
  hint = ""
  if entries and os.path.abspath(folder) == os.path.abspath(root) and "embeddings/" in entries:
    hint = f" (root={os.path.join(root, 'embeddings')}?)"
  return (f"LEO embeddings file {path} does not exist ({held}): set the root{hint} to the "
          "folder holding <dataset>/<crop>/{train,val,test}_embeddings.pkl (the extracted "
          "embeddings of LEO, or the output of l2f_tf.embed).")


def _strings(keys: Any, path: str) -> list[str]:
  try:
    values = list(np.asarray(keys).reshape(-1)) if not isinstance(keys, list) else keys
  except (TypeError, ValueError) as e:
    raise DatasetError(f"'keys' of {path} is not an array of strings ({e}): write the file "
                       "again.") from e
  return [k.decode("latin1") if isinstance(k, bytes) else str(k) if isinstance(k, str) else k
          for k in values]  # np.str_ and np.bytes_ are str and bytes.


def load_embedding_split(root: str | os.PathLike, dataset: str, crop: str,
                         split: str) -> EmbeddingSplit:
  """Reads and checks ``<root>/<dataset>/<crop>/<split>_embeddings.pkl``. DatasetError if it
  is missing (listing what its folder holds), unreadable, not a dict of `FIELDS`, holds no
  finite 2-D float embeddings, lengths disagree, or a key is malformed or repeated."""
  path = embedding_path(root, dataset, crop, split)
  if not os.path.isfile(path):
    raise DatasetError(_missing_file_message(path, os.fspath(root)))
  fix = "write it again (l2f_tf.embed) or download it again"
  data = load_pickle(path, "latin1", "download or write it again")
  if not isinstance(data, dict):
    raise DatasetError(f"{path} holds a {type(data).__name__}, not a dict with keys {FIELDS}: "
                       f"{fix}.")
  missing = [name for name in FIELDS if name not in data]
  if missing:
    raise DatasetError(f"{path} lacks {', '.join(repr(m) for m in missing)} (it has "
                       f"{sorted(map(str, data))}; expected {FIELDS}): {fix}.")
  embeddings = data["embeddings"]
  if (not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2
      or embeddings.dtype.kind != "f"):
    what = (f"a {embeddings.dtype} array of shape {embeddings.shape}"
            if isinstance(embeddings, np.ndarray) else f"a {type(embeddings).__name__}")
    raise DatasetError(f"'embeddings' of {path} is {what}, not a 2-D float array "
                       f"[images, dimension]: {fix}.")
  if embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
    raise DatasetError(f"'embeddings' of {path} is empty (shape {embeddings.shape}): {fix}.")
  keys = _strings(data["keys"], path)
  try:
    num_labels = len(data["labels"])
  except TypeError:
    num_labels = None
  count = embeddings.shape[0]
  if len(keys) != count or num_labels != count:
    raise DatasetError(f"{path} has {count} embeddings but {len(keys)} keys and {num_labels} "
                       f"labels (one each per image): {fix}.")
  finite = np.isfinite(embeddings).all(axis=1)
  if not finite.all():
    bad = np.flatnonzero(~finite)
    raise DatasetError(f"{path} has {len(bad)} embeddings with NaN or infinite values (first: "
                       f"row {bad[0]}, key {keys[bad[0]]!r}): {fix}.")
  rows_by_class: dict[str, list[int]] = {}
  seen: dict[str, int] = {}
  for row, key in enumerate(keys):
    parsed = parse_key(key)
    if parsed is None:
      raise DatasetError(f"Key {key!r} (row {row}) of {path} is not '<id>-<class>-<class>_"
                         f"<image file>' (three parts separated by '-'): {fix}.")
    cls, image_file = parsed
    if image_file.split("_")[0] != cls:
      raise DatasetError(f"Key {key!r} (row {row}) of {path} gives class {cls!r} but image "
                         f"{image_file!r} of class {image_file.split('_')[0]!r}: {fix}.")
    if key in seen:
      raise DatasetError(f"Key {key!r} of {path} appears twice (rows {seen[key]} and {row}): "
                         f"{fix}.")
    seen[key] = row
    rows_by_class.setdefault(cls, []).append(row)
  return EmbeddingSplit(path=path, embeddings=np.asarray(embeddings, np.float32),
                        class_names=list(rows_by_class),
                        class_rows=[np.asarray(r, np.int64) for r in rows_by_class.values()])


def check_same_dimension(splits: Sequence[EmbeddingSplit]) -> None:
  """Raises DatasetError if the splits' embeddings differ in dimension (a model of one split's
  dimension cannot read the others: they come from different backbones)."""
  dims = {split.embedding_dim for split in splits}
  if len(dims) > 1:
    listed = ", ".join(f"{s.path}: {s.embedding_dim}" for s in splits)
    raise DatasetError(f"Embedding dimensions differ between splits ({listed}): write all "
                       "splits with the same backbone.")


def _check_name(kind: str, name: Any, row: int, forbidden: str) -> str:
  if not isinstance(name, str) or not name or any(c in name for c in forbidden):
    spelled = " or ".join(repr(c) for c in forbidden)
    raise DatasetError(f"{kind} {name!r} (row {row}) must be a non-empty string without "
                       f"{spelled}, or its key would not parse back: rename it.")
  return name


def write_embedding_split(path: str | os.PathLike, embeddings: np.ndarray,
                          class_names_per_row: Sequence[str],
                          image_names_per_row: Sequence[str],
                          ids: Sequence[Any] | None = None) -> str:
  """Writes one split in LEO's format to `path` atomically; returns it. `embeddings`: [N, D]
  finite floats (stored float32); per row a class without "-" or "_" (e.g. "n01532829"), an
  image file name without "-" (e.g. "00001234.JPEG") and an id (default 0..N-1) without "-".
  DatasetError names a name or array that would not read back."""
  path = os.fspath(path)
  embeddings = np.asarray(embeddings)
  count = len(embeddings)
  if embeddings.ndim != 2 or embeddings.dtype.kind not in "fiu" or 0 in embeddings.shape:
    raise DatasetError(f"Embeddings to write to {path} must be a non-empty 2-D float array, got "
                       f"{embeddings.dtype} of shape {embeddings.shape}.")
  if not np.isfinite(embeddings).all():
    raise DatasetError(f"Embeddings to write to {path} hold NaN or infinite values: fix the "
                       "backbone that computed them.")
  ids = list(range(count)) if ids is None else list(ids)
  if not len(class_names_per_row) == len(image_names_per_row) == len(ids) == count:
    raise DatasetError(f"Writing {path}: {count} embeddings but {len(class_names_per_row)} "
                       f"class names, {len(image_names_per_row)} image names and {len(ids)} "
                       "ids (one each per row).")
  keys, labels, class_ids, seen = [], [], {}, set()
  for row, (cls, image, id_) in enumerate(zip(class_names_per_row, image_names_per_row, ids)):
    _check_name("Class name", cls, row, "-_")
    _check_name("Image name", image, row, "-")
    _check_name("Id", str(id_), row, "-")
    key = make_key(id_, cls, image)
    if key in seen:
      raise DatasetError(f"Writing {path}: key {key!r} (row {row}) repeats an earlier row: "
                         "give every row its own id or image name.")
    seen.add(key)
    keys.append(key)
    labels.append(class_ids.setdefault(cls, len(class_ids)))
  data = {"embeddings": embeddings.astype(np.float32), "labels": np.asarray(labels, np.int64),
          "keys": np.asarray(keys, dtype=str)}
  with atomic.path_for(path) as tmp:
    with open(tmp, "wb") as f:
      pickle.dump(data, f, protocol=2)
      f.flush()
      os.fsync(f.fileno())
  return path


__all__ = ["CROPS", "DATASETS", "SPLITS", "EmbeddingSplit", "check_same_dimension",
           "embedding_path", "load_embedding_split", "make_key", "parse_key",
           "write_embedding_split"]
