"""Coding integers in [0, n) with every value equally likely (the table coder, one table)."""
import numpy as np
import tensorflow as tf

from tfcomp import ops

PRECISION = 16


def in_range(values, num_values, message):
  """`values`, once every one lies in [0, num_values); InvalidArgumentError(message) if not.

  Table decoders can return escape symbols from a corrupted stream, and what decodes them
  must refuse those. Eagerly the error raises here; traced (into a SavedModel), the returned
  tensor depends on an assertion that raises it when the graph runs.
  """
  ok = tf.reduce_all((values >= 0) & (values < num_values))
  if tf.executing_eagerly():
    if not ok:
      raise tf.errors.InvalidArgumentError(None, None, message)
    return values
  with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
    return tf.identity(values)


class UniformCoder:
  """Codes int32 values in [0, num_values) at log2(num_values) bits each (plus rANS's few).

  The table is built once per instance; the escape symbol gets the coder's minimum
  frequency, so a corrupted stream can decode out-of-range values, which `decode` refuses.
  Encoding and decoding are TF ops, eagerly and inside `tf.function`.
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
    """A scalar string tensor coding int32 `values`."""
    values = tf.convert_to_tensor(values, tf.int32)
    return ops.table_encode(values, tf.zeros_like(values), self._cdf, [self._cdf.shape[1]],
                            [0], PRECISION)

  def decode(self, stream, shape):
    """int32 values of `shape`; InvalidArgumentError if the stream holds others."""
    values = ops.table_decode(stream, tf.zeros(shape, tf.int32), self._cdf,
                              [self._cdf.shape[1]], [0], PRECISION)
    return in_range(values, self.num_values,
                    f"uniform symbols outside [0, {self.num_values})")
