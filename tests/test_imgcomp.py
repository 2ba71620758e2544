"""imgcomp: importance mask, causal context model, exact integer arithmetic, real coding."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import codecs, models, testing
from tfcomp.models import imgcomp

import helpers

TINY = {"num_filters": 16, "num_stacks": 1, "stack_blocks": 1, "latent_channels": 8,
        "context_filters": 8}


def _model(seed=0, scale=0.1, **config):
  """A tiny model whose context model has random weights (varied, non-trivial CDFs)."""
  model = models.Imgcomp(**{**TINY, **config})
  rng = np.random.default_rng(seed)
  for v in model.context_model.trainable_variables:
    v.assign(rng.normal(0, scale, v.shape))
  return model


def _symbols(model, x):
  z, _, _ = model._analysis(x)  # pylint: disable=protected-access
  return model.quantize(z)


def test_importance_mask_keeps_exactly_the_first_ceil_channels():
  channels = 8
  heatmap = tf.constant(np.linspace(-6, 6, 41, dtype=np.float32)[:, None])
  mask = imgcomp.importance_mask(heatmap, channels).numpy()
  y = 1 / (1 + np.exp(-heatmap.numpy())) * channels
  k = np.arange(channels)
  np.testing.assert_array_equal(mask == 0, k >= np.ceil(y))  # exactly the masked channels
  np.testing.assert_array_equal(mask == 1, k + 1 <= y)  # the rest kept, one partially
  np.testing.assert_allclose(mask.sum(axis=1), y[:, 0], rtol=1e-5)
  with tf.GradientTape() as tape:
    tape.watch(heatmap)
    total = tf.reduce_sum(imgcomp.importance_mask(heatmap, channels))
  assert np.any(tape.gradient(total, heatmap).numpy() > 0)
  # In the model: z is zero in exactly the channels the importance map drops.
  model = _model()
  x = tf.constant(testing.smooth_image(32, 48, 3, seed=2)[None])
  out = model.g_a((tf.cast(x, tf.float32) - 127.5) / 64.0)
  z, _, _ = model._analysis(x)  # pylint: disable=protected-access
  y = tf.sigmoid(out[..., :1]).numpy() * 8
  dropped, full = np.arange(8) >= np.ceil(y), np.arange(8) + 1 <= y
  assert np.all(z.numpy()[dropped] == 0) and np.all(z.numpy()[full] == out.numpy()[
      ..., 1:][full])


def test_context_model_is_causal_in_coding_order():
  model = _model(scale=0.3)
  rng = np.random.default_rng(1)
  depth, height, width = 4, 5, 6
  symbols = rng.integers(0, 6, (1, depth, height, width))
  t = np.einsum("dhwk,k->dhw", np.stack(np.meshgrid(
      np.arange(depth), np.arange(height), np.arange(width), indexing="ij"), -1),
      imgcomp.WAVE)

  def logits(s):
    q_hat = tf.gather(model.centers, s)[..., None]
    return model.context_model.logits(model.context_model.inputs(q_hat)).numpy()[0]

  before = logits(symbols)
  influential = 0
  for _ in range(20):
    d, i, j = (rng.integers(n) for n in (depth, height, width))
    changed = symbols.copy()
    changed[0, d, i, j] = (changed[0, d, i, j] + 1 + rng.integers(5)) % 6
    after = logits(changed)
    earlier = t <= t[d, i, j]  # this symbol and every one decoded with or before it
    np.testing.assert_array_equal(after[earlier], before[earlier])
    influential += np.any(after != before)
  assert influential >= 10  # later predictions do depend on earlier symbols


def test_whole_volume_and_wavefront_steps_compute_identical_logits():
  model = _model(scale=0.3)
  x = tf.constant(np.random.default_rng(4).integers(0, 256, (1, 40, 56, 3), np.uint8))
  q_hat, symbols = _symbols(model, x)
  whole = model.context_model.logits(model._volume(model.context_model.inputs(q_hat)))[0]  # pylint: disable=protected-access
  volume = tf.transpose(symbols[0], [2, 0, 1])
  positions, starts, ends, taps = model._layout(*volume.shape)  # pylint: disable=protected-access
  expected = tf.gather_nd(whole, positions).numpy()
  # The decoder's layout: ring buffers, the symbols written after each wavefront.
  ring_taps, size = model._ring(starts, ends, taps)  # pylint: disable=protected-access
  windows = model._windows(imgcomp.RING * size + 1)  # pylint: disable=protected-access
  inputs = model._inputs(tf.gather_nd(volume, positions))  # pylint: disable=protected-access
  for s, (a, b) in enumerate(zip(starts.numpy(), ends.numpy())):
    write_at = s % imgcomp.RING * size + tf.range(b - a)
    acc, (x_ring, *hidden) = model.context_model.step(windows, ring_taps[a:b], write_at)
    np.testing.assert_array_equal(acc.numpy(), expected[a:b])
    windows = (tf.tensor_scatter_nd_update(x_ring, write_at[:, None], inputs[a:b, None]),
               *hidden)
  # The encoder's layout: one window over every position, in two chunks.
  count = len(expected)
  windows = model._windows(count + 1, tf.pad(inputs[:, None], [(0, 1), (0, 0)]))  # pylint: disable=protected-access
  for rows in (tf.range(count // 3), tf.range(count // 3, count)):
    acc, windows = model.context_model.step(windows, tf.gather(taps, rows), rows)
    np.testing.assert_array_equal(acc.numpy(), expected[rows.numpy()])


def test_training_updates_both_groups_and_logs_the_promised_scalars():
  model = _model()
  x = tf.constant(testing.smooth_image(64, 64, 3, seed=3)[None])
  _, scalars, grads = helpers.training_gradients(model, x)
  assert {"loss", "bpp", "H", "ms_ssim", "psnr", "centers/0"} <= set(scalars)
  context = {v.name for v in model.context_model.trainable_variables}
  (name_ae, autoencoder), (name_pc, context_vars) = model.loss_groups()
  assert (name_ae, name_pc) == ("loss", "H") and {v.name for v in context_vars} == context
  missing = helpers.without_gradient([(v, g) for v, g in grads if v.name not in context])
  assert not missing and any(v is model.centers for v in autoencoder)
  with tf.GradientTape() as tape:
    rate = model(x, training=True)["H"]
  assert all(g is not None for g in tape.gradient(rate, context_vars))


def test_coding_reproduces_the_estimate_and_its_rate():
  model = _model()
  # Big enough that the stream's fixed flush bytes (~0.1 kbit) stay well below 1%.
  x = tf.constant(np.random.default_rng(5).integers(0, 256, (1, 256, 256, 3), np.uint8))
  out = model(x)
  strings = model.compress(x)
  x_hat = model.decompress(strings, 256, 256)
  np.testing.assert_array_equal(x_hat.numpy(), out["x_hat"].numpy())
  real, estimate = 8 * len(strings[0].numpy()), float(out["bits"][0])
  assert estimate > 15000 and abs(real / estimate - 1) < 0.01, (real, estimate)


def test_config_and_weights_round_trip_then_code_identically(tmp_path):
  model = _model()
  family, again = models.from_bytes(models.to_bytes(model, "imgcomp"))
  assert family == "imgcomp" and again.get_config() == model.get_config()
  x = tf.constant(testing.smooth_image(24, 40, 3, seed=6)[None])
  assert again.compress(x)[0].numpy() == model.compress(x)[0].numpy()
  with pytest.raises(ValueError, match="distortion"):
    models.Imgcomp(distortion="l1")
  with pytest.raises(ValueError, match="context_filters"):
    models.Imgcomp(context_filters=64)


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
  path = tmp_path_factory.mktemp("imgcomp") / "tiny.npz"
  models.save(_model(), "imgcomp", path)
  return codecs.from_weights("imgcomp-tiny", str(path))


@pytest.mark.parametrize("height,width,channels", [(1, 1, 3), (37, 23, 3), (23, 37, 1),
                                                   (7, 513, 3)])
def test_files_of_any_size_decode_to_the_estimate(tiny_codec, height, width, channels):
  image = testing.smooth_image(height, width, channels, seed=height)
  data = codecs.compress(image, tiny_codec)
  decoded, parsed = codecs.decompress(data, lambda _: tiny_codec)
  assert decoded.shape == image.shape and set(parsed.sections) == {"symbols"}
  np.testing.assert_array_equal(decoded, tiny_codec.estimate(image)["x_hat"])


def test_corrupted_and_truncated_files_are_refused(tiny_codec):
  from tfcomp import container  # pylint: disable=import-outside-toplevel
  image = testing.smooth_image(40, 48, 3, seed=7)
  sections = tiny_codec.compress(image)
  geometry = codecs.geometry_of(image)
  for broken in (sections["symbols"][:-3], b"\x00" * 5, sections["symbols"] + b"\x01"):
    with pytest.raises((tf.errors.InvalidArgumentError, container.FormatError)):
      tiny_codec.decompress({"symbols": broken}, geometry)
  with pytest.raises(container.FormatError, match="sections"):
    tiny_codec.decompress({"y": b"", "z": b""}, geometry)


def test_large_images_are_coded_in_independent_tiles(tiny_codec, monkeypatch):
  from tfcomp.codecs import lossy  # pylint: disable=import-outside-toplevel
  image = testing.smooth_image(100, 150, 3, seed=8)
  whole = tiny_codec.compress(image)["symbols"]
  monkeypatch.setattr(lossy, "TILE", 64)  # 2 x 3 tiles
  data = codecs.compress(image, tiny_codec)
  decoded, parsed = codecs.decompress(data, lambda _: tiny_codec)
  estimate = tiny_codec.estimate(image)
  np.testing.assert_array_equal(decoded, estimate["x_hat"])
  assert parsed.sections["symbols"] != whole and estimate["bits"] > 0
