"""A fixed (non-learned) image model: gradient prediction with block-adaptive Laplacians.

Used by the fixedpred codec for whole images and by SReC for its coarsest pyramid level.
Dataflow for B-bit samples:

    image --(G, R-G, B-G, A) mod 2^B--> planes
    plane --r = x - (left + up - up_left) mod 2^B, as signed--> residuals
    residuals --per 16x16 block: the Laplace scale class nearest mean |r|--> classes
    classes   --one uniform table--------------------------> a stream
    residuals --table coder, table = the block's class-------> a stream

Decoding is vectorized: the predictor's inverse is a 2-D prefix sum of the residuals.
The integer CDF tables come from `build_tables` once and are stored with the weights of
the model that uses them (fixedpred-v1's .npz; SReC's non-trainable weights); coders are
constructed from the stored tables, so a decoder never depends on this machine's exp().
"""
import math

import numpy as np
import tensorflow as tf

from tfcomp import ops

BLOCK = 16
PRECISION = 16
SCALE_MIN = 0.25
SCALE_RATIO = 1.35
MAX_HALF_RANGE_16BIT = 4095
TABLE_NAMES = ("cdf", "size", "offset", "scales", "class_cdf")


def class_scales(bit_depth):
  """Laplace scales of the table classes: geometric, from 0.25 to 2^(bit_depth - 2)."""
  n = int(math.ceil(math.log(2 ** (bit_depth - 2) / SCALE_MIN, SCALE_RATIO))) + 1
  return SCALE_MIN * SCALE_RATIO ** np.arange(n)


def build_tables(bit_depth):
  """{name: integer array} of the tables for `bit_depth` (8 or 16), keyed by TABLE_NAMES."""
  if bit_depth not in (8, 16):
    raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
  scales = class_scales(bit_depth)
  rows, offsets = [], []
  for b in scales:
    if bit_depth == 8:
      support = np.arange(-128, 128)
      tail = 0.0
    else:
      half = min(MAX_HALF_RANGE_16BIT, int(math.ceil(20 * b)))
      support = np.arange(-half, half + 1)
      tail = 2 * math.exp(-(half + 1) / b) / (1 - math.exp(-1 / b))
    pmf = np.append(np.exp(-np.abs(support) / b), tail).astype(np.float32)
    rows.append(ops.pmf_to_cdf(pmf, PRECISION).numpy())
    offsets.append(support[0])
  cdf = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
  for i, r in enumerate(rows):
    cdf[i, :len(r)] = r
  class_cdf = ops.pmf_to_cdf(np.append(np.ones(len(rows)), 0).astype(np.float32),
                             PRECISION).numpy()[None]
  return {"cdf": cdf, "size": np.array([len(r) for r in rows], np.int32),
          "offset": np.array(offsets, np.int32), "scales": scales.astype(np.float64),
          "class_cdf": class_cdf}


class GradientCoder:
  """Codes B-bit images [h, w, C] (C in 1..4) with the stored `tables` (see build_tables)."""

  def __init__(self, bit_depth, tables):
    missing = set(TABLE_NAMES) - set(tables)
    if missing:
      raise ValueError(f"gradient tables lack {sorted(missing)}")
    self.bit_depth = int(bit_depth)
    self._mask = (1 << self.bit_depth) - 1
    self._half = 1 << (self.bit_depth - 1)
    self._cdf, self._size, self._offset, scales, self._class_cdf = (
        np.asarray(tables[k]) for k in TABLE_NAMES)
    self._log_scales = np.log(scales)
    # -log2 P of every (class, symbol) for the estimates, from the integer tables.
    counts = np.diff(self._cdf.astype(np.int64), axis=1)
    with np.errstate(divide="ignore"):
      self._symbol_bits = PRECISION - np.log2(np.maximum(counts, 0))

  @property
  def num_classes(self):
    return len(self._size)

  # -- the model --------------------------------------------------------------------------

  def _planes(self, image):
    planes = np.moveaxis(np.asarray(image), 2, 0).astype(np.uint32)
    if planes.shape[0] >= 3:
      g = planes[1].copy()
      planes[0] = (planes[0] - g) & self._mask
      planes[2] = (planes[2] - g) & self._mask
      planes[[0, 1]] = planes[[1, 0]]  # order: G, R-G, B-G (, A)
    return planes

  def _image(self, planes, dtype):
    if planes.shape[0] >= 3:
      planes[[0, 1]] = planes[[1, 0]]
      g = planes[1]
      planes[0] = (planes[0] + g) & self._mask
      planes[2] = (planes[2] + g) & self._mask
    return np.ascontiguousarray(np.moveaxis(planes, 0, 2)).astype(dtype)

  def analyze(self, image):
    """(residuals int32 [C, h, w], classes int32 [C, ceil(h/16), ceil(w/16)]) of `image`."""
    h, w = image.shape[:2]
    rows, cols = np.arange(0, h, BLOCK), np.arange(0, w, BLOCK)
    # Per-block sample counts, for the mean |residual| of partial edge blocks.
    counts = np.add.reduceat(np.add.reduceat(np.ones((h, w)), rows, 0), cols, 1)
    residuals, classes = [], []
    for plane in self._planes(image):
      padded = np.pad(plane, ((1, 0), (1, 0)))
      r = (plane - padded[1:, :-1] - padded[:-1, 1:] + padded[:-1, :-1]) & self._mask
      signed = ((r + self._half) & self._mask).astype(np.int32) - self._half
      sums = np.add.reduceat(np.add.reduceat(np.abs(signed).astype(np.float64), rows, 0),
                             cols, 1)
      mean_abs = np.maximum(sums / counts, 1e-3)
      classes.append(np.abs(np.log(mean_abs)[..., None] - self._log_scales).argmin(-1))
      residuals.append(signed)
    return np.stack(residuals), np.stack(classes).astype(np.int32)

  def _indexes(self, classes, h, w):
    return np.repeat(np.repeat(classes, BLOCK, 1), BLOCK, 2)[:, :h, :w]

  def bits(self, image):
    """Estimated bits of `image` [h, w, C]: its residuals' and its classes' information
    (a residual beyond a 16-bit table's range counts its escape symbol only)."""
    residuals, classes = self.analyze(image)
    indexes = self._indexes(classes, *image.shape[:2])
    symbols = np.clip(residuals - self._offset[indexes], 0, self._size[indexes] - 2)
    residual_bits = self._symbol_bits[indexes, symbols].sum()
    return float(residual_bits + classes.size * math.log2(self.num_classes))

  # -- streams ----------------------------------------------------------------------------

  def encode_classes(self, classes):
    return ops.table_encode(classes, np.zeros_like(classes), self._class_cdf,
                            [self._class_cdf.shape[1]], [0], PRECISION).numpy()

  def decode_classes(self, stream, channels, height, width):
    """classes [channels, ceil(h/16), ceil(w/16)]; InvalidArgumentError if out of range."""
    shape = (channels, -(-height // BLOCK), -(-width // BLOCK))
    classes = ops.table_decode(stream, np.zeros(shape, np.int32), self._class_cdf,
                               [self._class_cdf.shape[1]], [0], PRECISION).numpy()
    if classes.min(initial=0) < 0 or classes.max(initial=0) >= self.num_classes:
      raise tf.errors.InvalidArgumentError(None, None, "block classes out of range")
    return classes

  def encode_residuals(self, residuals, classes):
    """One stream of residuals [C, h, w] under their blocks' `classes` [C, ...]."""
    indexes = self._indexes(classes, *residuals.shape[1:])
    return ops.table_encode(residuals, indexes, self._cdf, self._size, self._offset,
                            PRECISION).numpy()

  def decode_residuals(self, stream, classes, height, width):
    return ops.table_decode(stream, self._indexes(classes, height, width), self._cdf,
                            self._size, self._offset, PRECISION).numpy()

  def reconstruct(self, residuals):
    """The image [h, w, C] (uint8 or uint16) whose residuals are `residuals` [C, h, w]."""
    planes = np.empty(residuals.shape, np.uint32)
    for c, signed in enumerate(residuals):
      r = (signed.astype(np.int64) + self._half).astype(np.uint32) - np.uint32(self._half)
      planes[c] = np.cumsum(np.cumsum(r, 0, dtype=np.uint32), 1, dtype=np.uint32) & self._mask
    return self._image(planes, np.uint8 if self.bit_depth == 8 else np.uint16)
