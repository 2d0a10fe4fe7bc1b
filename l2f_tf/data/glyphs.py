"""Glyphs: a download-free, Omniglot-like few-shot dataset of characters rendered from the
DejaVu fonts matplotlib ships, so the vision pipeline runs out of the box (CI, a laptop).

Each class is one character of `SCRIPTS` (letters, digits, symbols without a Unicode
decomposition) that every font of `FONT_FILES` covers, whose ink is not tiny
(`_MIN_INK_FRACTION` of the em) and which, scaled into a 24 x 24 box, is no near-duplicate
(Tanimoto distance below `_MIN_DISTANCE`, averaged over DejaVu Sans and Serif) of an earlier
one: Latin "A", Greek "Alpha" and Cyrillic "A" give one class, named after the first in script
order, ``<script>_U<hex code point>`` (``greek_U03B1``). `ensure_glyphs` draws `num_classes`
(600) of them and splits them into disjoint train/val/test classes (60/15/25 %) with one seeded
shuffle.

An image is the character in one of the 12 fonts with a random extra stroke width and affine
jitter (the `_MAX_*` constants) that never pushes ink off the canvas, its ink box filling ~80 %
of the canvas, rendered at 4x `image_size` and box-downsampled: grayscale PNG, black (0) on
white (255) as Omniglot. Every draw comes from ``numpy.random.default_rng`` seeded by (seed,
code point, image index) or (seed, purpose): the same arguments give byte-identical files
(with the same numpy, Pillow/FreeType and fonts; the fonts' names and sizes are in the key).

On disk: ``<root>/{train,val,test}/<class>/<nnnn>.png`` (the ``mini_imagenet_folders`` layout)
and ``glyphs.json``, a cached folder (`l2f_tf.atomic.cached_folder`). The number of classes and
the timings are in docs/few_shot_classification.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import unicodedata
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageDraw, ImageFont

from l2f_tf import atomic

# Bump when the character selection, rendering or layout changes: old caches are then unused.
VERSION = 1
SPLITS = ("train", "val", "test")
METADATA_FILE = "glyphs.json"
CACHE_ENV_VAR = "L2F_TF_CACHE"
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256

FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
)

# (script, inclusive code point ranges), in priority order: of near-identical characters the
# one of the earliest script (then the lowest code point) is kept.
SCRIPTS = (
    ("latin", ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x0250, 0x02AF),
               (0x1E00, 0x1EFF), (0x2C60, 0x2C7F), (0xA720, 0xA7FF))),
    ("greek", ((0x0370, 0x03FF), (0x1F00, 0x1FFF))),
    ("cyrillic", ((0x0400, 0x052F),)),
    ("armenian", ((0x0530, 0x058F),)),
    ("georgian", ((0x10A0, 0x10FF), (0x2D00, 0x2D2F))),
    ("digits", ((0x0030, 0x0039),)),
    ("math", ((0x2200, 0x22FF), (0x27C0, 0x27EF))),
    ("arrows", ((0x2190, 0x21FF), (0x27F0, 0x27FF))),
    ("shapes", ((0x25A0, 0x25FF),)),
    ("symbols", ((0x2100, 0x214F), (0x2600, 0x26FF))),
)
# Letters, decimal digits and math/other symbols; no marks, spaces or punctuation.
_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo", "Nd", "Sm", "So"})
_REFERENCE_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf")
_REFERENCE_FONT_SIZE = 96
_DEDUP_SIZE = 24  # Side of the box near-duplicates are compared in.
_MIN_DISTANCE = 0.12  # Tanimoto distance under which two characters count as the same.
_MIN_INK_FRACTION = 0.2  # Larger ink side / font size under which a glyph is "tiny".

# Rendering: canvas = _SUPERSAMPLE * image_size, font size = canvas side.
_SUPERSAMPLE = 4
_FILL = 0.8  # Larger side of the ink box / canvas side, before the scale jitter.
_MARGIN = 0.04  # Ink stays this fraction of the canvas away from each edge.
_MAX_ROTATION_DEGREES = 15.0
_SCALE_RANGE = (0.8, 1.0)
_MAX_ASPECT_JITTER = 0.1
_MAX_SHEAR = 0.2
_MAX_TRANSLATION = 0.08
_MAX_STROKE_FRACTION = 0.02


@dataclasses.dataclass(frozen=True)
class Glyph:
  """One class of the dataset: a character and the script block it was taken from."""

  char: str
  script: str

  @property
  def codepoint(self) -> int:
    return ord(self.char)

  @property
  def name(self) -> str:
    """Filesystem-safe class (folder) name, e.g. ``greek_U03B1``."""
    return f"{self.script}_U{self.codepoint:04X}"


@functools.cache
def font_paths() -> tuple[str, ...]:
  """Paths of `FONT_FILES` among matplotlib's fonts; FileNotFoundError if one is missing."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (only its data path is needed)
  folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
  paths = tuple(os.path.join(folder, name) for name in FONT_FILES)
  missing = [path for path in paths if not os.path.isfile(path)]
  if missing:
    raise FileNotFoundError(f"The glyphs dataset needs matplotlib's DejaVu fonts, but "
                            f"{', '.join(missing)} are missing: reinstall matplotlib.")
  return paths


@functools.cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(path, size)


def _render_ink(char: str, font: ImageFont.FreeTypeFont, stroke_width: int = 0) -> Image.Image:
  """Returns the character as white-on-black "L" image cropped to its ink (None if blank)."""
  left, top, right, bottom = font.getbbox(char, anchor="ls", stroke_width=stroke_width)
  pad = 2 + stroke_width
  image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
  ImageDraw.Draw(image).text((pad - left, pad - top), char, fill=255, font=font, anchor="ls",
                             stroke_width=stroke_width, stroke_fill=255)
  box = image.getbbox()
  return image.crop(box) if box else None


def _fit(ink: Image.Image, size: int, fill: float) -> Image.Image:
  """Scales `ink` (aspect kept) so its larger side is `fill` * `size`, centred in a square."""
  scale = fill * size / max(ink.size)
  # Inverse map output -> ink: x_in = (x_out - size / 2) / scale + width / 2.
  data = (1 / scale, 0, ink.size[0] / 2 - size / 2 / scale,
          0, 1 / scale, ink.size[1] / 2 - size / 2 / scale)
  return ink.transform((size, size), Image.Transform.AFFINE, data,
                       resample=Image.Resampling.BICUBIC)


def _candidates() -> list[Glyph]:
  """Letters/digits/symbols of `SCRIPTS` that every font maps, in priority order."""
  from matplotlib import ft2font  # pylint: disable=g-import-not-at-top
  covered = set.intersection(*(set(ft2font.FT2Font(path).get_charmap())
                               for path in font_paths()))
  found = []
  for script, ranges in SCRIPTS:
    for low, high in ranges:
      for codepoint in range(low, high + 1):
        char = chr(codepoint)
        if (codepoint in covered and unicodedata.category(char) in _CATEGORIES
            and not unicodedata.decomposition(char)):
          found.append(Glyph(char, script))
  return found


@functools.cache
def available_characters() -> tuple[Glyph, ...]:
  """All characters the dataset can use, in priority order, minus tiny glyphs and
  near-duplicates (see the module docstring). Computed once per process."""
  start = time.time()
  fonts = [_font(path, _REFERENCE_FONT_SIZE) for path in font_paths()
           if os.path.basename(path) in _REFERENCE_FONTS]
  box = _DEDUP_SIZE * _SUPERSAMPLE
  glyphs, vectors = [], []
  for glyph in _candidates():
    inks = [_render_ink(glyph.char, font) for font in fonts]
    if any(ink is None or max(ink.size) < _MIN_INK_FRACTION * _REFERENCE_FONT_SIZE
           for ink in inks):
      continue  # Blank or tiny (a dot, a short dash): it would be an enlarged blob.
    views = [np.asarray(_fit(ink, box, 1.0 - 2 * _MARGIN).reduce(_SUPERSAMPLE), np.float64)
             for ink in inks]
    glyphs.append(glyph)
    vectors.append(np.stack([view.ravel() / 255.0 for view in views]))
  vectors = np.stack(vectors, axis=1)  # [fonts, candidates, pixels]
  # Tanimoto distance 1 - a.b / (|a|^2 + |b|^2 - a.b) (Jaccard's for binary images), averaged
  # over the reference fonts.
  gram = np.einsum("fip,fjp->fij", vectors, vectors)
  norms = np.einsum("fii->fi", gram)
  distance = (1.0 - gram / (norms[:, :, None] + norms[:, None, :] - gram)).mean(axis=0)
  kept = []
  for i in range(len(glyphs)):
    if not kept or distance[i, kept].min() >= _MIN_DISTANCE:
      kept.append(i)
  logging.info("Glyphs: %d characters available (%d candidates drawn by every font) in %.1f s.",
               len(kept), len(glyphs), time.time() - start)
  return tuple(glyphs[i] for i in kept)


def split_sizes(num_classes: int,
                split_fractions: Sequence[float] = (0.6, 0.15, 0.25)) -> tuple[int, int, int]:
  """Numbers of (train, val, test) classes: val and test rounded half up, train the rest;
  ValueError if a split would get no class."""
  val = math.floor(split_fractions[1] * num_classes + 0.5)
  test = math.floor(split_fractions[2] * num_classes + 0.5)
  sizes = (num_classes - val - test, val, test)
  if min(sizes) < 1:
    raise ValueError(f"num_classes={num_classes} with split_fractions={tuple(split_fractions)} "
                     f"gives {dict(zip(SPLITS, sizes))} classes per split; every split needs at "
                     "least one: raise num_classes.")
  return sizes


def render_glyph(char: str, rng: np.random.Generator, image_size: int = 28) -> np.ndarray:
  """One randomly jittered instance of `char`: uint8 [image_size, image_size], ink 0 on a
  background of 255; `rng` draws the font, the stroke and the affine jitter."""
  u = rng.random(8)  # Fixed number of draws, each mapped by hand: stable across numpy versions.
  canvas = _SUPERSAMPLE * image_size
  paths = font_paths()
  font = _font(paths[min(int(u[0] * len(paths)), len(paths) - 1)], canvas)
  max_stroke = max(1, round(_MAX_STROKE_FRACTION * canvas))
  stroke = min(int(u[1] * (max_stroke + 1)), max_stroke)
  ink = _render_ink(char, font, stroke)
  if ink is None:
    raise ValueError(f"Character U+{ord(char):04X} renders blank in {font.path}.")
  angle = math.radians((2 * u[2] - 1) * _MAX_ROTATION_DEGREES)
  scale = (_SCALE_RANGE[0] + u[3] * (_SCALE_RANGE[1] - _SCALE_RANGE[0])) * _FILL * canvas / max(
      ink.size)
  aspect = 1 + (2 * u[4] - 1) * _MAX_ASPECT_JITTER
  shear = (2 * u[5] - 1) * _MAX_SHEAR
  cos, sin = math.cos(angle), math.sin(angle)
  # Forward map (ink centred at the origin -> canvas, before translation): R @ Shear @ Scale.
  forward = (np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]])
             @ np.diag([scale * aspect, scale / aspect]))
  half_w, half_h = ink.size[0] / 2, ink.size[1] / 2
  corners = forward @ np.array([[-half_w, half_w, half_w, -half_w],
                                [-half_h, -half_h, half_h, half_h]])
  extent = np.abs(corners).max(axis=1)  # Half width, half height of the jittered ink.
  allowed = canvas / 2 * (1 - 2 * _MARGIN)
  shrink = max(1.0, *(extent / allowed))
  forward, extent = forward / shrink, extent / shrink
  slack = np.minimum(allowed - extent, _MAX_TRANSLATION * canvas)
  offset = canvas / 2 + (2 * u[6:8] - 1) * slack
  inverse = np.linalg.inv(forward)
  shift = np.array([half_w, half_h]) - inverse @ offset  # ink = inverse @ out + shift.
  data = (inverse[0, 0], inverse[0, 1], shift[0], inverse[1, 0], inverse[1, 1], shift[1])
  image = ink.transform((canvas, canvas), Image.Transform.AFFINE, tuple(float(v) for v in data),
                        resample=Image.Resampling.BICUBIC)
  return 255 - np.asarray(image.reduce(_SUPERSAMPLE), dtype=np.uint8)


def default_cache_dir() -> str:
  """``$L2F_TF_CACHE`` if set, else ``~/.cache/l2f_tf``."""
  return os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache",
                                                       "l2f_tf")


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"ensure_glyphs: {name} must be an integer, got {value!r}.")  # noqa: TRY004
  if value < low or (high is not None and value > high):
    bounds = f"between {low} and {high}" if high is not None else f">= {low}"
    raise ValueError(f"ensure_glyphs: {name} must be {bounds}, got {value}.")
  return int(value)


def _check_fractions(split_fractions) -> tuple[float, float, float]:
  try:
    fractions = tuple(float(f) for f in split_fractions)
  except (TypeError, ValueError):
    fractions = ()
  if len(fractions) != 3 or not all(0 < f < 1 for f in fractions) or not math.isclose(
      sum(fractions), 1.0, abs_tol=1e-6):
    raise ValueError("ensure_glyphs: split_fractions must be three positive (train, val, test) "
                     f"fractions summing to 1, got {split_fractions!r}.")
  return fractions


def _dataset_name(params: dict) -> str:
  """Readable folder name plus a hash of every parameter, `VERSION` and the fonts' names and
  sizes (the images depend on them)."""
  classes = "all" if params["num_classes"] is None else params["num_classes"]
  return atomic.keyed_name(f"glyphs_v{VERSION}_{classes}c_{params['instances_per_class']}i_"
                           f"{params['image_size']}px_seed{params['seed']}",
                           {**params, "version": VERSION, "fonts": [
                               [os.path.basename(p), os.path.getsize(p)] for p in font_paths()]})


def _choose_splits(params: dict) -> dict[str, list[Glyph]]:
  """The characters of each split: a seeded draw of `num_classes`, split by the fractions."""
  characters = available_characters()
  num_classes = params["num_classes"]
  if num_classes is not None and num_classes > len(characters):
    raise ValueError(f"ensure_glyphs: num_classes={num_classes} exceeds the {len(characters)} "
                     f"characters available; use at most {len(characters)} (or None for all).")
  order = np.random.default_rng([params["seed"], 0]).permutation(len(characters))
  chosen = [characters[i] for i in order[:num_classes or len(characters)]]
  bounds = np.cumsum((0,) + split_sizes(len(chosen), params["split_fractions"]))
  return {split: sorted(chosen[bounds[k]:bounds[k + 1]], key=lambda g: g.name)
          for k, split in enumerate(SPLITS)}


def _write_dataset(folder: str, splits: dict[str, list[Glyph]], params: dict) -> None:
  """Renders every image of `splits` into `folder` and writes the metadata file."""
  count, seed, size = params["instances_per_class"], params["seed"], params["image_size"]
  width = max(4, len(str(count - 1)))  # File names 0000.png, 0001.png, ...
  logging.info("Rendering the glyphs dataset (%s classes; %d images of %dx%d each).",
               ", ".join(f"{s} {len(g)}" for s, g in splits.items()), count, size, size)
  for split, glyphs in splits.items():
    for glyph in glyphs:
      class_dir = os.path.join(folder, split, glyph.name)
      os.makedirs(class_dir)
      for index in range(count):
        pixels = render_glyph(glyph.char, np.random.default_rng([seed, glyph.codepoint, index]),
                              size)
        Image.fromarray(pixels).save(os.path.join(class_dir, f"{index:0{width}d}.png"))
  atomic.write_metadata(folder, METADATA_FILE, params, version=VERSION, fonts=list(FONT_FILES),
                        splits={split: [{"class": g.name, "char": g.char, "unicode_name":
                                         unicodedata.name(g.char, "")} for g in glyphs]
                                for split, glyphs in splits.items()})


def ensure_glyphs(cache_dir: str | os.PathLike | None = None, num_classes: int | None = 600,
                  instances_per_class: int = 20, image_size: int = 28, seed: int = 0,
                  split_fractions: Sequence[float] = (0.6, 0.15, 0.25)) -> str:
  """Returns the root of the glyphs dataset with these parameters, generating it if needed.

  `num_classes` characters (None: all) of `available_characters()`, split by
  `split_fractions` (see `split_sizes`), each with `instances_per_class` grayscale images of
  `image_size` squared; `seed` seeds every draw. The root in `cache_dir` (None:
  `default_cache_dir()`) is named by a hash of every argument but `cache_dir`, `VERSION` and the
  fonts. ValueError for an invalid argument (too many classes: the message gives the maximum)."""
  if num_classes is not None:
    num_classes = _check_int("num_classes", num_classes, 3)
  params = {
      "num_classes": num_classes,
      "instances_per_class": _check_int("instances_per_class", instances_per_class, 1),
      "image_size": _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
      "seed": _check_int("seed", seed, 0),
      "split_fractions": list(_check_fractions(split_fractions)),
  }
  if num_classes is not None:
    split_sizes(num_classes, params["split_fractions"])
  cache_dir = os.path.abspath(os.path.expanduser(os.fspath(cache_dir or default_cache_dir())))
  return atomic.cached_folder(os.path.join(cache_dir, _dataset_name(params)), METADATA_FILE,
                              params, lambda folder: _write_dataset(
                                  folder, _choose_splits(params), params), "glyphs dataset")
