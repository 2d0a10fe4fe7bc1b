"""Tiny image datasets written by tests in the real on-disk layouts."""

import io
import os

import numpy as np
from PIL import Image


def coded_image(split: int, class_id: int, image_id: int, size: int = 12) -> np.ndarray:
  """An RGB image whose pixels encode (split, class, image), plus a class-specific pattern.

  Pixel (0, 0) holds (split, class, image) exactly (PNG is lossless), so a test can read back
  which image an episode used; the rest is a class-dependent stripe pattern a network can learn.
  """
  rng = np.random.default_rng([split, class_id, image_id])
  image = rng.integers(0, 40, size=(size, size, 3)).astype(np.uint8)
  period = 2 + class_id % 5
  image[:, ::period, class_id % 3] += 150 + (class_id * 7) % 60
  image[0, 0] = (split, class_id, image_id)
  return image


def write_class_folders(root: str, classes=(6, 5, 5), images_per_class: int = 8,
                        size: int = 12, extension: str = ".png") -> str:
  """miniImageNet class-folder layout: <root>/{train,val,test}/<wnid>/<image><extension>."""
  for s, (split, count) in enumerate(zip(("train", "val", "test"), classes)):
    for c in range(count):
      folder = os.path.join(root, split, f"n{s:02d}{c:06d}")
      os.makedirs(folder, exist_ok=True)
      for i in range(images_per_class):
        Image.fromarray(coded_image(s, c, i, size)).save(
            os.path.join(folder, f"n{s:02d}{c:06d}_{i:04d}{extension}"))
  return root


def encode_png(pixels: np.ndarray) -> bytes:
  """PNG bytes of a uint8 H x W (x 3) array."""
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def decode_codes(images: np.ndarray):
  """(split, class, image) codes of uint8 / [0, 255] float images [..., H, W, 3]."""
  pixel = np.rint(np.asarray(images)[..., 0, 0, :]).astype(int)
  return pixel
