"""The lossless codec contract, for every learned lossless family (tiny random models).

Exactness and bit accounting do not depend on training, so tiny randomly initialized
models keep these fast; family-specific behaviour is tested in test_<family>.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import codecs, container, models, testing
from tfcomp.codecs import lossless

import helpers

TINY = {
    "l3c": {"num_features": 8, "num_blocks": 1, "num_components": 3},
    "srec": {"num_features": 8, "num_blocks": 1, "num_components": 3},
}


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny_codec(request, tmp_path_factory):
  family = request.param
  tf.random.set_seed(1)
  model = models.build(family, TINY[family])
  models.build_variables(model)
  path = tmp_path_factory.mktemp(family) / "tiny.npz"
  models.save(model, family, path)
  return lossless.LosslessModelCodec(f"{family}-tiny", str(path))


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 513, 3), (37, 23, 3), (37, 23, 1),
                                   (16, 16, 1), (9, 8, 3)])
def test_round_trip_is_bit_exact(tiny_codec, shape):
  image = testing.smooth_image(shape[0], shape[1], shape[2], seed=sum(shape))
  helpers.roundtrip(tiny_codec, image)


def test_tiled_large_image_round_trips(tiny_codec):
  image = testing.smooth_image(2000, 3000, 3, seed=3)
  assert len(lossless.tile_boxes(2000, 3000)) == 6
  helpers.roundtrip(tiny_codec, image)


def test_random_noise_round_trips(tiny_codec):
  image = np.random.default_rng(0).integers(0, 256, (40, 33, 3), dtype=np.uint8)
  helpers.roundtrip(tiny_codec, image)


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
  models.save(tiny_codec.model, tiny_codec.family, path)
  reloaded = lossless.LosslessModelCodec(tiny_codec.name, str(path))
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
    streams = tiny_codec.model.num_streams
    chunks = container.unpack_chunks(parsed.sections[lossless.SECTION], streams)
    data = container.write(container.Container(
        parsed.model, parsed.weights_hash, parsed.geometry,
        {lossless.SECTION: container.pack_chunks(chunks[:-1]),
         codecs.PIXEL_CRC_SECTION: parsed.sections[codecs.PIXEL_CRC_SECTION]}))
  with pytest.raises(container.FormatError):
    codecs.decompress(bytes(data), lambda _: tiny_codec)


def test_unsupported_images_name_the_alternative(tiny_codec):
  for image in (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16)):
    with pytest.raises(codecs.UnsupportedImageError, match="fixedpred"):
      codecs.compress(image, tiny_codec)
