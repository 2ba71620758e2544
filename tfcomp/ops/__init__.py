"""tfcomp's entropy-coding ops: documented wrappers around the custom C++ kernels.

All ops run eagerly and inside `tf.function` (and so in SavedModels), on the CPU. Decoders
fail with `tf.errors.InvalidArgumentError` on corrupted, truncated or random input.

Coders (interleaved rANS, 16-bit probabilities):
  * `table_encode` / `table_decode`: int32 values, each with a CDF table chosen by an index,
    with an escape so that every int32 is codable.
  * `cdf_encode` / `cdf_decode`: each value with its own CDF row; `cdf_decode_chunk`
    decodes such a stream step by step, for context models.
  * `mixture_encode` / `mixture_decode`: subpixels under discretized logistic mixtures,
    CDFs computed inside the kernel in fixed point.
  * `pmf_to_cdf`: deterministic quantization of PMFs into CDF rows.

And for tfcomp.exact's convolutions: `exact_operands`, their operands in one kernel, and
`bias_add`, a BiasAdd that TensorFlow never fuses into the convolution before it.
"""
import tensorflow as tf

from tfcomp.ops._loader import OpsNotBuiltError, library_path, load

__all__ = [
    "OpsNotBuiltError", "library_path", "table_encode", "table_decode", "cdf_encode",
    "cdf_decode", "cdf_decode_chunk", "CDF_DECODE_START", "pmf_to_cdf", "mixture_encode",
    "mixture_decode", "MIXTURE_ADAPT_BIAS", "MIXTURE_ADAPT_SCALE",
    "MIXTURE_ADAPT_CALIBRATION", "MIXTURE_ADAPT_ALL", "exact_operands", "bias_add",
]


def _i32(x):
  return tf.convert_to_tensor(x, tf.int32)


def _f32(x):
  return tf.convert_to_tensor(x, tf.float32)


def table_encode(values, indexes, cdf, cdf_size, offset, precision=16):
  """Encodes int32 `values`, each with the CDF table `indexes` selects.

  Args:
    values: int32 tensor of any shape.
    indexes: int32 tensor of the same shape; table of each value.
    cdf: int32 [num_tables, max_size]; row t holds `cdf_size[t]` valid entries, 0 first and
      2**precision last. The last symbol of each table is the escape.
    cdf_size: int32 [num_tables].
    offset: int32 [num_tables]; the value coded as symbol 0 of each table.
    precision: bits of the CDFs, 1 to 16.

  Returns:
    A scalar string tensor.
  """
  return load().tfcomp_table_encode(_i32(values), _i32(indexes), _i32(cdf), _i32(cdf_size),
                                    _i32(offset), precision=precision)


def table_decode(encoded, indexes, cdf, cdf_size, offset, precision=16):
  """Decodes `table_encode`'s output; returns int32 values shaped like `indexes`."""
  return load().tfcomp_table_decode(encoded, _i32(indexes), _i32(cdf), _i32(cdf_size),
                                    _i32(offset), precision=precision)


def cdf_encode(values, cdf, precision=16):
  """Encodes each of `values` with its own CDF row `cdf[..., :]` (shape values + [M])."""
  return load().tfcomp_cdf_encode(_i32(values), _i32(cdf), precision=precision)


def cdf_decode(encoded, cdf, precision=16):
  """Decodes `cdf_encode`'s output; returns int32 values shaped like `cdf[..., 0]`."""
  return load().tfcomp_cdf_decode(encoded, _i32(cdf), precision=precision)


CDF_DECODE_START = (0, 0, 0, 0)  # the state of `cdf_decode_chunk` before the first call


def cdf_decode_chunk(encoded, state, cdf, precision=16, final=False):
  """Decodes the next symbols of a `cdf_encode` stream, resuming from `state`.

  For sequential decoders whose CDF rows depend on earlier symbols: the encoder codes all
  symbols in decoding order with one `cdf_encode`; the decoder calls this once per step
  with that step's rows, starting from CDF_DECODE_START and threading the state through.

  Args:
    encoded: scalar string from `cdf_encode`.
    state: int64 [4], CDF_DECODE_START or the previous call's new state.
    cdf: int32 [..., M], this step's rows.
    precision: as for `cdf_encode`.
    final: True on the last call: the stream must end right after these symbols.

  Returns:
    (values int32 shaped like cdf without its last axis, the new state).
  """
  return load().tfcomp_cdf_decode_chunk(encoded, tf.convert_to_tensor(state, tf.int64),
                                        _i32(cdf), precision=precision, final=final)


def pmf_to_cdf(pmf, precision=16):
  """Quantizes PMFs [..., M] into CDF rows [..., M + 1], every symbol with frequency >= 1."""
  return load().tfcomp_pmf_to_cdf(_f32(pmf), precision=precision)


# mixture_encode's adaptation flags (ops/lib/mixture_coder.h).
MIXTURE_ADAPT_BIAS = 1
MIXTURE_ADAPT_SCALE = 2
MIXTURE_ADAPT_CALIBRATION = 4
MIXTURE_ADAPT_ALL = MIXTURE_ADAPT_BIAS | MIXTURE_ADAPT_SCALE | MIXTURE_ADAPT_CALIBRATION


def mixture_encode(symbols, logit_weights, means, log_scales, coeffs, num_levels=256,
                   x_min=-1.0, x_max=1.0, adaptation=0):
  """Encodes subpixels under discretized logistic mixtures (L3C, PixelCNN++).

  Level k stands for the value `x_min + k * (x_max - x_min) / (num_levels - 1)`.

  Args:
    symbols: int32 [..., C], levels in [0, num_levels).
    logit_weights: float32 [..., C, K] mixture logits.
    means: float32 [..., C, K], in units of x.
    log_scales: float32 [..., C, K], natural log of the logistic scales, in units of x.
    coeffs: float32 [..., C*(C-1)/2, K]; channel c's means are shifted by
      `sum_{j<c} coeffs[..., c*(c-1)/2 + j, :] * x_j` (for RGB: alpha, beta, gamma).
    num_levels: number of levels, 2 to 4096.
    x_min: value of level 0.
    x_max: value of the last level.
    adaptation: online adaptation inside the coder (MIXTURE_ADAPT_* flags, 0 for none):
      integer statistics of the errors so far, in contexts of the neighbouring pixels,
      correct each distribution's mean (BIAS) and scale (SCALE), and a map learnt from
      where the levels fell in their CDFs corrects the CDFs' shape (CALIBRATION). Pixels
      [..., H, W] are coded in raster order with rows of W; the decoder must be given the
      same flags.

  Returns:
    A scalar string tensor.
  """
  return load().tfcomp_mixture_encode(_i32(symbols), _f32(logit_weights), _f32(means),
                                      _f32(log_scales), _f32(coeffs), num_levels=num_levels,
                                      x_min=x_min, x_max=x_max, adaptation=adaptation)


def mixture_decode(encoded, logit_weights, means, log_scales, coeffs, num_levels=256,
                   x_min=-1.0, x_max=1.0, adaptation=0):
  """Decodes `mixture_encode`'s output (made with the same `adaptation`); returns int32
  [..., C]."""
  return load().tfcomp_mixture_decode(encoded, _f32(logit_weights), _f32(means),
                                      _f32(log_scales), _f32(coeffs), num_levels=num_levels,
                                      x_min=x_min, x_max=x_max, adaptation=adaptation)


def exact_operands(x, kernel, bias, finest, room, activation_bits=11):
  """(x_int, kernel_scaled, bias_scaled, f): an exact convolution's operands.

  See tfcomp.exact.conv, which computes the same with TensorFlow operations (and
  gradients): this kernel does it in one pass over the input for coding.
  """
  return load().tfcomp_exact_operands(_f32(x), _f32(kernel), _f32(bias), _i32(finest),
                                      _i32(room), activation_bits=activation_bits)


def bias_add(value, bias):
  """value + bias over the last axis, as an op that graph optimizers leave alone.

  TensorFlow's remapper fuses tf.nn.bias_add and a following add of another tensor into
  the convolution before them; oneDNN may then accumulate the convolution's products onto
  that tensor, rounding in an order that depends on the CPU. tfcomp.exact adds its
  (exact) biases with this op, so that its convolutions stay exact.
  """
  return load().tfcomp_bias_add(_f32(value), _f32(bias))
