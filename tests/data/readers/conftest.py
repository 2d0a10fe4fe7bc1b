"""Fixtures for the reader tests: image writers and Python-2-style pickles."""

import io
import pickle
import struct

import pytest
from PIL import Image

from tests import fake_images


class _Py2Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Writes ``bytes`` and ``str`` as Python 2 ``str`` (BINSTRING), as Python 2 pickles do.

  Python 3 cannot load such a pickle with its default ASCII decoding when a string holds
  non-ASCII bytes (PNG data, numpy buffers): exactly the case ``encoding="latin1"`` fixes.
  """

  dispatch = pickle._Pickler.dispatch.copy()  # pylint: disable=protected-access

  def save_py2_str(self, obj):
    data = obj.encode("ascii") if isinstance(obj, str) else obj
    if len(data) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
    else:
      self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

  dispatch[bytes] = save_py2_str
  dispatch[str] = save_py2_str


def py2_pickle_bytes(obj) -> bytes:
  """Pickles `obj` at protocol 2 the way Python 2 with numpy 1.x would have."""
  buffer = io.BytesIO()
  _Py2Pickler(buffer, protocol=2).dump(obj)
  # Python 2 / numpy 1.x named the module numpy.core, not numpy._core.
  return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


@pytest.fixture
def write_py2_pickle():
  """Returns write(path, obj, needs_latin1=True): writes a Python 2 protocol-2 pickle.

  With `needs_latin1`, first checks that Python 3's default decoding really fails on it.
  """

  def write(path, obj, needs_latin1=True):
    data = py2_pickle_bytes(obj)
    if needs_latin1:
      with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)
    path.write_bytes(data)
    return path

  return write


def _solid_color(index: int) -> tuple:
  # For indices < 100, any two colours differ by >= 22 levels in some channel, far above
  # the JPEG error on a flat image, so a test can tell which image it decoded.
  return (16 + (index * 37) % 224, 16 + (index * 71) % 224, 16 + (index * 113) % 224)


@pytest.fixture
def solid_color():
  """Returns color(index) -> (r, g, b): the colour `write_solid_image` uses for `index`."""
  return _solid_color


@pytest.fixture
def write_solid_image():
  """Returns write(path, index, size=(84, 84)): a solid-colour image, format from suffix."""

  def write(path, index, size=(84, 84)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size[1], size[0]), _solid_color(index)).save(path)
    return path

  return write


@pytest.fixture
def encode_png():
  """Returns encode(pixels) -> PNG bytes of a uint8 H x W (x 3) array."""
  return fake_images.encode_png
