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
    "srec": {"num_features": 8, "num_blocks": 1, "num_components": 3, "top_coder": "gradient"},
    "rc": {"num_features": 8, "num_blocks": 1, "num_components": 3, "unshuffle": 2},
}


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny_codec(request, tmp_path_factory):
  family = request.param
  tf.random.set_seed(1)
  model = models.build(family, TINY[family])
  models.build_variables(model)
  path = tmp_path_factory.mktemp(family) / "tiny.npz"
  models.save(model, family, path)
  # The model alone: a tiny random model would lose most tiles to the PNG fallback.
  return lossless.LosslessModelCodec(f"{family}-tiny", str(path), fallback=False)


@pytest.fixture(scope="module")
def fallback_codec(tiny_codec):
  codec = lossless.LosslessModelCodec(tiny_codec.name, tiny_codec.weights_path)
  assert codec.fallback and codec.weights_hash == tiny_codec.weights_hash
  return codec


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 513, 3), (37, 23, 3), (37, 23, 1),
                                   (16, 16, 1), (9, 8, 3)])
def test_round_trip_is_bit_exact(tiny_codec, shape):
  image = testing.smooth_image(shape[0], shape[1], shape[2], seed=sum(shape))
  helpers.roundtrip(tiny_codec, image)


def _round_trip_tiled(codec):
  image = testing.smooth_image(2000, 3000, 3, seed=3)
  assert len(lossless.tile_boxes(2000, 3000)) == 6
  helpers.roundtrip(codec, image)


def test_tiled_large_image_round_trips(tiny_codec):
  # Tiling is the codec's, the same for every family: the default run codes RC's large
  # image (its base layer is coded per tile too) and the default model's through the
  # command line (test_cli.test_round_trip_large_image); the others' are slow tests.
  if tiny_codec.family != "rc":
    pytest.skip("covered by rc and test_cli's large image; see the slow test below")
  _round_trip_tiled(tiny_codec)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["l3c", "srec"])
def test_tiled_large_image_round_trips_in_every_family(family, tmp_path):
  _round_trip_tiled(helpers.tiny_lossless_codec(family, tmp_path / "tiny.npz"))


def test_random_noise_round_trips(tiny_codec):
  image = np.random.default_rng(0).integers(0, 256, (40, 33, 3), dtype=np.uint8)
  helpers.roundtrip(tiny_codec, image)


def test_real_bits_within_two_percent_of_the_estimate(tiny_codec):
  """The estimate is the model's cross-entropy: effort 1, without the coder's adaptation."""
  image = testing.smooth_image(96, 128, 3, seed=8)
  real = 8 * len(tiny_codec.compress(image, effort=1)[lossless.SECTION])
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
  reloaded = lossless.LosslessModelCodec(tiny_codec.name, str(path), fallback=False)
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
    per_tile = 1 + tiny_codec.model.num_streams  # the mode chunk, then the streams
    chunks = container.unpack_chunks(parsed.sections[lossless.SECTION], per_tile)
    data = container.write(container.Container(
        parsed.model, parsed.weights_hash, parsed.geometry,
        {lossless.SECTION: container.pack_chunks(chunks[:-1]),
         codecs.PIXEL_CRC_SECTION: parsed.sections[codecs.PIXEL_CRC_SECTION]}))
  with pytest.raises(container.FormatError):
    codecs.decompress(bytes(data), lambda _: tiny_codec)


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 23, 1), (9, 8, 3)])
def test_every_effort_round_trips_and_records_its_adaptation(tiny_codec, shape):
  image = testing.smooth_image(shape[0], shape[1], shape[2], seed=sum(shape) + 1)
  assert tiny_codec.efforts == (1, 2) and tiny_codec.default_effort == 2
  for effort, mode in ((1, lossless.MODEL), (2, lossless.ADAPTIVE + bytes([7]))):
    data = codecs.compress(image, tiny_codec, effort=effort)
    decoded, parsed = codecs.decompress(data, lambda _: tiny_codec)
    np.testing.assert_array_equal(decoded, image)
    assert lossless.tile_modes(parsed.sections, parsed.geometry) == [mode]
    lines = codecs.describe(parsed.sections, parsed.geometry)
    assert f"(effort {effort})" in lines[-1], lines
  with pytest.raises(ValueError, match="effort must be one of"):
    codecs.compress(image, tiny_codec, effort=3)


def test_adaptation_pays_on_an_image_the_model_mispredicts(tiny_codec):
  """A random tiny model is far off on a smooth image: the coder's adaptation learns
  that as it goes, and its file is smaller than the model alone's."""
  image = testing.smooth_image(96, 128, 3, seed=8)
  alone = len(tiny_codec.compress(image, effort=1)[lossless.SECTION])
  adapted = len(tiny_codec.compress(image, effort=2)[lossless.SECTION])
  assert adapted < 0.98 * alone, (adapted, alone)


def test_effort_constants_match_the_ops_flags():
  from tfcomp import ops  # pylint: disable=import-outside-toplevel
  assert lossless.EFFORT_ADAPTATION == {1: 0, 2: ops.MIXTURE_ADAPT_ALL}
  assert dict(lossless.ADAPTATION_PARTS) == {
      ops.MIXTURE_ADAPT_BIAS: "bias", ops.MIXTURE_ADAPT_SCALE: "scale",
      ops.MIXTURE_ADAPT_CALIBRATION: "calibration"}
  assert list(lossless.ADAPTATION_FLAGS) == list(range(1, ops.MIXTURE_ADAPT_ALL + 1))
  assert lossless.adaptation_name(5) == 'bias+calibration'


@pytest.mark.parametrize("mode", [b"A", b"A\x00", b"A\x08", b"A\x07\x00", b"M\x07"])
def test_damaged_adaptation_flags_raise_a_clear_error(tiny_codec, mode):
  image = testing.smooth_image(24, 20, 3, seed=13)
  parsed = container.read(codecs.compress(image, tiny_codec))
  per_tile = 1 + tiny_codec.model.num_streams
  chunks = container.unpack_chunks(parsed.sections[lossless.SECTION], per_tile)
  assert chunks[0] == lossless.ADAPTIVE + bytes([7])
  chunks[0] = mode
  data = container.write(container.Container(
      parsed.model, parsed.weights_hash, parsed.geometry,
      {lossless.SECTION: container.pack_chunks(chunks),
       codecs.PIXEL_CRC_SECTION: parsed.sections[codecs.PIXEL_CRC_SECTION]}))
  with pytest.raises(container.FormatError, match="unknown mode"):
    codecs.decompress(data, lambda _: tiny_codec)


def test_other_adaptation_flags_never_give_a_wrong_image(tiny_codec):
  """A tile decoded with other flags than it was coded with (a damaged flags byte that is
  still valid) fails loudly: the stream or the pixel checksum disagrees."""
  image = testing.smooth_image(24, 20, 3, seed=14)
  parsed = container.read(codecs.compress(image, tiny_codec))
  per_tile = 1 + tiny_codec.model.num_streams
  chunks = container.unpack_chunks(parsed.sections[lossless.SECTION], per_tile)
  for flags in (b"M", lossless.ADAPTIVE + bytes([3]), lossless.ADAPTIVE + bytes([4])):
    chunks[0] = flags
    data = container.write(container.Container(
        parsed.model, parsed.weights_hash, parsed.geometry,
        {lossless.SECTION: container.pack_chunks(chunks),
         codecs.PIXEL_CRC_SECTION: parsed.sections[codecs.PIXEL_CRC_SECTION]}))
    with pytest.raises(container.FormatError):
      codecs.decompress(data, lambda _: tiny_codec)


def test_unsupported_images_name_the_alternative(tiny_codec):
  for image in (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16)):
    with pytest.raises(codecs.UnsupportedImageError, match="fixedpred"):
      codecs.compress(image, tiny_codec)


def _flat_and_noisy(height, width):
  """An image whose left half is flat (PNG's ground) and right half smooth (the model's)."""
  image = testing.smooth_image(height, width, 3, seed=12)
  image[:, :width // 2] = (250, 250, 240)
  return image


def test_fallback_stores_flat_tiles_as_png_and_decodes_exactly(fallback_codec, monkeypatch):
  monkeypatch.setattr(lossless, "TILE", 64)
  image = _flat_and_noisy(80, 128)  # tiles: 64x64 flat, smooth; 16x64 flat, smooth
  data = codecs.compress(image, fallback_codec)
  parsed = container.read(data)
  modes = lossless.tile_modes(parsed.sections, parsed.geometry)
  assert modes[0] == lossless.PNG and modes[2] == lossless.PNG
  decoded, _ = codecs.decompress(data, lambda _: fallback_codec)
  np.testing.assert_array_equal(decoded, image)
  # Never larger than the model alone; the estimate makes the same choice per tile.
  alone = lossless.LosslessModelCodec(fallback_codec.name, fallback_codec.weights_path,
                                      fallback=False)
  assert len(data) < len(codecs.compress(image, alone))
  real = 8 * len(fallback_codec.compress(image, effort=1)[lossless.SECTION])
  estimate = fallback_codec.estimate(image)["bits"]
  assert estimate < alone.estimate(image)["bits"]
  # 5%, not 2%: at 64-pixel tiles each model tile's framing and per-stream rANS overhead
  # (a few hundred bytes) is a visible share, and the estimate does not count it.
  assert abs(real - estimate) < 0.05 * estimate


@pytest.mark.parametrize("shape", [(1, 1, 3), (23, 37, 1)])
def test_fallback_round_trips_odd_and_gray_flat_images(fallback_codec, shape):
  image = np.full(shape, 7, np.uint8)
  data = codecs.compress(image, fallback_codec)
  parsed = container.read(data)
  assert lossless.tile_modes(parsed.sections, parsed.geometry) == [lossless.PNG]
  helpers.roundtrip(fallback_codec, image)


@pytest.mark.parametrize("damage", ["mode", "png_geometry", "png_bytes", "extra_stream"])
def test_damaged_png_tiles_raise_a_clear_error(fallback_codec, damage):
  image = np.full((16, 24, 3), 200, np.uint8)
  parsed = container.read(codecs.compress(image, fallback_codec))
  per_tile = 1 + fallback_codec.model.num_streams
  chunks = container.unpack_chunks(parsed.sections[lossless.SECTION], per_tile)
  assert chunks[0] == lossless.PNG
  png = bytearray(chunks[1])
  if damage == "mode":
    chunks[0] = b"X"
  elif damage == "png_geometry":  # a huge declared width must be refused before decoding
    png[16:20] = (1 << 30).to_bytes(4, "big")
    chunks[1] = bytes(png)
  elif damage == "png_bytes":
    chunks[1] = bytes(png[:len(png) // 2])
  else:
    chunks[2] = b"\x00"
  sections = dict(parsed.sections)
  sections[lossless.SECTION] = container.pack_chunks(chunks)
  data = container.write(container.Container(parsed.model, parsed.weights_hash,
                                             parsed.geometry, sections))
  with pytest.raises(container.FormatError):
    codecs.decompress(data, lambda _: fallback_codec)
