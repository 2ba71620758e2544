"""DiscretizedLogisticMixture: a proper distribution whose estimated bits match real bits."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import testing
from tfcomp.entropy import DiscretizedLogisticMixture


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
