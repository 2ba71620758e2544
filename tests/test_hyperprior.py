"""Hyperprior model: training outputs, frozen tables, and coding that matches the model."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import models, testing

import helpers

TINY = helpers.TINY_LOSSY


@pytest.mark.parametrize("variant", ["scale", "mean_scale"])
def test_coded_reconstruction_equals_the_model_and_bits_are_close(variant):
  tf.random.set_seed(0)
  # scale_min=1: an untrained model predicts the smallest scale everywhere, where values
  # off the center cost far more under the Gaussian than in the coder's escape path.
  model = models.Hyperprior(**TINY, variant=variant, scale_min=1.0)
  x = tf.constant(testing.smooth_image(64, 128, 3, seed=1)[None])
  _, scalars, grads = helpers.training_gradients(model, x)
  assert not helpers.without_gradient(grads) and {"bpp", "psnr", "loss"} <= set(scalars)
  model.make_compressible()
  out = model(x)
  x_hat = model.decompress(model.compress(x), 64, 128)
  np.testing.assert_array_equal(x_hat.numpy(), out["x_hat"].numpy())
  assert out["x_hat"].shape == x.shape
  # Rate: a textured image, so that the strings' few bytes of flush overhead stay small.
  x = tf.constant(np.random.default_rng(1).integers(0, 256, (1, 128, 192, 3), np.uint8))
  estimate = float(model(x)["bits"][0])
  real = 8 * sum(len(s.numpy()) for s in model.compress(x))
  assert estimate > 3000 and abs(real / estimate - 1) < 0.01, (real, estimate)


@pytest.mark.parametrize("ste_decoder", [False, True])
def test_ste_decoder_trains_g_s_on_rounded_y_and_the_rate_on_noisy_y(ste_decoder):
  tf.random.set_seed(3)
  # The scale variant has no mean, so rounded y is integral.
  model = models.Hyperprior(**TINY, variant="scale", ste_decoder=ste_decoder)
  assert models.Hyperprior(**model.get_config()).get_config() == model.get_config()
  x = tf.constant(testing.smooth_image(64, 64, 3, seed=4)[None])
  tf.random.set_seed(5)
  out = model(x, training=True)
  y_hat = out["y_hat"].numpy()
  assert np.array_equal(y_hat, np.round(y_hat)) == ste_decoder
  np.testing.assert_allclose(out["x_hat"].numpy(), (model.g_s(out["y_hat"]) * 255).numpy(),
                             rtol=1e-5, atol=1e-3)
  # Noisy y in the rate either way: the same noise gives the same bits.
  other = models.Hyperprior(**TINY, variant="scale", ste_decoder=not ste_decoder)
  other.set_weights(model.get_weights())
  tf.random.set_seed(5)
  again = other(x, training=True)
  tf.random.set_seed(5)
  out = model(x, training=True)
  np.testing.assert_allclose(again["bits"].numpy(), out["bits"].numpy(), rtol=1e-5)
  # Straight-through: the distortion still reaches g_a.
  with tf.GradientTape() as tape:
    mse = model(x, training=True)["mse"]
  grads = tape.gradient(mse, model.g_a.trainable_variables)
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


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
  return helpers.tiny_lossy_codec(tmp_path_factory.mktemp("hyperprior") / "tiny.npz")


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 23, 3), (37, 23, 1), (70, 130, 3)])
def test_files_decode_to_the_estimate_paths_reconstruction(tiny_codec, shape):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  image = testing.smooth_image(*shape, seed=3)
  decoded, _ = codecs.decompress(codecs.compress(image, tiny_codec), lambda _: tiny_codec)
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, tiny_codec.estimate(image)["x_hat"])


def test_alpha_and_16_bit_images_are_refused_with_the_way_out(tiny_codec):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  for image, kind in ((np.zeros((4, 4, 4), np.uint8), "8-bit RGBA"),
                      (np.zeros((4, 4, 1), np.uint16), "16-bit gray")):
    with pytest.raises(codecs.UnsupportedImageError, match=f"not {kind}; convert it first"):
      codecs.compress(image, tiny_codec)


def test_damaged_files_raise_a_clear_error(tiny_codec):
  from tfcomp import codecs, container  # pylint: disable=import-outside-toplevel
  data = codecs.compress(testing.smooth_image(64, 64, 3, seed=4), tiny_codec)
  with pytest.raises(container.FormatError):
    codecs.decompress(data[:-5], lambda _: tiny_codec)


def test_refined_latents_cost_less_and_decode_to_what_the_encoder_fitted():
  from tfcomp import codecs, zoo  # pylint: disable=import-outside-toplevel
  # A trained model: an untrained one's distortion barely moves with its latents.
  codec = zoo.load("hyperprior-ms-v5-q3")
  image = testing.smooth_image(64, 128, 3, seed=6)
  plain = codecs.compress(image, codec)
  assert codecs.compress(image, codec, refine_steps=0) == plain
  refined = codecs.compress(image, codec, refine_steps=20)
  assert refined != plain
  model = codec.model
  # Seeded noise: fitting again gives the same latents, whose coded reconstruction the
  # file decodes to.
  y, z = model.refine_latents(tf.constant(image[None]), 20)
  z_hat = model.side_entropy_model.quantize(z)
  mean, _ = model._mean_and_index(z_hat, tf.shape(y)[1:3])  # pylint: disable=protected-access
  fitted = tf.saturate_cast(tf.round(model.g_s(model.entropy_model.quantize(y, loc=mean))
                                     * 255.0), tf.uint8)[0].numpy()
  costs = []
  for data in (plain, refined):
    decoded, _ = codecs.decompress(data, zoo.load)
    mse = np.mean(np.square(decoded.astype(np.float64) - image))
    costs.append(8 * len(data) / (64 * 128) + model.lmbda * mse)
  np.testing.assert_array_equal(decoded, fitted)
  assert costs[1] < 0.97 * costs[0], costs
  with pytest.raises(ValueError, match="cannot refine"):
    codecs.compress(image, zoo.load("fixedpred-v1"), refine_steps=5)
  with pytest.raises(ValueError, match="refine_steps"):
    codecs.compress(image, codec, refine_steps=-1)


def test_a_frozen_model_restores_into_a_training_run(tmp_path):
  """A zoo model can be trained on: its weights restore, its coding tables do not (the
  prior changes under training, and freezing derives them again)."""
  from tfcomp import training  # pylint: disable=import-outside-toplevel
  tf.random.set_seed(6)
  frozen = models.Hyperprior(**TINY)
  models.build_variables(frozen)
  frozen.make_compressible()
  path = str(tmp_path / "frozen.npz")
  models.save(frozen, "hyperprior", path)
  model = models.Hyperprior(**TINY)
  models.build_variables(model)
  training._restore_weights(model, "hyperprior", path)  # pylint: disable=protected-access
  restored, source = training.named_weights(model), training.named_weights(frozen)
  assert set(restored) < set(source) and any("DeepFactorized" in name for name in restored)
  for name, w in restored.items():
    np.testing.assert_array_equal(w.numpy(), source[name].numpy(), err_msg=name)
  assert not model.compression
