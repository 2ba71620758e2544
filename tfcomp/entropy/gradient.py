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
from tfcomp.entropy.uniform import in_range

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


def scale_classes(mean_abs, scales):
  """int32 index of the Laplace scale (of float64 `scales`, ascending) nearest each float64
  `mean_abs` in log terms, ties to the smaller.

  Counted as the geometric midpoints sqrt(s_k s_{k+1}) each mean exceeds: a product and a
  square root round once in IEEE arithmetic, so every machine, eager or traced, agrees
  (logarithms differ between libraries in their last bits). On every mean a block of 8- or
  16-bit residuals can have, it picks the scale of least |log(mean) - log(s_k)|
  (tests/test_entropy.py checks them all).
  """
  scales = tf.cast(scales, tf.float64)
  midpoints = tf.sqrt(scales[:-1] * scales[1:])
  return tf.reduce_sum(tf.cast(mean_abs[..., None] > midpoints, tf.int32), axis=-1)


class GradientCoder:
  """Codes B-bit images [h, w, C] (C in 1..4) with the stored `tables` (see build_tables).

  TF ops throughout, so that it runs eagerly (fixedpred) and inside `tf.function` (SReC's
  top level, traced into its SavedModels); methods return tensors. `tables` may be arrays or
  tensors (SReC passes its variables). Image channel counts must be static.
  """

  def __init__(self, bit_depth, tables):
    missing = set(TABLE_NAMES) - set(tables)
    if missing:
      raise ValueError(f"gradient tables lack {sorted(missing)}")
    self.bit_depth = int(bit_depth)
    self._mask = (1 << self.bit_depth) - 1
    self._half = 1 << (self.bit_depth - 1)
    self._cdf, self._size, self._offset, self._scales, self._class_cdf = (
        tables[k] for k in TABLE_NAMES)

  @property
  def num_classes(self):
    return int(self._size.shape[0])

  # -- the model --------------------------------------------------------------------------

  # Sample arithmetic is uint32, whose sums and differences wrap mod 2^32, so that masking
  # takes any of them mod 2^B.

  def _wrap(self, x):
    """uint32 x mod 2^B."""
    return tf.bitwise.bitwise_and(x, tf.constant(self._mask, tf.uint32))

  def _planes(self, image):
    """uint32 [C, h, w]: G, R-G, B-G (, A) mod 2^B, or the gray plane (, A)."""
    planes = tf.transpose(tf.cast(image, tf.uint32), [2, 0, 1])
    if planes.shape[0] >= 3:
      g = planes[1]
      planes = tf.concat([tf.stack([g, self._wrap(planes[0] - g), self._wrap(planes[2] - g)]),
                          planes[3:]], 0)
    return planes

  def _image(self, planes):
    """Inverse of `_planes`: the image [h, w, C] as uint8 or uint16."""
    if planes.shape[0] >= 3:
      g = planes[0]
      planes = tf.concat([tf.stack([self._wrap(planes[1] + g), g, self._wrap(planes[2] + g)]),
                          planes[3:]], 0)
    return tf.cast(tf.transpose(planes, [1, 2, 0]),
                   tf.uint8 if self.bit_depth == 8 else tf.uint16)

  def _classes(self, magnitudes):
    """int32 [C, ceil(h/16), ceil(w/16)]: the class of each block of |residuals| [C, h, w],
    from the block's mean (`scale_classes`)."""
    h, w = tf.shape(magnitudes)[1], tf.shape(magnitudes)[2]
    rows, cols = -(-h // BLOCK), -(-w // BLOCK)
    padded = tf.pad(magnitudes, [[0, 0], [0, rows * BLOCK - h], [0, cols * BLOCK - w]])
    sums = tf.reduce_sum(tf.reshape(padded, [magnitudes.shape[0], rows, BLOCK, cols, BLOCK]),
                         axis=[2, 4])
    # Per-block sample counts, for the mean of partial edge blocks.
    counts = (tf.minimum(h - BLOCK * tf.range(rows), BLOCK)[:, None] *
              tf.minimum(w - BLOCK * tf.range(cols), BLOCK)[None, :])
    mean_abs = tf.maximum(tf.cast(sums, tf.float64) / tf.cast(counts, tf.float64), 1e-3)
    return scale_classes(mean_abs, self._scales)

  def analyze(self, image):
    """(residuals int32 [C, h, w], classes int32 [C, ceil(h/16), ceil(w/16)]) of `image`."""
    planes = self._planes(image)
    padded = tf.pad(planes, [[0, 0], [1, 0], [1, 0]])
    r = self._wrap(planes - padded[:, 1:, :-1] - padded[:, :-1, 1:] + padded[:, :-1, :-1])
    signed = tf.bitcast(self._wrap(r + self._half), tf.int32) - self._half
    return signed, self._classes(tf.abs(signed))

  @staticmethod
  def _indexes(classes, h, w):
    return tf.repeat(tf.repeat(classes, BLOCK, axis=1), BLOCK, axis=2)[:, :h, :w]

  def bits(self, image):
    """Estimated bits (float64) of `image` [h, w, C]: its residuals' and its classes'
    information (a residual beyond a 16-bit table's range counts its escape symbol only)."""
    residuals, classes = self.analyze(image)
    indexes = self._indexes(classes, tf.shape(image)[0], tf.shape(image)[1])
    symbols = tf.clip_by_value(residuals - tf.gather(self._offset, indexes), 0,
                               tf.gather(self._size, indexes) - 2)
    # -log2 P of every (class, symbol), from the integer tables (past a table's end, its
    # negative differences become infinitely costly symbols, which no residual selects).
    cdf = tf.cast(self._cdf, tf.float64)
    symbol_bits = PRECISION - tf.math.log(tf.maximum(cdf[:, 1:] - cdf[:, :-1], 0.0)) / math.log(2)
    residual_bits = tf.reduce_sum(tf.gather_nd(symbol_bits, tf.stack([indexes, symbols], -1)))
    return residual_bits + tf.cast(tf.size(classes), tf.float64) * math.log2(self.num_classes)

  # -- streams ----------------------------------------------------------------------------

  def encode_classes(self, classes):
    return ops.table_encode(classes, tf.zeros_like(classes), self._class_cdf,
                            [self._class_cdf.shape[1]], [0], PRECISION)

  def decode_classes(self, stream, channels, height, width):
    """classes [channels, ceil(h/16), ceil(w/16)]; InvalidArgumentError if out of range."""
    shape = [channels, -(-height // BLOCK), -(-width // BLOCK)]
    classes = ops.table_decode(stream, tf.zeros(shape, tf.int32), self._class_cdf,
                               [self._class_cdf.shape[1]], [0], PRECISION)
    return in_range(classes, self.num_classes, "block classes out of range")

  def encode_residuals(self, residuals, classes):
    """One stream of residuals [C, h, w] under their blocks' `classes` [C, ...]."""
    indexes = self._indexes(classes, tf.shape(residuals)[1], tf.shape(residuals)[2])
    return ops.table_encode(residuals, indexes, self._cdf, self._size, self._offset, PRECISION)

  def decode_residuals(self, stream, classes, height, width):
    return ops.table_decode(stream, self._indexes(classes, height, width), self._cdf,
                            self._size, self._offset, PRECISION)

  def reconstruct(self, residuals):
    """The image [h, w, C] (uint8 or uint16) whose residuals are `residuals` [C, h, w]:
    the predictor's inverse, a 2-D prefix sum mod 2^B."""
    planes = tf.cumsum(tf.cumsum(tf.bitcast(residuals, tf.uint32), axis=1), axis=2)
    return self._image(self._wrap(planes))
