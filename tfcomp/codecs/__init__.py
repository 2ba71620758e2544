"""The codec contract between model families, the file format and the command line.

A `Codec` turns an image into named byte sections and back. `compress` / `decompress`
wrap those sections in the container (tfcomp.container) with the model's name and weights
hash, so a file always names the exact model that can read it.

    image --Codec.compress--> sections --container.write--> bytes
    bytes --container.read--> sections --Codec.decompress--> image
"""
import abc
import re
import zlib

import numpy as np

from tfcomp import container

# Lossless files carry a CRC-32 of the pixels, so that a decoder that does not reproduce the
# encoder's probabilities exactly fails loudly instead of returning a wrong image.
PIXEL_CRC_SECTION = "pixel_crc32"


def pixel_crc(image):
  """The PIXEL_CRC_SECTION of `image`: the CRC-32 of its bytes in C order, 4 bytes LE."""
  return zlib.crc32(np.ascontiguousarray(image).tobytes()).to_bytes(4, "little")


# Files are coded on the CPU, even where TensorFlow sees a GPU: the exact arithmetic of
# tfcomp.exact needs float32 operations that round as IEEE specifies, and GPU convolutions
# may run in TF32 or through FFT and Winograd algorithms, which do not.
ON_CPU = "/CPU:0"
# How messages name an image of C channels.
CHANNEL_KINDS = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


class UnsupportedImageError(ValueError):
  """A codec cannot code this kind of image; the message says why and what to do."""


class Codec(abc.ABC):
  """Base class of every codec in the zoo.

  Attributes:
    name: zoo name written into files.
    lossless: whether `decompress(compress(x))` equals x exactly.
  """
  name = None
  lossless = True
  refines = False  # whether compress takes refine_steps (encoder-side latent fitting)
  efforts = ()  # the effort levels compress(image, effort=N) takes, if any
  default_effort = None  # the one compress uses without an effort

  @property
  @abc.abstractmethod
  def weights_hash(self):
    """16 bytes identifying the exact weights and tables of this model."""

  def check_image(self, image):
    """Raises UnsupportedImageError if this codec cannot code `image`."""
    del image

  @abc.abstractmethod
  def compress(self, image):
    """Codes a uint8/uint16 [H, W, C] array; returns {section name: bytes}."""

  @abc.abstractmethod
  def decompress(self, sections, geometry):
    """Inverse of `compress`, given the container's geometry."""


def require_gray_or_rgb8(codec_name, image, hint=""):
  """Raises UnsupportedImageError unless `image` is 8-bit grayscale or RGB."""
  if image.dtype != np.uint8 or image.shape[2] not in (1, 3):
    kind = CHANNEL_KINDS.get(image.shape[2], "?")
    raise UnsupportedImageError(
        f"{codec_name} codes 8-bit RGB or grayscale images, not "
        f"{image.dtype.itemsize * 8}-bit {kind}{hint}")


def describe(sections, geometry, family=None):
  """`tfcomp info`'s lines about how a file's payload is coded, from the file alone (no
  model, no TensorFlow): the tiles of a learned lossless file (of model `family`, which
  may say more about its streams); nothing for the others."""
  from tfcomp.codecs import lossless  # pylint: disable=import-outside-toplevel
  return (lossless.describe_tiles(sections, geometry, family)
          if lossless.SECTION in sections else [])


def from_weights(name, path):
  """The lossless or lossy codec around the model stored at `path` (a models.save .npz)."""
  from tfcomp import models  # pylint: disable=import-outside-toplevel
  from tfcomp.codecs import lossless, lossy  # pylint: disable=import-outside-toplevel
  cls = models.FAMILIES[models.family_of(path)]
  return (lossless.LosslessModelCodec if cls.lossless else lossy.LossyModelCodec)(name, path)


def geometry_of(image):
  image = np.asarray(image)
  if image.ndim != 3 or image.dtype not in (np.uint8, np.uint16):
    raise UnsupportedImageError(
        f"expected a uint8/uint16 [H, W, C] array, got {image.dtype} {image.shape}")
  g = container.Geometry(image.shape[0], image.shape[1], image.shape[2],
                         image.dtype.itemsize * 8)
  try:
    g.validate()
  except container.FormatError as e:
    raise UnsupportedImageError(str(e)) from None
  return g


def _tf():
  # TensorFlow only where a codec runs: `tfcomp info` and `tfcomp models` start without it.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def op_error_message(error):
  """The coder's own words from a TF op error, without TF's decorations."""
  message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
  return re.sub(r"\s*\[Op:\w+\]\s*$", "", message).strip()


def check_refine_steps(codec, refine_steps):
  """Raises ValueError unless `codec` can take `refine_steps` (0 suits every codec)."""
  if refine_steps < 0:
    raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
  if refine_steps and not codec.refines:
    raise ValueError(f"model {codec.name} cannot refine its latents (refine steps are for "
                     "the hyperprior models)")


def check_effort(codec, effort):
  """ValueError unless `effort` is None (the codec's default) or one of codec.efforts."""
  if effort is None:
    return
  if not codec.efforts:
    raise ValueError(f"model {codec.name} has no effort levels (efforts are for the learned "
                     "lossless models, whose coder adapts)")
  if effort not in codec.efforts:
    raise ValueError(f"effort must be one of {list(codec.efforts)} for model {codec.name}, "
                     f"got {effort}")


def compress(image, codec, refine_steps=0, effort=None):
  """Codes `image` with `codec` into the bytes of a tfcomp file.

  refine_steps: for codecs that refine (`codec.refines`), optimization steps fitting the
  latents to this image before coding: slower encoding, fewer bits for the same quality,
  decoded like any other file of the model.
  effort: for codecs with effort levels (`codec.efforts`), how much work coding does (None:
  the codec's default); files of every effort decode alike.
  """
  check_refine_steps(codec, refine_steps)
  check_effort(codec, effort)
  image = np.ascontiguousarray(image)
  geometry = geometry_of(image)
  codec.check_image(image)
  kwargs = {}
  if refine_steps:
    kwargs["refine_steps"] = refine_steps
  if effort is not None:
    kwargs["effort"] = effort
  with _tf().device(ON_CPU):
    sections = dict(codec.compress(image, **kwargs))
  if codec.lossless:
    sections[PIXEL_CRC_SECTION] = pixel_crc(image)
  return container.write(container.Container(codec.name, codec.weights_hash, geometry,
                                             sections))


def decompress(data, load_codec):
  """Decodes the bytes of a tfcomp file; returns (image, container).

  Args:
    data: the file's bytes.
    load_codec: function from a model name to its `Codec` (normally `tfcomp.zoo.load`); it
      raises KeyError for an unknown name.

  Raises:
    container.FormatError: the file is damaged, or written by a model this installation
      does not have.
  """
  parsed = container.read(data)
  try:
    codec = load_codec(parsed.model)
  except KeyError as e:  # a retired model's error gives its reason and replacement
    reason = getattr(e, "reason", f"{parsed.model}, which this tfcomp does not have (see "
                     "`tfcomp models`)")
    raise container.FormatError(f"file was written by model {reason}") from None
  if codec.weights_hash != parsed.weights_hash:
    raise container.FormatError(
        f"file was written by another version of model {parsed.model!r} (weights "
        f"{parsed.weights_hash.hex()}, installed {codec.weights_hash.hex()})")
  sections = dict(parsed.sections)
  crc = sections.pop(PIXEL_CRC_SECTION, None)
  if codec.lossless and crc is None:
    raise container.FormatError(f"lossless file lacks its {PIXEL_CRC_SECTION} section")
  tf = _tf()
  try:
    with tf.device(ON_CPU):
      image = codec.decompress(sections, parsed.geometry)
  except tf.errors.InvalidArgumentError as e:
    raise container.FormatError(f"corrupted payload: {op_error_message(e)}") from None
  g = parsed.geometry
  expected = (g.height, g.width, g.channels)
  if image.shape != expected or image.dtype.itemsize * 8 != g.bit_depth:
    raise container.FormatError(f"decoded image {image.dtype} {image.shape} does not match "
                                f"the header's {g.bit_depth}-bit {expected}")
  if crc is not None and pixel_crc(image) != crc:
    raise container.FormatError("decoded pixels do not match the encoder's checksum")
  return image, parsed
