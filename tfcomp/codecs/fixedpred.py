"""fixedpred: a non-learned lossless baseline codec on tfcomp's table-coder op.

Not a published system: the default lossless codec until a learned one ships, and a
sanity baseline for the learned ones. Dataflow per image:

    RGB(A) --(G, R-G, B-G, A) mod 2^B--> planes
    plane --r = x - (left + up - up_left) mod 2^B--> residuals (signed)
    residuals --per 16x16 block: Laplace scale class from mean |r|--> table indexes
    classes  --uniform table------------------------> section "classes"
    residuals --table coder, table = block class-----> section "plane<c>"

Decoding is vectorized: the predictor's inverse is a 2-D prefix sum of the residuals.
Tables (one discretized Laplacian per scale class and bit depth) are built once by
`build_tables`, written by `save_tables` to this model's weights file
(tfcomp/zoo/weights/fixedpred-v1.npz) and never recomputed by the decoder; new tables
need a new model name.
"""
import hashlib
import io
import math

import numpy as np

from tfcomp import codecs, container, ops

BLOCK = 16
PRECISION = 16
SCALE_MIN = 0.25
SCALE_RATIO = 1.35
MAX_HALF_RANGE_16BIT = 4095


def class_scales(bit_depth):
  """Laplace scales of the table classes: geometric, from 0.25 to 2^(bit_depth - 2)."""
  n = int(math.ceil(math.log(2 ** (bit_depth - 2) / SCALE_MIN, SCALE_RATIO))) + 1
  return SCALE_MIN * SCALE_RATIO ** np.arange(n)


def build_tables():
  """The model's tables for 8- and 16-bit samples, as a dict of integer arrays."""
  out = {}
  for bits in (8, 16):
    scales = class_scales(bits)
    rows, offsets = [], []
    for b in scales:
      if bits == 8:
        support = np.arange(-128, 128)
        tail = 0.0
      else:
        half = min(MAX_HALF_RANGE_16BIT, int(math.ceil(20 * b)))
        support = np.arange(-half, half + 1)
        tail = 2 * math.exp(-(half + 1) / b) / (1 - math.exp(-1 / b))
      pmf = np.append(np.exp(-np.abs(support) / b), tail).astype(np.float32)
      rows.append(ops.pmf_to_cdf(pmf, PRECISION).numpy())
      offsets.append(support[0])
    size = max(len(r) for r in rows)
    cdf = np.zeros((len(rows), size), np.int32)
    for i, r in enumerate(rows):
      cdf[i, :len(r)] = r
    out[f"cdf{bits}"] = cdf
    out[f"size{bits}"] = np.array([len(r) for r in rows], np.int32)
    out[f"offset{bits}"] = np.array(offsets, np.int32)
    out[f"scales{bits}"] = scales.astype(np.float64)
    out[f"class_cdf{bits}"] = ops.pmf_to_cdf(
        np.append(np.ones(len(rows)), 0).astype(np.float32), PRECISION).numpy()[None]
  return out


def save_tables(path):
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **build_tables())
  with open(path, "wb") as f:
    f.write(buffer.getvalue())


def _decorrelate(image, mask):
  planes = np.moveaxis(image, 2, 0).astype(np.uint32)
  if planes.shape[0] >= 3:
    g = planes[1].copy()
    planes[0] = (planes[0] - g) & mask
    planes[2] = (planes[2] - g) & mask
    planes[[0, 1]] = planes[[1, 0]]  # order: G, R-G, B-G (, A)
  return planes


def _correlate(planes, mask, dtype):
  if planes.shape[0] >= 3:
    planes[[0, 1]] = planes[[1, 0]]
    g = planes[1]
    planes[0] = (planes[0] + g) & mask
    planes[2] = (planes[2] + g) & mask
  return np.ascontiguousarray(np.moveaxis(planes, 0, 2)).astype(dtype)


class FixedPredCodec(codecs.Codec):
  """Gradient predictor with block-adaptive Laplacian tables (lossless, 8/16-bit, 1-4 ch)."""

  lossless = True

  def __init__(self, name, weights_path):
    self.name = name
    with open(weights_path, "rb") as f:
      raw = f.read()
    self._hash = hashlib.sha256(raw).digest()[:16]
    with np.load(io.BytesIO(raw)) as tables:
      self._tables = {k: tables[k] for k in tables.files}

  @property
  def weights_hash(self):
    return self._hash

  def _bits(self, bit_depth):
    t = self._tables
    return (t[f"cdf{bit_depth}"], t[f"size{bit_depth}"], t[f"offset{bit_depth}"],
            t[f"scales{bit_depth}"], t[f"class_cdf{bit_depth}"])

  def compress(self, image):
    bit_depth = image.dtype.itemsize * 8
    mask, half = (1 << bit_depth) - 1, 1 << (bit_depth - 1)
    cdf, size, offset, scales, class_cdf = self._bits(bit_depth)
    h, w = image.shape[:2]
    # Per-block sample counts, for the mean |residual| of partial edge blocks.
    counts = np.add.reduceat(np.add.reduceat(np.ones((h, w)), np.arange(0, h, BLOCK), 0),
                             np.arange(0, w, BLOCK), 1)
    log_scales = np.log(scales)
    sections, classes = {}, []
    for c, plane in enumerate(_decorrelate(image, mask)):
      padded = np.pad(plane, ((1, 0), (1, 0)))
      residual = (plane - padded[1:, :-1] - padded[:-1, 1:] + padded[:-1, :-1]) & mask
      signed = ((residual + half) & mask).astype(np.int32) - half
      sums = np.add.reduceat(np.add.reduceat(np.abs(signed).astype(np.float64),
                                             np.arange(0, h, BLOCK), 0),
                             np.arange(0, w, BLOCK), 1)
      mean_abs = np.maximum(sums / counts, 1e-3)
      block_class = np.abs(np.log(mean_abs)[..., None] - log_scales).argmin(-1)
      classes.append(block_class.astype(np.int32))
      indexes = np.repeat(np.repeat(block_class, BLOCK, 0), BLOCK, 1)[:h, :w]
      sections[f"plane{c}"] = ops.table_encode(signed, indexes, cdf, size, offset,
                                               PRECISION).numpy()
    classes = np.stack(classes)
    sections = {"classes": ops.table_encode(
        classes, np.zeros_like(classes), class_cdf, [class_cdf.shape[1]], [0],
        PRECISION).numpy(), **sections}
    return sections

  def decompress(self, sections, geometry):
    bit_depth = geometry.bit_depth
    mask, half = (1 << bit_depth) - 1, 1 << (bit_depth - 1)
    cdf, size, offset, _, class_cdf = self._bits(bit_depth)
    h, w, channels = geometry.height, geometry.width, geometry.channels
    expected = {"classes"} | {f"plane{c}" for c in range(channels)}
    if set(sections) != expected:
      raise container.FormatError(
          f"expected sections {sorted(expected)}, found {sorted(sections)}")
    shape = (channels, -(-h // BLOCK), -(-w // BLOCK))
    classes = ops.table_decode(sections["classes"], np.zeros(shape, np.int32), class_cdf,
                               [class_cdf.shape[1]], [0], PRECISION).numpy()
    if classes.min(initial=0) < 0 or classes.max(initial=0) >= len(size):
      raise container.FormatError("block classes out of range: the file is corrupted")
    planes = np.empty((channels, h, w), np.uint32)
    for c in range(channels):
      indexes = np.repeat(np.repeat(classes[c], BLOCK, 0), BLOCK, 1)[:h, :w]
      signed = ops.table_decode(sections[f"plane{c}"], indexes, cdf, size, offset,
                                PRECISION).numpy()
      residual = (signed.astype(np.int64) + half).astype(np.uint32) - np.uint32(half)
      planes[c] = np.cumsum(np.cumsum(residual, 0, dtype=np.uint32), 1,
                            dtype=np.uint32) & mask
    return _correlate(planes, mask, np.uint8 if bit_depth == 8 else np.uint16)
