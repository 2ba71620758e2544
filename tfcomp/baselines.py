"""Classic codecs, run the way the benchmark harness compares them with tfcomp's codecs.

Each `ClassicCodec` turns a uint8 [H, W, 3] image into bytes and back, at one of its
quality settings (`None` for lossless codecs). Codecs whose library is missing are not
listed by `available()`. Encoders come from imagecodecs (libpng, libwebp, libjxl, libavif,
QOI, libjpeg-turbo), Pillow (OpenJPEG for JPEG 2000: imagecodecs 2024.6's encoder returns
a fixed-size buffer padded past the end of the codestream, which would inflate sizes)
and, for HEIC (HEVC intra, the codec inside BPG), pillow-heif when installed.

The lossy codecs' `qualities` are the settings the benchmark sweeps; they reach down to
about 0.1 bpp on Kodak (HiFiC's operating points are 0.14, 0.30 and 0.45 bpp), where a
library allows it. `setting_range` is the whole interval an encoder accepts, which
`match_rate` searches for the setting that gives a wanted rate on one image.
"""
import dataclasses
import io as _io
import math

import imagecodecs
import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class ClassicCodec:
  name: str
  lossless: bool
  encode: object  # (image, quality) -> bytes
  decode: object  # bytes -> image
  qualities: tuple = (None,)
  quality_name: str = ""
  library: str = ""
  # (setting of the fewest bits, setting of the most bits): every value between them is a
  # valid setting (integers only when both ends are ints). () for lossless codecs.
  setting_range: tuple = ()

  def available(self):
    try:
      probe = np.zeros((16, 16, 3), np.uint8)
      probe[4:12, 4:12] = 200
      decoded = self.decode(self.encode(probe, self.qualities[0]))
      return decoded.shape == probe.shape
    except Exception:  # pylint: disable=broad-except  (a missing or broken library)
      return False


def _rgb(image):
  return np.ascontiguousarray(np.asarray(image)[..., :3])


def _jpeg2000_encode(image, quality):
  """Reversible 5/3 with RCT when quality is None, else irreversible 9/7 with ICT at a
  target PSNR (dB)."""
  options = dict(irreversible=False) if quality is None else dict(
      irreversible=True, quality_mode="dB", quality_layers=[quality])
  out = _io.BytesIO()
  Image.fromarray(_rgb(image)).save(out, format="JPEG2000", codec="j2k", mct=1, **options)
  return out.getvalue()


def _pillow_decode(data):
  with Image.open(_io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"))


def _heic_encode(image, quality):
  import pillow_heif  # pylint: disable=import-outside-toplevel
  heif = pillow_heif.from_bytes(mode="RGB", size=(image.shape[1], image.shape[0]),
                                data=_rgb(image).tobytes())
  out = _io.BytesIO()
  heif.save(out, quality=quality, chroma=444)
  return out.getvalue()


def _heic_decode(data):
  import pillow_heif  # pylint: disable=import-outside-toplevel
  heif = pillow_heif.open_heif(_io.BytesIO(data), convert_hdr_to_8bit=True)
  return np.asarray(heif).reshape(heif.size[1], heif.size[0], -1)[..., :3]


CODECS = (
    # Lossless, at maximum effort.
    ClassicCodec("png", True, lambda x, q: imagecodecs.png_encode(x, level=9),
                 imagecodecs.png_decode, library="libpng, zlib level 9"),
    ClassicCodec("webp-lossless", True,
                 lambda x, q: imagecodecs.webp_encode(x, level=100, lossless=True, method=6),
                 imagecodecs.webp_decode, library="libwebp, -lossless -q 100 -m 6"),
    ClassicCodec("jpeg2000-lossless", True, _jpeg2000_encode, _pillow_decode,
                 library="OpenJPEG via Pillow, reversible 5/3, RCT"),
    ClassicCodec("jpegxl-lossless-e7", True,
                 lambda x, q: imagecodecs.jpegxl_encode(x, lossless=True, effort=7),
                 imagecodecs.jpegxl_decode, library="libjxl, effort 7"),
    ClassicCodec("jpegxl-lossless-e9", True,
                 lambda x, q: imagecodecs.jpegxl_encode(x, lossless=True, effort=9),
                 imagecodecs.jpegxl_decode, library="libjxl, effort 9"),
    ClassicCodec("qoi", True, lambda x, q: imagecodecs.qoi_encode(x), imagecodecs.qoi_decode,
                 library="QOI"),
    # Lossy, swept over their quality settings. The lowest ones were added for the
    # generative (HiFiC) comparison; mean bpp of kodim04 and kodim14 at the lowest setting:
    # jpeg-420 0.09 (quality 1-2 give no fewer bits: every quantizer step is at its 255
    # cap), jpeg-444 0.14, webp 0.10, avif 0.07, heic 0.07, jpegxl 0.12 (distance 25, the
    # library's maximum), jpeg2000 0.06.
    ClassicCodec("jpeg-420", False,
                 lambda x, q: imagecodecs.jpeg8_encode(x, level=q, subsampling="420", optimize=True),
                 imagecodecs.jpeg8_decode,
                 qualities=(3, 5, 7, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                 quality_name="quality", library="libjpeg-turbo, optimized Huffman, 4:2:0",
                 setting_range=(1, 100)),
    ClassicCodec("jpeg-444", False,
                 lambda x, q: imagecodecs.jpeg8_encode(x, level=q, subsampling="444", optimize=True),
                 imagecodecs.jpeg8_decode,
                 qualities=(3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                 quality_name="quality", library="libjpeg-turbo, optimized Huffman, 4:4:4",
                 setting_range=(1, 100)),
    ClassicCodec("webp", False,
                 lambda x, q: imagecodecs.webp_encode(x, level=q, lossless=False, method=6),
                 imagecodecs.webp_decode, qualities=(0, 1, 5, 10, 15, 30, 45, 60, 75, 85, 95),
                 quality_name="quality", library="libwebp, -m 6", setting_range=(0, 100)),
    ClassicCodec("jpeg2000", False, _jpeg2000_encode, _pillow_decode,
                 qualities=(24, 27, 30, 33, 36, 39, 42, 45), quality_name="target PSNR (dB)",
                 library="OpenJPEG via Pillow, irreversible 9/7, ICT",
                 setting_range=(20.0, 55.0)),
    ClassicCodec("avif", False,
                 lambda x, q: imagecodecs.avif_encode(x, level=q, speed=4, pixelformat="444"),
                 imagecodecs.avif_decode,
                 qualities=(5, 10, 15, 20, 27, 35, 42, 50, 60, 70, 80, 90),
                 quality_name="quality", library="libavif (AV1 intra), speed 4, 4:4:4",
                 setting_range=(0, 100)),
    ClassicCodec("jpegxl", False,
                 lambda x, q: imagecodecs.jpegxl_encode(x, distance=q, effort=7),
                 imagecodecs.jpegxl_decode,
                 qualities=(25.0, 16.0, 12.0, 8.0, 5.0, 3.5, 2.5, 1.8, 1.2, 0.8, 0.5),
                 quality_name="distance", library="libjxl, effort 7",
                 setting_range=(25.0, 0.1)),
    ClassicCodec("heic", False, _heic_encode, _heic_decode,
                 qualities=(10, 15, 18, 25, 32, 40, 55, 70, 80, 90), quality_name="quality",
                 library="pillow-heif (libheif + x265 HEVC intra), 4:4:4",
                 setting_range=(0, 100)),
)
_BY_NAME = {c.name: c for c in CODECS}


def get(name):
  try:
    return _BY_NAME[name]
  except KeyError:
    raise KeyError(f"unknown classic codec {name!r}; known: {', '.join(_BY_NAME)}") from None


def available(lossless=None):
  """The codecs whose libraries work here, optionally only lossless or only lossy ones."""
  return [c for c in CODECS if (lossless is None or c.lossless == lossless) and c.available()]


def bpp_of(data, image):
  """Bits per pixel of the encoded bytes `data` of `image` ([H, W, C])."""
  return 8 * len(data) / (image.shape[0] * image.shape[1])


def match_rate(codec, image, bpp, tolerance=0.01, max_steps=24):
  """The setting of lossy `codec` whose rate on `image` is closest to `bpp`.

  With a `setting_range`, a bisection between its ends (on integers for integer settings):
  rates rise with the setting almost everywhere, and where they do not (WebP, HEIC have
  small dips) the answer is still the closest of the settings tried. Without one, each of
  `codec.qualities` is tried.

  Args:
    codec: A lossy ClassicCodec.
    image: uint8 [H, W, 3].
    bpp: The wanted rate in bits per pixel, > 0.
    tolerance: For continuous settings, stop once the rate is within this fraction of bpp.
    max_steps: At most this many encodings in the bisection.

  Returns:
    (setting, encoded bytes, bpp of those bytes).

  Raises:
    ValueError: `codec` is lossless, or `bpp` is not a positive finite number.
  """
  if codec.lossless:
    raise ValueError(f"codec {codec.name} is lossless: it has no rate to match")
  if not (isinstance(bpp, (int, float, np.floating)) and math.isfinite(bpp) and bpp > 0):
    raise ValueError(f"bpp must be a positive number, got {bpp!r}")
  tried = {}

  def rate(setting):
    if setting not in tried:
      data = codec.encode(image, setting)
      tried[setting] = (data, bpp_of(data, image))
    return tried[setting][1]

  def closest():
    setting = min(tried, key=lambda q: (abs(tried[q][1] - bpp), tried[q][1]))
    return setting, tried[setting][0], tried[setting][1]

  if not codec.setting_range:
    for q in codec.qualities:
      rate(q)
    return closest()
  low, high = codec.setting_range  # rate(low) < rate(high), whichever way the numbers go
  integer = isinstance(low, int) and isinstance(high, int)
  # The ends are only encoded if the search ends next to them: the top end is often
  # (near-)lossless and the slowest setting of all.
  for _ in range(max_steps):
    if integer:
      if abs(high - low) <= 1:
        break
      middle = (low + high) // 2
    else:
      # Three decimals: a setting that reads well in a figure's label and re-runs exactly.
      middle = round((low + high) / 2, 3)
      if middle in (low, high):
        break
    if rate(middle) < bpp:
      low = middle
    else:
      high = middle
    if not integer and abs(tried[middle][1] - bpp) <= tolerance * bpp:
      break
  for end in codec.setting_range:
    if end in (low, high):  # never passed: the rate may lie beyond it
      rate(end)
  return closest()
