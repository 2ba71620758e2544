"""L3C: the model's contract, its real bitstreams and the tiled lossless codec around it.

A tiny randomly initialized model keeps these fast: exactness and bit accounting do not
depend on training. The shipped weights are tested through the zoo in test_zoo.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import codecs, container, models, testing
from tfcomp.codecs import lossless

TINY = {"num_features": 8, "num_blocks": 1, "num_components": 3}


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
  tf.random.set_seed(1)
  model = models.L3C(**TINY)
  models.build_variables(model)
  path = tmp_path_factory.mktemp("l3c") / "tiny.npz"
  models.save(model, "l3c", path)
  return lossless.LosslessModelCodec("l3c-tiny", str(path))


def _roundtrip(codec, image):
  data = codecs.compress(image, codec)
  decoded, parsed = codecs.decompress(data, lambda _: codec)
  np.testing.assert_array_equal(decoded, image)
  assert decoded.dtype == image.dtype and decoded.shape == image.shape
  return data, parsed


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 513, 3), (37, 23, 3), (37, 23, 1),
                                   (16, 16, 1), (9, 8, 3)])
def test_round_trip_is_bit_exact(tiny_codec, shape):
  image = testing.smooth_image(shape[0], shape[1], shape[2], seed=sum(shape))
  _roundtrip(tiny_codec, image)


def test_tiled_large_image_round_trips(tiny_codec):
  image = testing.smooth_image(2000, 3000, 3, seed=3)
  assert len(lossless.tile_boxes(2000, 3000)) == 6
  _roundtrip(tiny_codec, image)


def test_random_noise_round_trips(tiny_codec):
  image = np.random.default_rng(0).integers(0, 256, (40, 33, 3), dtype=np.uint8)
  _roundtrip(tiny_codec, image)


def test_real_bits_within_two_percent_of_the_estimate(tiny_codec):
  image = testing.smooth_image(96, 128, 3, seed=8)
  real = 8 * len(tiny_codec.compress(image)[lossless.SECTION])
  estimate = tiny_codec.estimate(image)["bits"]
  assert abs(real - estimate) < 0.02 * estimate


def test_grayscale_codes_one_channel(tiny_codec):
  gray = testing.smooth_image(64, 64, 1, seed=4)
  rgb = np.repeat(gray, 3, axis=2)
  gray_bits = tiny_codec.estimate(gray)["bits"]
  assert gray_bits < tiny_codec.estimate(rgb)["bits"]
  assert len(tiny_codec.compress(gray)[lossless.SECTION]) < len(
      tiny_codec.compress(rgb)[lossless.SECTION])


def test_saved_and_reloaded_weights_give_the_identical_bitstream(tiny_codec, tmp_path):
  path = tmp_path / "again.npz"
  models.save(tiny_codec.model, "l3c", path)
  reloaded = lossless.LosslessModelCodec("l3c-tiny", str(path))
  assert reloaded.weights_hash == tiny_codec.weights_hash
  image = testing.smooth_image(40, 56, 3, seed=9)
  assert reloaded.compress(image) == tiny_codec.compress(image)


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_chunk"])
def test_damaged_files_raise_a_clear_error(tiny_codec, damage):
  image = testing.smooth_image(48, 40, 3, seed=10)
  data = bytearray(codecs.compress(image, tiny_codec))
  if damage == "truncate":
    data = data[:len(data) - 7]
  elif damage == "flip":
    data[-20] ^= 0x10
  else:
    parsed = container.read(bytes(data))
    chunks = container.unpack_chunks(parsed.sections[lossless.SECTION], 4)
    data = container.write(container.Container(
        parsed.model, parsed.weights_hash, parsed.geometry,
        {lossless.SECTION: container.pack_chunks(chunks[:3]),
         codecs.PIXEL_CRC_SECTION: parsed.sections[codecs.PIXEL_CRC_SECTION]}))
  with pytest.raises(container.FormatError):
    codecs.decompress(bytes(data), lambda _: tiny_codec)


def test_unsupported_images_name_the_alternative(tiny_codec):
  for image in (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16)):
    with pytest.raises(codecs.UnsupportedImageError, match="fixedpred"):
      codecs.compress(image, tiny_codec)


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
  with tf.GradientTape() as tape:
    out = model(x, training=True)
  grads = tape.gradient(out["bpsp"], model.trainable_variables)
  assert all(g is not None for g in grads)
  path = tmp_path / "rgb.npz"
  models.save(model, "l3c", path)
  _roundtrip(lossless.LosslessModelCodec("l3c-rgb", str(path)),
             testing.smooth_image(21, 30, 3, seed=7))


def test_training_gradients_reach_every_weight():
  model = models.L3C(**TINY)
  x = tf.constant(testing.smooth_image(32, 32, 3, seed=2)[None])
  with tf.GradientTape() as tape:
    out = model(x, training=True)
  grads = tape.gradient(out["bpsp"], model.trainable_variables)
  missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
  assert not missing
  assert all(np.isfinite(g.numpy()).all() for g in grads)


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
