"""Tests of the rendered glyphs dataset on a tiny configuration (30 classes x 4 images)."""

import itertools
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from l2f_tf import atomic
from l2f_tf.data import glyphs, readers

SMALL = {"num_classes": 30, "instances_per_class": 4}
SMALL_SPLIT_SIZES = {"train": 17, "val": 5, "test": 8}  # 30 x (0.6, 0.15, 0.25), half up.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def files_of(root):
  """Maps each file's path relative to `root` to its bytes."""
  found = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, root)] = f.read()
  return found


def _images(index):
  """Maps class name -> float array [instances, H, W] of the split's images."""
  return {name: np.stack([index.load_image(s)[..., 0] for s in index[name]]).astype(np.float32)
          for name in index.class_names}


def _run_python(code, cache_dir):
  """Starts `code` in a fresh interpreter (repo on the path) with `cache_dir` as the cache."""
  env = {**os.environ, "PYTHONPATH": REPO, glyphs.CACHE_ENV_VAR: str(cache_dir)}
  return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
  return glyphs.ensure_glyphs(tmp_path_factory.mktemp("cache"), **SMALL)


def test_available_characters_are_distinct_and_plenty():
  characters = glyphs.available_characters()
  names = [g.name for g in characters]
  assert len(characters) >= 600  # The default num_classes must be satisfiable.
  assert len(set(names)) == len(names) and len({g.char for g in characters}) == len(characters)
  assert all(re.fullmatch(r"[a-z]+_U[0-9A-F]{4,5}", name) for name in names)
  assert {g.script for g in characters} == {script for script, _ in glyphs.SCRIPTS}
  chars = {g.char for g in characters}
  # Look-alikes collapse onto the first script's character; combining marks and spaces are out.
  assert "A" in chars and "\u0391" not in chars and "\u0410" not in chars  # Greek, Cyrillic A.
  assert "\u0436" in chars  # Cyrillic zhe has no Latin look-alike.
  assert not chars & {" ", "\u0301", "\u00a0"}


def test_layout_is_read_as_class_folders(small_root):
  assert readers.detect_format(small_root) == "mini_imagenet_folders"
  assert os.path.basename(small_root).startswith(f"glyphs_v{glyphs.VERSION}_30c_4i_28px_seed0_")
  available = {g.name for g in glyphs.available_characters()}
  seen = set()
  for split, size in SMALL_SPLIT_SIZES.items():
    index = readers.load_split(small_root, split, image_size=(28, 28), channels=1)
    assert len(index) == size
    assert set(index.class_names) <= available and not seen & set(index.class_names)
    seen |= set(index.class_names)
    for name in index.class_names:
      assert [os.path.basename(s) for s in index[name]] == [f"{i:04d}.png" for i in range(4)]
    image = index.load_image(index[index.class_names[0]][0])
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8
  assert len(seen) == 30


def test_metadata_lists_the_splits(small_root):
  with open(os.path.join(small_root, glyphs.METADATA_FILE), encoding="utf-8") as f:
    metadata = json.load(f)
  assert metadata["version"] == glyphs.VERSION
  assert metadata["parameters"]["num_classes"] == 30
  for split, size in SMALL_SPLIT_SIZES.items():
    entries = metadata["splits"][split]
    assert len(entries) == size
    assert sorted(os.listdir(os.path.join(small_root, split))) == [e["class"] for e in entries]
    assert all(e["class"].endswith(f"_U{ord(e['char']):04X}") for e in entries)


def test_images_are_strokes_that_vary_within_and_differ_across_classes(small_root):
  index = readers.load_split(small_root, "train", image_size=(28, 28), channels=1)
  images = _images(index)
  for name, stack in images.items():
    ink = (stack < 128).mean(axis=(1, 2))
    assert np.all(ink > 0.02) and np.all(ink < 0.6), (name, ink)  # Not blank, not a blob.
    assert stack[:, [0, -1], :].min() > 200 and stack[:, :, [0, -1]].min() > 200  # Margins.
    for a, b in itertools.combinations(stack, 2):
      assert np.abs(a - b).mean() > 1, name  # Instances of one class differ.
  within = np.mean([np.abs(a - b).mean() for stack in images.values()
                    for a, b in itertools.combinations(stack, 2)])
  between = np.mean([np.abs(a - b).mean() for s, t in itertools.combinations(images.values(), 2)
                     for a in s for b in t])
  assert between > 1.2 * within, (between, within)


def test_same_arguments_give_identical_files_and_another_seed_differs(small_root, tmp_path):
  again = glyphs.ensure_glyphs(tmp_path / "a", **SMALL)
  assert os.path.basename(again) == os.path.basename(small_root)
  assert files_of(again) == files_of(small_root)
  other = glyphs.ensure_glyphs(tmp_path / "b", seed=1, **SMALL)
  assert os.path.basename(other) != os.path.basename(small_root)
  files, other_files = files_of(small_root), files_of(other)
  assert set(other_files) != set(files)  # Other characters and splits.
  common = [p for p in other_files if p.endswith(".png") and p in files]
  assert all(other_files[p] != files[p] for p in common)


def test_other_parameters_get_their_own_root(small_root, tmp_path):
  root = glyphs.ensure_glyphs(tmp_path, num_classes=12, instances_per_class=2, image_size=20)
  assert root != small_root and os.path.basename(root).startswith(
      f"glyphs_v{glyphs.VERSION}_12c_2i_20px_seed0_")
  index = readers.load_split(root, "val", image_size=(20, 20), channels=1)
  assert index.load_image(index[index.class_names[0]][0]).shape == (20, 20, 1)
  with_fractions = glyphs.ensure_glyphs(tmp_path, num_classes=12, instances_per_class=2,
                                        image_size=20, split_fractions=(0.5, 0.25, 0.25))
  assert with_fractions != root
  assert [len(os.listdir(os.path.join(with_fractions, s))) for s in glyphs.SPLITS] == [6, 3, 3]


def test_second_call_reuses_the_root(tmp_path, monkeypatch):
  root = glyphs.ensure_glyphs(tmp_path, **SMALL)
  image = os.path.join(root, "train", min(os.listdir(os.path.join(root, "train"))), "0000.png")
  stamps = os.stat(root).st_mtime_ns, os.stat(image).st_mtime_ns

  def fail(*args, **kwargs):
    raise AssertionError("the dataset was generated again")

  monkeypatch.setattr(glyphs, "_write_dataset", fail)
  assert glyphs.ensure_glyphs(str(tmp_path), **SMALL) == root
  assert (os.stat(root).st_mtime_ns, os.stat(image).st_mtime_ns) == stamps
  assert os.listdir(tmp_path) == [os.path.basename(root)]


def test_cache_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
  monkeypatch.setenv(glyphs.CACHE_ENV_VAR, str(tmp_path / "env"))
  assert glyphs.default_cache_dir() == str(tmp_path / "env")
  root = glyphs.ensure_glyphs(num_classes=8, instances_per_class=1)
  assert os.path.dirname(root) == str(tmp_path / "env")
  monkeypatch.delenv(glyphs.CACHE_ENV_VAR)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert glyphs.default_cache_dir() == str(tmp_path / "home" / ".cache" / "l2f_tf")


def test_failed_generation_leaves_nothing_and_the_next_call_works(tmp_path, monkeypatch):
  original, calls = glyphs.render_glyph, []

  def render_then_fail(*args, **kwargs):
    calls.append(1)
    if len(calls) > 50:
      raise KeyboardInterrupt  # Like Ctrl-C halfway through.
    return original(*args, **kwargs)

  monkeypatch.setattr(glyphs, "render_glyph", render_then_fail)
  with pytest.raises(KeyboardInterrupt):
    glyphs.ensure_glyphs(tmp_path, **SMALL)
  assert os.listdir(tmp_path) == []
  monkeypatch.setattr(glyphs, "render_glyph", original)
  root = glyphs.ensure_glyphs(tmp_path, **SMALL)
  assert sum(len(readers.load_split(root, s, channels=1)) for s in glyphs.SPLITS) == 30


def test_leftover_of_a_killed_generation_is_ignored_and_removed(small_root, tmp_path):
  name = os.path.basename(small_root)
  finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
  dead_pid = int(finished.stdout)
  dead = pathlib.Path(atomic.partial_name(str(tmp_path / name), dead_pid))
  live = pathlib.Path(atomic.partial_name(str(tmp_path / name)))
  for partial in (dead, live):
    (partial / "train" / "latin_U0041").mkdir(parents=True)
    (partial / "train" / "latin_U0041" / "0000.png").write_bytes(b"truncated")
  root = glyphs.ensure_glyphs(tmp_path, **SMALL)
  assert files_of(root) == files_of(small_root)
  assert not dead.exists()  # Its process is gone: removed.
  assert live.exists()  # Its process may still be writing: kept.


def test_losing_the_race_to_another_process_uses_its_root(small_root, tmp_path, monkeypatch):
  original = glyphs._write_dataset  # pylint: disable=protected-access
  final = tmp_path / os.path.basename(small_root)

  def write_while_another_process_finishes(folder, splits, params):
    original(folder, splits, params)
    original(str(final), splits, params)  # The other process renames its copy first.

  monkeypatch.setattr(glyphs, "_write_dataset", write_while_another_process_finishes)
  assert glyphs.ensure_glyphs(tmp_path, **SMALL) == str(final)
  assert os.listdir(tmp_path) == [final.name]  # This process's copy is discarded.
  assert files_of(final) == files_of(small_root)


def test_two_processes_generating_at_once(small_root, tmp_path):
  code = ("from l2f_tf.data import glyphs\n"
          "print(glyphs.ensure_glyphs(num_classes=30, instances_per_class=4))\n")
  processes = [_run_python(code, tmp_path) for _ in range(2)]
  outputs = [p.communicate(timeout=120) for p in processes]
  for process, (out, err) in zip(processes, outputs):
    assert process.returncode == 0, err
  roots = {out.strip() for out, _ in outputs}
  assert roots == {str(tmp_path / os.path.basename(small_root))}
  assert os.listdir(tmp_path) == [os.path.basename(small_root)]
  assert files_of(roots.pop()) == files_of(small_root)


def test_does_not_import_tensorflow(tmp_path):
  code = ("import sys\nfrom l2f_tf.data import glyphs\n"
          "glyphs.render_glyph('A', __import__('numpy').random.default_rng(0))\n"
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
  process = _run_python(code, tmp_path)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 0, err


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 2}, "num_classes must be >= 3"),
    ({"num_classes": 3}, "every split needs at least one"),
    ({"num_classes": 2.5}, "num_classes must be an integer"),
    ({"num_classes": True}, "num_classes must be an integer"),
    ({"instances_per_class": 0}, "instances_per_class must be >= 1"),
    ({"image_size": 4}, "image_size must be between 8 and 256"),
    ({"image_size": "28"}, "image_size must be an integer"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"split_fractions": (0.5, 0.5)}, "three positive"),
    ({"split_fractions": (0.6, 0.3, 0.3)}, "summing to 1"),
    ({"split_fractions": (1.0, 0.0, 0.0)}, "three positive"),
])
def test_bad_arguments_raise(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    glyphs.ensure_glyphs(tmp_path, **{**SMALL, **kwargs})
  assert not os.path.exists(tmp_path) or os.listdir(tmp_path) == []


def test_too_many_classes_names_the_maximum(tmp_path):
  maximum = len(glyphs.available_characters())
  with pytest.raises(ValueError, match=f"use at most {maximum}"):
    glyphs.ensure_glyphs(tmp_path, num_classes=maximum + 1, instances_per_class=1)
  assert os.listdir(tmp_path) == []
