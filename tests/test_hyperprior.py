"""Hyperprior model: training outputs, frozen tables, and coding that matches the model."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import models, testing

import helpers

TINY = {"num_filters": 16, "latent_channels": 24, "hyper_filters": 16}


@pytest.mark.parametrize("variant", ["scale", "mean_scale"])
def test_coded_reconstruction_equals_the_model_and_bits_are_close(variant):
  tf.random.set_seed(0)
  model = models.Hyperprior(**TINY, variant=variant)
  x = tf.constant(testing.smooth_image(64, 128, 3, seed=1)[None])
  _, scalars, grads = helpers.training_gradients(model, x)
  assert not helpers.without_gradient(grads) and {"bpp", "psnr", "loss"} <= set(scalars)
  model.make_compressible()
  out = model(x)
  string_y, string_z, y_shape, z_shape = model.compress(x)
  x_hat = model.decompress(string_y, string_z, y_shape, z_shape)
  np.testing.assert_array_equal(x_hat.numpy(), out["x_hat"].numpy())
  assert out["x_hat"].shape == x.shape


def test_coding_needs_frozen_tables():
  model = models.Hyperprior(**TINY)
  with pytest.raises(ValueError, match="make_compressible"):
    model.compress(tf.zeros((1, 64, 64, 3), tf.uint8))


def test_config_and_weights_round_trip_with_the_tables():
  model = models.Hyperprior(**TINY, variant="scale")
  model.make_compressible()
  family, again = models.from_bytes(models.to_bytes(model, "hyperprior"))
  assert family == "hyperprior" and again.get_config() == model.get_config()
  for a, b in zip(model.weights, again.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  with pytest.raises(ValueError, match="variant"):
    models.Hyperprior(variant="autoregressive")


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
  from tfcomp.codecs import lossy  # pylint: disable=import-outside-toplevel
  tf.random.set_seed(2)
  model = models.Hyperprior(**TINY)
  model.make_compressible()
  path = tmp_path_factory.mktemp("hyperprior") / "tiny.npz"
  models.save(model, "hyperprior", path)
  return lossy.LossyModelCodec("hyperprior-tiny", str(path))


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 23, 3), (37, 23, 1), (70, 130, 3)])
def test_files_decode_to_the_estimate_paths_reconstruction(tiny_codec, shape):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  image = testing.smooth_image(*shape, seed=3)
  decoded, _ = codecs.decompress(codecs.compress(image, tiny_codec), lambda _: tiny_codec)
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, tiny_codec.estimate(image)["x_hat"])


def test_damaged_files_raise_a_clear_error(tiny_codec):
  from tfcomp import codecs, container  # pylint: disable=import-outside-toplevel
  data = codecs.compress(testing.smooth_image(64, 64, 3, seed=4), tiny_codec)
  with pytest.raises(container.FormatError):
    codecs.decompress(data[:-5], lambda _: tiny_codec)
