"""SReC specifics: the pyramid, gradients and bit accounting per part.

The codec contract (round trips, damaged files, ...) is in test_lossless_models.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import models, testing, training
from tfcomp.models import srec

import helpers

TINY = {"num_features": 8, "num_blocks": 1, "num_components": 3}


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (6, 3)])
def test_pyramid_sums_rounds_and_recovers_every_level(shape):
  y = tf.constant(np.random.default_rng(0).integers(0, 256, (1,) + shape + (3,)), tf.int32)
  s = srec.block_sum(y)
  assert s.shape[1:3] == ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
  avg = srec.round_average(s)
  delta = s - 4 * avg
  assert np.all((delta.numpy() >= -1) & (delta.numpy() <= 2))
  np.testing.assert_array_equal(avg.numpy(), np.floor(s.numpy() / 4 + 0.5 - 1e-9))
  tl, tr, bl, br = srec.quarters(y)
  np.testing.assert_array_equal((tl + tr + bl + br).numpy(), s.numpy())


def test_gradients_reach_every_weight_and_parts_add_up():
  model = models.SReC(**TINY)
  x = tf.constant(testing.smooth_image(32, 48, 3, seed=2)[None])
  out, _, grads = helpers.training_gradients(model, x)
  assert not helpers.without_gradient(grads)
  parts = out["bits_per_level"]
  np.testing.assert_allclose(float(out["bits"][0]), sum(float(b[0]) for b in parts.values()),
                             rtol=1e-5)
  # Uniform parts: 8 bits per top-level subpixel, 2 per subpixel of each level's deltas.
  assert float(parts["y3"][0]) == 4 * 6 * 3 * 8
  assert float(parts["delta1"][0]) == 16 * 24 * 3 * 2


def test_config_round_trips_and_rejects_bad_values():
  model = models.SReC(**TINY)
  assert models.SReC(**model.get_config()).get_config() == model.get_config()
  with pytest.raises(ValueError, match="num_levels"):
    models.SReC(num_levels=0)
  with pytest.raises(ValueError, match="top_coder must be one of .*, got 'png'"):
    models.SReC(top_coder="png")


def test_gradient_top_costs_less_than_uniform_and_its_estimate_is_real():
  uniform = models.SReC(**TINY)
  model = models.SReC(**TINY, top_coder="gradient")
  image = testing.smooth_image(256, 200, 3, seed=5)
  x = tf.constant(image[None])
  top_bits = float(model(x)["bits_per_level"]["y3"][0])
  assert top_bits < 0.8 * float(uniform(x)["bits_per_level"]["y3"][0])
  streams = [s.numpy() for s in model.compress(x)]
  assert len(streams) == model.num_streams == 2 + 4 * 3
  # rANS flushes a few bytes per stream on top of the information.
  assert top_bits <= 8 * (len(streams[0]) + len(streams[1])) <= 1.01 * top_bits + 2 * 128
  np.testing.assert_array_equal(model.decompress(streams, None, 256, 200)[0], image)


def test_gradient_top_tables_are_stored_weights(tmp_path):
  model = models.SReC(**TINY, top_coder="gradient")
  models.build_variables(model)
  weights = training.named_weights(model)
  assert {"top/cdf", "top/class_cdf"} <= set(weights)
  assert not any("top/" in v.name for v in model.trainable_variables)
  # A decoder codes with the stored tables, not ones rebuilt at construction.
  weights["top/cdf"].assign(weights["top/cdf"] // 2)
  models.save(model, "srec", tmp_path / "m.npz")
  _, loaded = models.load(tmp_path / "m.npz")
  np.testing.assert_array_equal(training.named_weights(loaded)["top/cdf"].numpy(),
                                weights["top/cdf"].numpy())
