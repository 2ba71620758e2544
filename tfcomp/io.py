"""Reading images exactly and writing files atomically.

`read_image` returns the stored samples, never silently converted: uint8 or uint16 arrays
of shape [H, W, C] with C in 1..4 (gray, gray+alpha, RGB, RGBA). PNG and TIFF are read with
imagecodecs, which keeps 16-bit samples (Pillow truncates 48-bit RGB PNGs to 8 bits);
other formats go through Pillow, limited to modes it represents exactly.
"""
import os
import struct
import tempfile

import imagecodecs
import numpy as np
from PIL import Image

from tfcomp import container

# Pillow modes that map exactly onto [H, W, C] uint8/uint16 samples.
_PIL_MODES = {"1": "L", "L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA",
              "I;16": None, "I;16L": None, "I;16B": None, "I": None}


# The files taken from a folder of images (`tfcomp compress`, datasets): the usual formats
# read_image reads.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
  """An image cannot be read or is of a kind tfcomp does not code."""


def _check(array, path):
  if array.ndim == 2:
    array = array[:, :, None]
  if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
    raise ImageError(f"{path}: unsupported image layout {array.shape}; expected gray, "
                     "gray+alpha, RGB or RGBA")
  if array.dtype not in (np.uint8, np.uint16):
    raise ImageError(f"{path}: unsupported sample type {array.dtype}; expected 8 or 16 bits "
                     "per sample")
  if array.shape[0] < 1 or array.shape[1] < 1:
    raise ImageError(f"{path}: image is empty ({array.shape[0]}x{array.shape[1]})")
  return np.ascontiguousarray(array)


def _read_with_pillow(path):
  try:
    with Image.open(path) as im:
      _check_size(path, *im.size)
      im.load()
      if getattr(im, "n_frames", 1) > 1:
        raise ImageError(f"{path}: has {im.n_frames} frames; only single images are coded")
      mode = im.mode
      if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
      if mode not in _PIL_MODES:
        raise ImageError(f"{path}: Pillow mode {mode!r} is not supported (supported: gray, "
                         "gray+alpha, RGB, RGBA, 8 or 16 bits); convert the image first")
      if _PIL_MODES[mode] is None:
        array = np.asarray(im)
        if array.min() < 0 or array.max() > 65535:
          raise ImageError(f"{path}: samples exceed 16 bits")
        return array.astype(np.uint16)
      return np.asarray(im.convert(_PIL_MODES[mode]))
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageError(f"{path}: cannot read image: {e}") from None


def _check_size(path, width, height):
  """Refuses images beyond the container's caps before anything is decoded."""
  try:
    container.Geometry(height, width, 1).validate()
  except container.FormatError as e:
    raise ImageError(f"{path}: {e}") from None


def _declared_size(path, head, data):
  """(width, height) from the file header, read without decoding the pixels."""
  if head.startswith(b"\x89PNG"):
    if len(data) < 24 or data[12:16] != b"IHDR":
      raise ImageError(f"{path}: cannot decode image: truncated PNG header")
    return struct.unpack(">II", data[16:24])
  try:
    with Image.open(path) as im:  # reads the TIFF directory only
      return im.size
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageError(f"{path}: cannot decode image: {e}") from None


def read_image(path):
  """Reads an image file into a uint8/uint16 [H, W, C] array of its exact samples.

  Images larger than the container's caps (tfcomp.container.MAX_SIDE per side,
  MAX_PIXELS in all) are refused before their pixels are decoded.
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      head = f.read(8)
  except OSError as e:
    raise ImageError(f"{path}: cannot open: {e.strerror}") from None
  if head.startswith(b"\x89PNG\r\n\x1a\n") or head[:4] in (b"II*\x00", b"MM\x00*"):
    decode = imagecodecs.png_decode if head.startswith(b"\x89PNG") else imagecodecs.tiff_decode
    with open(path, "rb") as f:
      data = f.read()
    _check_size(path, *_declared_size(path, head, data))
    try:
      array = decode(data)
    except Exception as e:  # imagecodecs raises codec-specific error classes
      raise ImageError(f"{path}: cannot decode image: {e}") from None
    return _check(array, path)
  return _check(_read_with_pillow(path), path)


def encode_png(image):
  """PNG bytes of a uint8/uint16 [H, W, C] array (all bit depths and channel counts)."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[:, :, 0]
  return imagecodecs.png_encode(image, level=6)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def check_writable(path):
  """Raises OSError naming the problem if `path` cannot be written as a new file.

  Callers check before the work, so a long compression does not end in a failed write.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise OSError(f"{path}: is a directory; name the output file")
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise OSError(f"{path}: cannot write: directory {os.path.dirname(path)!r} does not exist")
  if not os.access(directory, os.W_OK | os.X_OK):
    raise OSError(f"{path}: cannot write: directory {os.path.dirname(path) or '.'!r} is not "
                  "writable")


def write_atomic(path, data):
  """Writes bytes to `path` through a temporary file, so no partial file is ever left."""
  path = os.fspath(path)
  check_writable(path)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".tfcomp-", suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise


def write_png(path, image):
  """Writes `image` as a PNG, atomically."""
  write_atomic(path, encode_png(image))
