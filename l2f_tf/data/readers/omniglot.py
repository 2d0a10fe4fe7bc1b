"""Reader for Omniglot with the usual character split and rotated extra classes.

Omniglot ships as ``images_background/`` and ``images_evaluation/``, each
``<alphabet>/<character>/*.png`` (20 drawings of 105 x 105 pixels); few-shot work re-splits
all 1623 characters, here deterministically on every platform: the sorted names
``"<alphabet>/<character>"`` of both folders are shuffled with
``np.random.RandomState(seed).permutation`` (numpy keeps that legacy stream stable; seed 1 by
default), then the first ``num_train`` (1100) are train, the next ``num_val`` (100) val and the
rest (423) test: MAML's 1200 / 423 protocol with 100 training characters held out.

Each character gives one class per counter-clockwise rotation (0, 90, 180, 270), named
``"<alphabet>/<character>/rot090"`` etc., as in Vinyals et al. and MAML. Images default to
28 x 28 grayscale (``channels=3`` for RGB), black (0) strokes on white (255).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from l2f_tf.data.readers import common

FORMAT = "omniglot"
FOLDERS = ("images_background", "images_evaluation")
DEFAULT_IMAGE_SIZE = (28, 28)
DEFAULT_CHANNELS = 1
ROTATIONS = (0, 90, 180, 270)


def is_omniglot_layout(root: str) -> bool:
  """True if `root` has ``images_background/`` or ``images_evaluation/``."""
  return any(os.path.isdir(os.path.join(root, folder)) for folder in FOLDERS)


def list_characters(root: str) -> dict[str, str]:
  """Maps every ``"<alphabet>/<character>"`` of both folders to its directory, sorted;
  DatasetError if a folder is missing or an alphabet appears in both folders."""
  characters = {}
  for folder in FOLDERS:
    folder_path = os.path.join(root, folder)
    if not os.path.isdir(folder_path):
      raise common.DatasetError(
          f"{folder_path} does not exist: Omniglot needs both images_background/ and "
          "images_evaluation/ because the split is drawn from all characters.")
    for alphabet in sorted(os.listdir(folder_path)):
      alphabet_path = os.path.join(folder_path, alphabet)
      if not os.path.isdir(alphabet_path):
        continue
      for character in sorted(os.listdir(alphabet_path)):
        character_path = os.path.join(alphabet_path, character)
        if not os.path.isdir(character_path):
          continue
        name = f"{alphabet}/{character}"
        if name in characters:
          raise common.DatasetError(
              f"Character {name!r} is in both {characters[name]} and "
              f"{character_path}: keep one copy of each alphabet.")
        characters[name] = character_path
  return dict(sorted(characters.items()))


def split_characters(names: Sequence[str], split: str, seed: int = 1, num_train: int = 1100,
                     num_val: int = 100) -> list[str]:
  """The sorted character names (of all `names`, in any order) of `split` under the rule of
  the module docstring; DatasetError if `num_train` + `num_val` leave none for test."""
  split = common.normalize_split(split)
  names = sorted(names)
  if len(names) <= num_train + num_val:
    raise common.DatasetError(
        f"Only {len(names)} Omniglot characters found, but num_train={num_train} + "
        f"num_val={num_val} leaves none for test: check that images_background/ and "
        "images_evaluation/ are complete (1623 characters) or lower num_train/num_val.")
  shuffled = [names[i] for i in np.random.RandomState(seed).permutation(len(names))]
  bounds = {"train": (0, num_train), "val": (num_train, num_train + num_val),
            "test": (num_train + num_val, len(names))}[split]
  return sorted(shuffled[bounds[0]:bounds[1]])


def read_split(root: str, split: str, image_size: Sequence[int] | None = None,
               channels: int | None = None, seed: int = 1, num_train: int = 1100,
               num_val: int = 100, rotations: Sequence[int] = ROTATIONS) -> common.ClassIndex:
  """One Omniglot split (see `split_characters`), a class per character and rotation
  (`rotations`: multiples of 90 degrees) in that order, of file paths or `common.Rotated`s;
  DatasetError if the folders are missing or too small for the split."""
  if any(degrees % 90 for degrees in rotations):
    raise common.DatasetError(f"Omniglot rotations must be multiples of 90 degrees, got "
                              f"{tuple(rotations)}.")
  split = common.normalize_split(split)
  characters = list_characters(root)
  classes = {}
  for name in split_characters(list(characters), split, seed, num_train, num_val):
    paths = common.list_images(characters[name])
    for degrees in rotations:
      sources = paths if degrees % 360 == 0 else [common.Rotated(p, degrees) for p in paths]
      classes[f"{name}/rot{degrees % 360:03d}"] = sources
  return common.ClassIndex(classes, root=root, split=split, format_name=FORMAT,
                           image_size=tuple(image_size or DEFAULT_IMAGE_SIZE),
                           channels=channels or DEFAULT_CHANNELS)
