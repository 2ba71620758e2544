"""DiscretizedLogisticMixture: a proper distribution whose estimated bits match real bits."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import testing
from tfcomp.entropy import (DiscretizedLogisticMixture, gradient, initial_params, num_params,
                            split_params)


def _params(rng, shape, channels, components):
  return [tf.constant(p) for p in testing.random_mixture_params(rng, shape, channels,
                                                                 components)]


@pytest.mark.parametrize("num_levels", [2, 25, 256])
def test_probabilities_sum_to_one_over_levels(num_levels):
  model = DiscretizedLogisticMixture(num_levels)
  params = _params(np.random.default_rng(num_levels), (5,), 1, 4)
  levels = tf.range(num_levels)[:, None, None]  # [L, 1, C=1]
  expanded = [tf.broadcast_to(p, (num_levels,) + tuple(p.shape)) for p in params]
  total = tf.reduce_sum(tf.exp(model.log_prob(
      tf.broadcast_to(levels, (num_levels, 5, 1)), *expanded)), axis=0)
  np.testing.assert_allclose(total.numpy(), 1.0, atol=1e-4)


@pytest.mark.parametrize("channels,components", [(1, 5), (3, 10)])
def test_estimated_bits_match_the_real_stream(channels, components):
  """Symbols drawn from the mixtures: the estimate is within 1% of the stream's size."""
  rng = np.random.default_rng(channels)
  model = DiscretizedLogisticMixture()
  raw = testing.random_mixture_params(rng, (100_000,), channels, components)
  x = testing.sample_mixture(rng, *raw)
  params = [tf.constant(p) for p in raw]
  estimate = float(tf.reduce_sum(model.bits(x, *params)))
  stream = model.compress(x, *params).numpy()
  np.testing.assert_array_equal(model.decompress(stream, *params), x)
  assert abs(8 * len(stream) - estimate) < 0.01 * estimate


def test_gradients_are_finite():
  model = DiscretizedLogisticMixture()
  params = _params(np.random.default_rng(3), (64,), 3, 10)
  x = tf.constant(np.random.default_rng(4).integers(0, 256, (64, 3)).astype(np.int32))
  with tf.GradientTape() as tape:
    tape.watch(params)
    loss = tf.reduce_mean(model.bits(x, *params))
  for g in tape.gradient(loss, params):
    assert g is not None and np.isfinite(g.numpy()).all()


def test_config_and_validation():
  model = DiscretizedLogisticMixture(25, -1.0, 1.0)
  assert DiscretizedLogisticMixture(**model.get_config()).get_config() == model.get_config()
  with pytest.raises(ValueError, match="num_levels"):
    DiscretizedLogisticMixture(1)
  with pytest.raises(ValueError, match="x_min < x_max"):
    DiscretizedLogisticMixture(256, 1.0, -1.0)


def test_coefficients_act_on_deviations_from_the_earlier_channels_means():
  """mean_c = m_c + sum_j coeffs_cj (x_j - m_j): at x_j = m_j a channel's mean is its own
  m_c whatever the coefficients, and base_means shifts every mean alike."""
  rng = np.random.default_rng(7)
  raw = tf.constant(rng.normal(0, 1, (4, num_params(3, 5))), tf.float32)
  base = tf.constant(rng.uniform(-1, 1, (4, 3)), tf.float32)
  for base_means in (None, base):
    weights, means, scales, coeffs = split_params(raw, 3, 5, base_means=base_means)
    m = tf.reshape(raw[:, 15:30], [4, 3, 5]) + (0 if base_means is None else base[..., None])
    # The coder's mean of channel c at x_j = m_j (per component, so the same k for each j).
    coded = [means[:, 0]]
    coded.append(means[:, 1] + coeffs[:, 0] * m[:, 0])
    coded.append(means[:, 2] + coeffs[:, 1] * m[:, 0] + coeffs[:, 2] * m[:, 1])
    np.testing.assert_allclose(tf.stack(coded, 1).numpy(), m.numpy(), atol=1e-5)
    assert np.all(np.abs(coeffs.numpy()) < 1)


def test_initial_params_separate_components_and_correlate_channels():
  raw = tf.constant([initial_params(3, 4, -3.0)], tf.float32)
  weights, means, log_scales, coeffs = split_params(raw, 3, 4)
  np.testing.assert_array_equal(weights.numpy(), 0.0)
  np.testing.assert_array_equal(means.numpy(), 0.0)
  # Distinct scales, centred on the one asked for: identical components never separate.
  assert len(set(log_scales.numpy()[0, 0].round(6))) == 4
  np.testing.assert_allclose(log_scales.numpy().mean(-1), -3.0, atol=1e-6)
  # Each channel follows the one before it (G on R, B on G), not the one before that.
  # (on the mixture coder's coefficient grid of 1/4096: tfcomp.exact.tanh)
  np.testing.assert_allclose(coeffs.numpy()[0, :, 0], [0.9, 0.0, 0.9], atol=2**-12)
  assert len(initial_params(1, 1, -2.0)) == num_params(1, 1)


@pytest.mark.parametrize("shape", [(1, 1, 1), (70, 45, 3), (33, 17, 4)])
def test_gradient_coder_estimate_matches_its_streams_and_round_trips(shape):
  coder = gradient.GradientCoder(8, gradient.build_tables(8))
  image = testing.smooth_image(*shape, seed=3)
  residuals, classes = coder.analyze(image)
  streams = [coder.encode_classes(classes).numpy(),
             coder.encode_residuals(residuals, classes).numpy()]
  real = 8 * sum(len(s) for s in streams)
  # rANS flushes a few bytes per stream on top of the information.
  assert coder.bits(image) <= real <= 1.01 * coder.bits(image) + 2 * 128
  decoded_classes = coder.decode_classes(streams[0], shape[2], *shape[:2])
  decoded = coder.reconstruct(coder.decode_residuals(streams[1], decoded_classes, *shape[:2]))
  np.testing.assert_array_equal(decoded, image)
  assert decoded.dtype == np.uint8


def test_gradient_coder_refuses_bad_tables_and_corrupted_classes():
  tables = gradient.build_tables(8)
  with pytest.raises(ValueError, match="lack.*class_cdf"):
    gradient.GradientCoder(8, {k: v for k, v in tables.items() if k != "class_cdf"})
  with pytest.raises(ValueError, match="bit_depth must be 8 or 16, got 12"):
    gradient.build_tables(12)
  coder = gradient.GradientCoder(8, tables)
  # A class beyond the table is coded through the escape, as a damaged stream can decode.
  stream = coder.encode_classes(np.full((3, 1, 1), coder.num_classes + 5, np.int32))
  with pytest.raises(tf.errors.InvalidArgumentError, match="classes out of range"):
    coder.decode_classes(stream, 3, 16, 16)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_gradient_classes_are_the_nearest_log_scale_on_every_block_mean(bit_depth):
  """The class rule of exact arithmetic picks what the nearest log-scale picks, on every
  mean |residual| a block can have: a sum of |r| <= 2^(B-1) per sample over 1 to 16 rows
  and columns (for 16 bits, the sums next to each boundary: both rules grow with the mean)."""
  scales = gradient.build_tables(bit_depth)["scales"]
  boundaries = np.sqrt(scales[:-1] * scales[1:])
  means = []
  for count in {rows * cols for rows in range(1, 17) for cols in range(1, 17)}:
    most = 2**(bit_depth - 1) * count
    sums = (np.arange(most + 1) if bit_depth == 8 else
            np.clip(np.floor(boundaries * count)[:, None] + np.arange(-2, 4), 0, most))
    means.append(np.maximum(np.ravel(sums) / count, 1e-3))
  means = np.concatenate(means)
  nearest = np.abs(np.log(means)[:, None] - np.log(scales)).argmin(-1)
  np.testing.assert_array_equal(gradient.scale_classes(means, scales), nearest)
