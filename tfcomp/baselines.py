"""Classic codecs, run the way the benchmark harness compares them with tfcomp's codecs.

Each `ClassicCodec` turns a uint8 [H, W, 3] image into bytes and back, at one of its
quality settings (`None` for lossless codecs). Codecs whose library is missing are not
listed by `available()`. Encoders come from imagecodecs (libpng, libwebp, libjxl, libavif,
QOI, libjpeg-turbo), Pillow (OpenJPEG for JPEG 2000: imagecodecs 2024.6's encoder returns
a fixed-size buffer padded past the end of the codestream, which would inflate sizes)
and, for HEIC (HEVC intra, the codec inside BPG), pillow-heif when installed.
"""
import dataclasses
import io as _io

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
    # Lossy, swept over their quality settings.
    ClassicCodec("jpeg-420", False,
                 lambda x, q: imagecodecs.jpeg8_encode(x, level=q, subsampling="420", optimize=True),
                 imagecodecs.jpeg8_decode, qualities=(10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                 quality_name="quality", library="libjpeg-turbo, optimized Huffman, 4:2:0"),
    ClassicCodec("jpeg-444", False,
                 lambda x, q: imagecodecs.jpeg8_encode(x, level=q, subsampling="444", optimize=True),
                 imagecodecs.jpeg8_decode, qualities=(10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                 quality_name="quality", library="libjpeg-turbo, optimized Huffman, 4:4:4"),
    ClassicCodec("webp", False,
                 lambda x, q: imagecodecs.webp_encode(x, level=q, lossless=False, method=6),
                 imagecodecs.webp_decode, qualities=(5, 15, 30, 45, 60, 75, 85, 95),
                 quality_name="quality", library="libwebp, -m 6"),
    ClassicCodec("jpeg2000", False, _jpeg2000_encode, _pillow_decode,
                 qualities=(24, 27, 30, 33, 36, 39, 42, 45), quality_name="target PSNR (dB)",
                 library="OpenJPEG via Pillow, irreversible 9/7, ICT"),
    ClassicCodec("avif", False,
                 lambda x, q: imagecodecs.avif_encode(x, level=q, speed=4, pixelformat="444"),
                 imagecodecs.avif_decode, qualities=(20, 35, 50, 60, 70, 80, 90),
                 quality_name="quality", library="libavif (AV1 intra), speed 4, 4:4:4"),
    ClassicCodec("jpegxl", False,
                 lambda x, q: imagecodecs.jpegxl_encode(x, distance=q, effort=7),
                 imagecodecs.jpegxl_decode, qualities=(8.0, 5.0, 3.5, 2.5, 1.8, 1.2, 0.8, 0.5),
                 quality_name="distance", library="libjxl, effort 7"),
    ClassicCodec("heic", False, _heic_encode, _heic_decode,
                 qualities=(10, 25, 40, 55, 70, 80, 90), quality_name="quality",
                 library="pillow-heif (libheif + x265 HEVC intra), 4:4:4"),
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
