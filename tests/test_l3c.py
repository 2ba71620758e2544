"""L3C specifics: config, the RGB baselines, gradients, bit accounting per scale, samples.

The codec contract (round trips, damaged files, ...) is in test_lossless_models.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import models, testing
from tfcomp.codecs import lossless

import helpers

TINY = {"num_features": 8, "num_blocks": 1, "num_components": 3}


def test_config_round_trips_and_rejects_bad_values():
  model = models.L3C(**TINY)
  assert models.L3C(**model.get_config()).get_config() == model.get_config()
  with pytest.raises(ValueError, match="num_scales"):
    models.L3C(num_scales=0)
  with pytest.raises(ValueError, match="scale_input"):
    models.L3C(scale_input="nearest")
  with pytest.raises(ValueError, match="shared"):
    models.L3C(shared=True)


@pytest.mark.parametrize("config", [
    {"scale_input": "bicubic"},
    {"scale_input": "bicubic", "shared": True, "fuse_features": False},
])
def test_rgb_baselines_train_and_round_trip(config, tmp_path):
  model = models.L3C(**{**TINY, **config})
  x = tf.constant(testing.smooth_image(32, 32, 3, seed=2)[None])
  _, _, grads = helpers.training_gradients(model, x)
  assert not helpers.without_gradient(grads)
  path = tmp_path / "rgb.npz"
  models.save(model, "l3c", path)
  helpers.roundtrip(lossless.LosslessModelCodec("l3c-rgb", str(path)),
             testing.smooth_image(21, 30, 3, seed=7))


def test_training_gradients_reach_every_weight():
  model = models.L3C(**TINY)
  x = tf.constant(testing.smooth_image(32, 32, 3, seed=2)[None])
  _, _, grads = helpers.training_gradients(model, x)
  assert not helpers.without_gradient(grads)
  assert all(np.isfinite(g.numpy()).all() for _, g in grads)


def test_bits_per_scale_add_up_and_the_top_scale_is_uniform():
  model = models.L3C(**TINY)
  x = tf.constant(testing.smooth_image(64, 32, 3, seed=2)[None])
  out = model(x)
  np.testing.assert_allclose(float(out["bits"][0]),
                             sum(float(b[0]) for b in out["bits_per_scale"]), rtol=1e-5)
  top = (64 // 8) * (32 // 8) * model.latent_channels * np.log2(model.num_centers)
  np.testing.assert_allclose(float(out["bits_per_scale"][-1][0]), top, rtol=1e-6)


def test_samples_have_the_image_shape():
  model = models.L3C(**TINY)
  x = testing.smooth_image(32, 48, 3, seed=2)[None]
  for s in (1, 2, 3):
    drawn = model.sample(x, s)
    assert drawn.shape == x.shape and drawn.dtype == tf.uint8
