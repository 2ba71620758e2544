"""tfcomp.exact: every sum exact, so no order of summation changes a bit."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import exact
from tfcomp.models import layers


def _conv(x, k):
  return tf.nn.conv2d(x, k, 1, "SAME")


def _up(x, k):  # what layers.up_conv computes: 2x upsampling, 5x5 kernel
  shape = tf.shape(x)
  return tf.nn.conv2d_transpose(x, tf.transpose(k, [0, 1, 3, 2]),
                                tf.stack([shape[0], 2 * shape[1], 2 * shape[2], k.shape[-1]]),
                                2, [(0, 0), (2, 2), (2, 2), (0, 0)])


def _operands(seed, size=5, channels=48, outputs=6, scale=3.0):
  rng = np.random.default_rng(seed)
  x = rng.normal(0, scale, (2, 9, 11, channels)).astype(np.float32)
  kernel = rng.normal(0, 0.3, (size, size, channels, outputs)).astype(np.float32)
  kernel[..., 0] *= 1e-3  # channels of very different magnitudes get their own grids
  kernel[..., 1] = 0.0  # and an all-zero one (zero-initialized layers)
  bias = rng.normal(0, 2, outputs).astype(np.float32)
  return x, kernel, bias


def _quantized_operands(x, kernel, bias, up=1):
  """The integers and grids exact.conv computes with, in numpy."""
  finest, room = (t.numpy() for t in exact.weight_grids(kernel, bias, up))
  f = int(exact.input_grid(x))
  e = np.clip(np.minimum(finest, room - f), exact.EXP_MIN, exact.EXP_MAX)
  x_int = np.round(x.astype(np.float64) * 2.0**f)
  w_int = np.round(kernel.astype(np.float64) * 2.0**e)
  b_int = np.round(bias.astype(np.float64) * 2.0**(f + e))
  return x_int, w_int, b_int, f, e


@pytest.mark.parametrize("up", [1, 2])
def test_grids_keep_every_partial_sum_below_2_to_24(up):
  x, kernel, bias = _operands(1)
  x_int, w_int, b_int, _, _ = _quantized_operands(x, kernel, bias, up)
  assert np.abs(x_int).max() <= 2**(exact.ACTIVATION_BITS - 1)
  phases = [np.abs(w_int[i::up, j::up]).sum(axis=(0, 1, 2)) for i in range(up)
            for j in range(up)]
  worst = np.max(phases, axis=0) * 2**(exact.ACTIVATION_BITS - 1) + np.abs(b_int)
  assert worst.max() <= exact.ACC_LIMIT
  # The grids are the finest the bounds allow: one step finer breaks one of them.
  finer = np.max(phases, axis=0) > exact.L1_LIMIT / 2
  assert (finer | (np.abs(b_int) * 2 > exact.BIAS_LIMIT))[2:].all()


@pytest.mark.parametrize("up", [1, 2])
def test_conv_equals_the_exact_sum_of_its_integers(up):
  x, kernel, bias = _operands(2)
  got = exact.conv(tf.constant(x), tf.constant(kernel), tf.constant(bias),
                   _up if up == 2 else _conv, up=up).numpy()
  x_int, w_int, b_int, f, e = _quantized_operands(x, kernel, bias, up)
  # float64 holds these sums exactly: the reference has no rounding at all.
  fn = _up if up == 2 else _conv
  acc = fn(tf.constant(x_int), tf.constant(w_int * 2.0**-e)).numpy() * 2.0**-f
  want = acc + b_int * 2.0**-(f + e)
  np.testing.assert_array_equal(got.astype(np.float64), want)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_coding_kernel_and_training_operations_compute_the_same_bits(scale):
  x, kernel, bias = _operands(9, size=3, channels=16, scale=scale)
  bias[2] = 5e4  # a bias that coarsens its channel's grid
  args = (tf.constant(x), tf.constant(kernel), tf.constant(bias), _conv)
  coded = exact.conv(*args).numpy()
  trained = exact.conv(*args, training=True).numpy()
  np.testing.assert_array_equal(coded, trained)  # (rounding may differ in the sign of 0)


def test_conv_bits_do_not_depend_on_the_order_of_summation():
  x, kernel, bias = _operands(3, size=3, channels=64, outputs=8)
  order = np.random.default_rng(4).permutation(x.shape[-1])
  run = lambda a, k: exact.conv(tf.constant(a), tf.constant(k), tf.constant(bias),  # noqa: E731
                                _conv).numpy()
  first, shuffled = run(x, kernel), run(x[..., order], kernel[:, :, order])
  assert first.tobytes() == shuffled.tobytes()
  # A 1x1 convolution as a matrix product, reversed: the same bits again.
  flat = run(x[:, :, :, ::-1], kernel[1:2, 1:2, ::-1])
  one = run(x, kernel[1:2, 1:2])
  assert flat.tobytes() == one.tobytes()


def test_inputs_of_any_magnitude_stay_exact():
  _, kernel, bias = _operands(5, size=3, channels=8)
  for scale in (1e-30, 1e-3, 1.0, 1e6):
    x = np.random.default_rng(6).normal(0, scale, (1, 6, 7, 8)).astype(np.float32)
    y = exact.conv(tf.constant(x), tf.constant(kernel), tf.constant(bias), _conv).numpy()
    assert np.isfinite(y).all()
  zeros = exact.conv(tf.zeros((1, 4, 4, 8)), tf.constant(kernel), tf.constant(bias), _conv)
  np.testing.assert_allclose(zeros.numpy(), np.broadcast_to(bias, (1, 4, 4, 6)), rtol=1e-3)


def test_training_passes_gradients_through_the_grids():
  x, kernel, bias = (tf.Variable(t) for t in _operands(7, size=3, channels=8))
  with tf.GradientTape() as tape:
    y = exact.conv(x, kernel, bias, _conv, training=True)
    loss = tf.reduce_sum(y ** 2)
  for g in tape.gradient(loss, [x, kernel, bias]):
    assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0


def test_snapped_kernels_compute_what_they_did():
  layer = layers.conv(6, 3, exact=True)
  x = tf.constant(_operands(8, size=3, channels=16)[0])
  layer(x)
  layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, (1, 1)) * 0.2)
  before = layer(x).numpy()
  layers.snap_exact_kernels(tf.keras.Sequential([layer]))
  assert layer(x).numpy().tobytes() == before.tobytes()
  grid = exact.pow2(exact.kernel_grids(layer.kernel))
  np.testing.assert_array_equal(layer.kernel * grid, np.round(layer.kernel * grid))


def test_tanh_is_the_reference_table_eager_traced_and_compiled():
  """Every grid input, eagerly, traced and under XLA: the table's exact values."""
  table = exact.tanh_table()
  k = tf.range(-8 * 4096, 8 * 4096 + 1, dtype=tf.float32) / 4096
  for fn in (exact.tanh, tf.function(exact.tanh), tf.function(exact.tanh, jit_compile=True)):
    assert fn(k).numpy().tobytes() == table.tobytes()
  # Past the range, the ends; between grid points, the nearest one's value.
  assert exact.tanh(tf.constant([-50.0, 50.0])).numpy().tolist() == [table[0], table[-1]]
  between = exact.tanh(tf.constant([0.3 + 0.4 / 4096])).numpy()[0]
  assert between == table[8 * 4096 + round(0.3 * 4096)]


def test_tanh_table_is_tanh_on_the_coefficient_grid():
  x = tf.linspace(-10.0, 10.0, 20001)
  got = exact.tanh(x).numpy()
  np.testing.assert_allclose(got, np.tanh(x.numpy()), atol=1.5 / 4096)
  assert (np.diff(got) >= 0).all() and (got * 4096 == np.round(got * 4096)).all()
  np.testing.assert_array_equal(got, -exact.tanh(-x).numpy())
