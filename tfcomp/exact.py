"""Exactly specified arithmetic for the networks whose outputs decide probabilities.

A decoder must recompute the encoder's probabilities bit for bit, on any CPU, instruction
set, thread count and TensorFlow build. Floating-point sums are not that: convolution
backends (oneDNN's kernels per instruction set, Eigen, other builds) add the products of
one output in different orders and round differently, and transcendental functions differ
between implementations. Integer networks are the published remedy (Ballé, Johnston,
Minnen, "Integer networks for data compression with latent-variable models", ICLR 2019).
tfcomp's form of them keeps TensorFlow's fast float32 convolutions but makes every sum
exact, so that no order of summation can change it:

    x --round to the grid 2^-f-------------> X 2^-f       |X| <= 2^10 (f per call,
                                                            from max|x|: 11 bits)
    w --round to the grid 2^-e_c-----------> W 2^-e_c     sum_i |W_ic| <= 12288 for each
                                                            output channel c
    b --round to the grid 2^-(f + e_c)-----> B 2^-(f+e_c) |B| <= 2^22 (e_c made coarser
                                                            where a large bias needs it)
    y_c = conv(X 2^-f, W 2^-e_c) + B 2^-(f+e_c) = (sum_i X_i W_ic + B_c) 2^-(f+e_c)

Every partial sum of every output is an integer multiple of 2^-(f + e_c) smaller in
magnitude than 2^24 of them, which float32 represents exactly; so every backend, in any
order, vectorized or not, with or without fused multiply-adds, computes the same y. The
grids are powers of two found from the tensors themselves with exact operations (maxima,
exponent bits, sums of integers), so they need no calibration, are the same in training
and coding, and are a function of the weights and the input alone. The elementwise
operations between convolutions (ReLU, sums, concatenation, depth_to_space, scaling) are
IEEE operations whose results are fixed by their inputs. A transcendental function that
feeds a probability (`tanh`) takes inputs on a coarse grid and rounds its float64 result to
a coarse grid that no float64 implementation's error can cross, instead of trusting the
platform's float32 implementation.

Training uses the same arithmetic with straight-through gradients (quantization in the
loop), so the bits a model estimates are the bits it codes.
"""
import functools

import numpy as np
import tensorflow as tf

from tfcomp import ops

ACTIVATION_BITS = 11  # |X| <= 2^(ACTIVATION_BITS - 1)
ACC_LIMIT = 2**24  # float32 represents every integer up to this exactly
BIAS_LIMIT = 2**22
L1_LIMIT = (ACC_LIMIT - BIAS_LIMIT) // 2**(ACTIVATION_BITS - 1)  # sum |W| per output
WEIGHT_LIMIT = 2**14  # |W| < this; the L1 bound then decides
# Grid exponents stay where 2^e and 2^-(f + e) are normal float32 numbers.
EXP_MIN, EXP_MAX = -48, 48
# Kernel grids tried per output channel, from the one where max|W| < WEIGHT_LIMIT down:
# at the last one every |W| < 1/4 rounds to 0, so some grid always satisfies the bound.
_KERNEL_GRIDS = 17

# tanh on the grid of the mixture coder's coefficients (1/4096), over inputs on that grid.
TANH_BITS = 12
TANH_RANGE = 8.0


def floor_log2(v):
  """floor(log2(v)) of float32 v > 0 as int32, read from the exponent bits (exact);
  -127 for 0 and subnormals, below any normal number's."""
  bits = tf.bitcast(tf.cast(v, tf.float32), tf.int32)
  return tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 23), 0xFF) - 127


def pow2(e):
  """2^e as float32 for int32 e in [-126, 127], built from its exponent bits (exact)."""
  return tf.bitcast(tf.bitwise.left_shift(tf.cast(e, tf.int32) + 127, 23), tf.float32)


def _ste(x, q):
  """q forward, the identity backward."""
  return x + tf.stop_gradient(q - x)


def kernel_grids(kernel, up=1):
  """e [out]: each output channel's finest kernel grid exponent within the L1 bound.

  e_c is the largest exponent at which the rounded kernel's L1 norm of channel c stays
  within L1_LIMIT; the norms are sums of integers, compared against a bound far below
  2^24, so they decide the same way in any order. A transposed convolution upsampling by
  `up` sums, for each output, only the taps of one phase (kernel[i::up, j::up]): the
  bound then holds per phase.
  """
  out = tf.shape(kernel)[-1]
  flat = tf.reshape(kernel, [-1, out])
  top = (floor_log2(WEIGHT_LIMIT) - 1) - floor_log2(tf.reduce_max(tf.abs(flat), axis=0))
  candidates = tf.clip_by_value(top[None, :] - tf.range(_KERNEL_GRIDS)[:, None],
                                EXP_MIN, EXP_MAX)  # [grids, out]
  grid = pow2(candidates)[:, None, None, None, :]
  l1 = tf.reduce_max(tf.stack([  # [grids, out]
      tf.reduce_sum(tf.abs(tf.round(kernel[None, i::up, j::up] * grid)), axis=[1, 2, 3])
      for i in range(up) for j in range(up)]), axis=0)
  first = tf.reduce_min(tf.where(l1 <= L1_LIMIT, tf.range(_KERNEL_GRIDS)[:, None],
                                 _KERNEL_GRIDS - 1), axis=0)
  return tf.gather(tf.transpose(candidates), first, batch_dims=1)


def input_grid(x):
  """f: the finest input grid exponent at which |X| <= 2^10 over all of x.

  One grid per call, not per example: the codecs code one tile per call, and a batch of
  training crops then costs one pass for its maximum.
  """
  peak = tf.maximum(tf.reduce_max(x), -tf.reduce_min(x))
  f = (ACTIVATION_BITS - 2) - floor_log2(peak)  # |x| < 2^(floor_log2(peak) + 1)
  return tf.clip_by_value(f, EXP_MIN, EXP_MAX)


def weight_grids(kernel, bias, up=1):
  """(finest [out], room [out]): kernel_grids(kernel, up), and for each output channel
  the largest accumulator grid exponent f + e_c at which its bias fits its bound. They
  depend on the weights alone: a model whose weights no longer change computes them once
  (tfcomp.models.layers.freeze_exact_grids)."""
  # |b| 2^(f + e) < 2^(floor_log2|b| + 1 + f + e) <= BIAS_LIMIT
  return kernel_grids(kernel, up), floor_log2(BIAS_LIMIT) - (floor_log2(tf.abs(bias)) + 1)


def conv(x, kernel, bias, convolve, training=False, up=1, frozen=None):
  """convolve(x, kernel) + bias [..., out] computed exactly (see the module docstring).

  `convolve(inputs, kernel)` is a 2-D convolution (strided or dilated; or transposed,
  upsampling by `up`) with a kernel [h, w, in, out]: its outputs sum products of one
  input and one kernel entry of their output channel. The input grid's scale 2^-f moves
  onto the kernel, exactly: the input passes as the integers X, the kernel as
  W 2^-(e + f). `frozen`: weight_grids(kernel, bias, up) computed beforehand, for weights
  that no longer change (it only saves work).

  Each kernel grid e_c is the finest within the L1 bound, coarsened where the bias would
  not fit its bound on the accumulator grid 2^-(f + e_c). Without training, one kernel
  (tfcomp.ops.exact_operands) computes the operands: the same numbers as the operations
  here, in a fraction of the time and of the graph.
  """
  kernel, bias = tf.convert_to_tensor(kernel), tf.convert_to_tensor(bias)
  finest, room = (weight_grids(tf.stop_gradient(kernel), tf.stop_gradient(bias), up)
                  if frozen is None else frozen)
  if not training:
    # ops.bias_add, not tf.nn.bias_add: TensorFlow would fuse a residual sum after it into
    # the convolution, which oneDNN may then accumulate onto that summand (see there).
    x_int, w_q, b_q, _ = ops.exact_operands(x, kernel, bias, finest, room, ACTIVATION_BITS)
    return ops.bias_add(convolve(x_int, w_q), b_q)
  f = input_grid(tf.stop_gradient(x))
  e = tf.clip_by_value(tf.minimum(finest, room - f), EXP_MIN, EXP_MAX)
  acc = e + f  # each output channel's accumulator grid
  up_e, up_acc, down_acc = tf.split(pow2(tf.concat([e, acc, -acc], 0)), 3)
  scaled = x * pow2(f)
  x_int = _ste(scaled, tf.round(scaled))
  w_q = _ste(kernel * up_e, tf.round(kernel * up_e))  # W
  b_q = _ste(bias * up_acc, tf.clip_by_value(tf.round(bias * up_acc), -BIAS_LIMIT, BIAS_LIMIT))
  return tf.nn.bias_add(convolve(x_int, w_q * down_acc), b_q * down_acc)


@functools.lru_cache(maxsize=None)
def tanh_table():
  """round(tanh(k / 4096) * 4096) / 4096 for k = -8 * 4096 .. 8 * 4096: the values `tanh`
  looks up.

  Computed in float64; every entry lies more than 1e-7 grid steps from a rounding
  boundary (checked), so any tanh accurate to far less than that, as every float64 tanh
  is, gives the same table on any machine.
  """
  scale = 2.0**TANH_BITS
  k = np.arange(-TANH_RANGE * scale, TANH_RANGE * scale + 1)
  t = np.tanh(k / scale) * scale
  margin = np.abs(np.abs(t - np.floor(t)) - 0.5).min()
  if margin < 1e-7:
    raise RuntimeError(f"tanh table entry within {margin} of a rounding boundary")
  return (np.round(t) / scale).astype(np.float32)


def _traced_tanh_table():
  """tanh_table's values, computed by TF ops where a traced function runs: float64 tanh of
  every grid input, rounded to the grid (the same values on every machine: a float64 tanh
  errs by about 1e-16, and no exact value lies within 2e-11 of a rounding boundary)."""
  scale = 2.0**TANH_BITS
  grid = tf.range(-TANH_RANGE * scale, TANH_RANGE * scale + 1, dtype=tf.float64) / scale
  return tf.cast(tf.round(tf.tanh(grid) * scale) / scale, tf.float32)


def tanh(x):
  """tanh(x) on the 1/4096 grid, looked up in tanh_table's values for x rounded to the
  1/4096 grid in [-8, 8]; the gradient is tanh's.

  Eagerly (the file codecs), the table is tanh_table's, checked on this machine. Traced, it
  is built by ops in the function (65,537 float64 tanh, a fraction of a millisecond), not
  stored in it: a SavedModel would otherwise carry 256 KB per mixture.
  """
  scale = 2.0**TANH_BITS
  index = tf.cast(tf.clip_by_value(tf.round(x * scale), -TANH_RANGE * scale,
                                   TANH_RANGE * scale) + TANH_RANGE * scale, tf.int32)
  table = _traced_tanh_table() if tf.inside_function() else tanh_table()
  return _ste(tf.tanh(x), tf.gather(table, index))
