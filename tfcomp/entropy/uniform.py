"""Coding integers in [0, n) with every value equally likely (the table coder, one table)."""
import numpy as np
import tensorflow as tf

from tfcomp import ops

PRECISION = 16


class UniformCoder:
  """Codes int32 values in [0, num_values) at log2(num_values) bits each (plus rANS's few).

  The table is built once per instance; the escape symbol gets the coder's minimum
  frequency, so a corrupted stream can decode out-of-range values, which `decode` refuses.
  """

  def __init__(self, num_values):
    if not 1 <= num_values <= 1 << 14:
      raise ValueError(f"num_values must be in [1, 16384], got {num_values}")
    self.num_values = int(num_values)
    pmf = np.append(np.ones(self.num_values, np.float32), np.float32(0))
    self._cdf = ops.pmf_to_cdf(pmf, PRECISION).numpy()[None]

  def bits(self, count):
    """Estimated bits of `count` values."""
    return count * float(np.log2(self.num_values))

  def encode(self, values):
    values = tf.convert_to_tensor(values, tf.int32)
    return ops.table_encode(values, tf.zeros_like(values), self._cdf, [self._cdf.shape[1]],
                            [0], PRECISION).numpy()

  def decode(self, stream, shape):
    """int32 values of `shape`; InvalidArgumentError if the stream holds others."""
    values = ops.table_decode(stream, tf.zeros(shape, tf.int32), self._cdf,
                              [self._cdf.shape[1]], [0], PRECISION)
    if tf.size(values) and (tf.reduce_min(values) < 0 or
                            tf.reduce_max(values) >= self.num_values):
      raise tf.errors.InvalidArgumentError(
          None, None, f"uniform symbols outside [0, {self.num_values})")
    return values
