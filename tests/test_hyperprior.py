"""Hyperprior model: training outputs, frozen tables, and coding that matches the model."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import models, testing

TINY = {"num_filters": 16, "latent_channels": 24, "hyper_filters": 16}


@pytest.mark.parametrize("variant", ["scale", "mean_scale"])
def test_coded_reconstruction_equals_the_model_and_bits_are_close(variant):
  tf.random.set_seed(0)
  model = models.Hyperprior(**TINY, variant=variant)
  x = tf.constant(testing.smooth_image(64, 128, 3, seed=1)[None])
  with tf.GradientTape() as tape:
    out = model(x, training=True)
    loss, scalars = model.loss_and_scalars(x, out)
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in grads) and {"bpp", "psnr", "loss"} <= set(scalars)
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
