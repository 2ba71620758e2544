"""Lossy base layers for RC: HEVC intra (x265 through libheif / pillow-heif), exactly decoded.

RC (Mentzer et al., CVPR 2020) codes an image as a lossy base layer, BPG in the paper (that
is HEVC intra), plus the residual. BPG is not installable here; libheif with x265 codes the
same HEVC intra pictures. The decoder must rebuild the encoder's reconstruction bit for
bit on any machine. HEVC decoding is exactly specified; what a library does around it
(colour conversion, chroma resampling) is not. So tfcomp does the colour transform itself,
in integer arithmetic, and hands libheif three full-resolution planes with the identity
matrix (matrix_coefficients 0, full range, 4:4:4), which it copies unchanged:

    rgb --forward_ycbcr (integers)--> Y, Cb, Cr --as the "G, B, R" planes--> x265 (QP)
    HEIF bytes --libde265--> planes --inverse_ycbcr (integers)--> x_l (the reconstruction)

Coding the decorrelated planes costs about half the bits of coding R, G, B directly at
the same PSNR. The encoder takes its reconstruction from decoding its own bytes, never
from x265's internal one, so both sides compute x_l by the same code.

The file records the quantizer (QP) of each base layer (`encode` prefixes it); the codec
and its settings are fixed by this module (`SETTINGS`), which a model names by
`BASE_CODECS` key.
"""
import io
import os

import numpy as np

from tfcomp import container

HEVC = "hevc"
BASE_CODECS = (HEVC,)
QP_MIN, QP_MAX = 0, 51  # HEVC's quantizer range
# x265: the same QP for every picture type (ipratio 1; without it an intra picture gets
# QP - 3); "fast": on kodim01 within 0.1% of "medium" and 2% of "slow", at 0.3 s
# against 0.45 s and 0.85 s. `quality` only selects lossy coding; x265:qp sets the QP.
SETTINGS = {"chroma": 444, "matrix_coefficients": 0, "full_range_flag": 1}
X265_PARAMS = {"x265:ipratio": "1", "preset": "fast"}
_HEADER = 1  # the QP byte before the HEIF bytes


def _planes_i32(image):
  return [image[..., i].astype(np.int32) for i in range(3)]


def forward_ycbcr(rgb):
  """Full-range BT.601 Y, Cb, Cr of uint8 rgb [..., 3] in 8-bit fixed point, uint8 [..., 3]."""
  r, g, b = _planes_i32(rgb)
  y = (77 * r + 150 * g + 29 * b + 128) >> 8
  cb = ((-43 * r - 85 * g + 128 * b + 128) >> 8) + 128
  cr = ((128 * r - 107 * g - 21 * b + 128) >> 8) + 128
  return np.clip(np.stack([y, cb, cr], -1), 0, 255).astype(np.uint8)


def inverse_ycbcr(ycc):
  """uint8 RGB [..., 3] from forward_ycbcr's planes (approximately inverse: the base is
  lossy anyway; what matters is that it is integer arithmetic, the same everywhere)."""
  y, cb, cr = _planes_i32(ycc)
  cb, cr = cb - 128, cr - 128
  r = y + ((359 * cr + 128) >> 8)
  g = y - ((88 * cb + 183 * cr + 128) >> 8)
  b = y + ((454 * cb + 128) >> 8)
  return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def check_qp(qp):
  if not isinstance(qp, (int, np.integer)) or not QP_MIN <= qp <= QP_MAX:
    raise ValueError(f"QP must be an integer in [{QP_MIN}, {QP_MAX}], got {qp!r}")


def _heif():
  try:
    import pillow_heif  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("RC's HEVC base layer needs pillow-heif (pip install pillow-heif)") \
        from e
  return pillow_heif


def encode(rgb, qp):
  """Base-layer bytes of uint8 rgb [h, w, 3] at HEVC quantizer `qp`: the QP, then HEIF."""
  check_qp(qp)
  rgb = np.asarray(rgb)
  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or not rgb.size:
    raise ValueError(f"need a non-empty uint8 [h, w, 3] image, got {rgb.dtype} {rgb.shape}")
  ycc = forward_ycbcr(rgb)
  # libheif's identity matrix stores R, G, B as the Cr, Y, Cb planes of HEVC's (GBR order).
  planes = np.ascontiguousarray(ycc[..., [2, 0, 1]])
  heif = _heif().from_bytes("RGB", (rgb.shape[1], rgb.shape[0]), planes.tobytes())
  out = io.BytesIO()
  heif.save(out, format="HEIF", quality=50, enc_params={"x265:qp": str(int(qp)),
                                                         **X265_PARAMS}, **SETTINGS)
  return bytes([qp]) + out.getvalue()


def qp_of(data):
  """The QP a base layer was coded with (FormatError when there is none)."""
  if len(data) <= _HEADER or not QP_MIN <= data[0] <= QP_MAX:
    raise container.FormatError("base layer is empty or has no valid QP")
  return data[0]


def decode(data, height, width):
  """x_l, uint8 [height, width, 3], of `encode`'s bytes; FormatError unless they decode
  to exactly that geometry as 8-bit 4:4:4 planes."""
  qp_of(data)
  heif = _heif()
  try:
    image = heif.open_heif(io.BytesIO(data[_HEADER:]), convert_hdr_to_8bit=False)
    frame = image[0]
    mode, size = frame.mode, frame.size
    if mode != "RGB" or size != (width, height):
      raise container.FormatError(f"base layer is {mode} {size[0]}x{size[1]}, the tile "
                                  f"is RGB {width}x{height}")
    planes = np.asarray(frame)
  except container.FormatError:
    raise
  except Exception as e:  # libheif raises plain errors of several kinds
    raise container.FormatError(f"base layer does not decode: {e}") from None
  if planes.shape != (height, width, 3) or planes.dtype != np.uint8:
    raise container.FormatError(f"base layer decoded to {planes.dtype} {planes.shape}")
  return inverse_ycbcr(planes[..., [1, 2, 0]])


def reconstruct(rgb, qp):
  """(bytes, x_l) of rgb at `qp`: x_l decoded from the bytes, as a decoder gets it."""
  data = encode(rgb, qp)
  return data, decode(data, *np.shape(rgb)[:2])


def reconstruct_batch(images, qps):
  """(x_l uint8 [B, h, w, 3], real bits float32 [B]) of uint8 `images` [B, h, w, 3], image
  i coded at qps[i]: what a model coding its own bases (RC, layered HiFiC) computes in a
  tf.numpy_function."""
  coded = [reconstruct(image, qp) for image, qp in zip(np.asarray(images, np.uint8), qps,
                                                        strict=True)]
  return (np.stack([base for _, base in coded]),
          np.array([8.0 * len(data) for data, _ in coded], np.float32))


def cache_key():
  """What a cached reconstruction depends on besides the image and QP: the codec, its
  settings and the libraries' versions."""
  heif = _heif()
  info = heif.libheif_info()
  return "|".join([HEVC, repr(sorted(SETTINGS.items())), repr(sorted(X265_PARAMS.items())),
                   info.get("libheif", ""), info.get("HEIF", "")])


def cached_reconstructions(files, qps, cache_dir, log=None):
  """{image path: [PNG path of its x_l at each of `qps`]}, coding what `cache_dir` lacks.

  RC trains on images beside their base reconstructions; coding HEVC per training crop
  would dominate a step, so every training image is coded once per QP. Entries are named
  by a hash of the image's bytes, the QP and `cache_key()`, so a changed image or codec
  never reuses a stale one.
  """
  import hashlib  # pylint: disable=import-outside-toplevel
  from tfcomp import io as tfcomp_io  # pylint: disable=import-outside-toplevel
  os.makedirs(cache_dir, exist_ok=True)
  key = cache_key().encode()
  result, made = {}, 0
  for path in files:
    with open(path, "rb") as f:
      digest = hashlib.sha256(f.read() + key).hexdigest()[:24]
    image = None
    result[path] = []
    for qp in qps:
      check_qp(qp)
      target = os.path.join(cache_dir, f"{digest}-qp{qp}.png")
      if not os.path.exists(target):
        if image is None:
          image = tfcomp_io.read_image(path)
          if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{path}: RC trains on 8-bit RGB images, got {image.dtype} "
                             f"{image.shape}")
        _, base = reconstruct(image, qp)
        tfcomp_io.write_png(target, base)
        made += 1
      result[path].append(target)
  if log and made:
    log(f"coded {made} base layers into {cache_dir}")
  return result
