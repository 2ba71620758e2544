"""RC specifics: config, inputs with and without their base, gradients, tau, the training
pairs, `tfcomp info` and export.

The codec contract (round trips, damaged files, efforts, ...) is in test_lossless_models.py;
the base layer itself in test_base_layer.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import base_layer, codecs, container, data, models, rc_streams, testing
from tfcomp.codecs import lossless
from tfcomp.models import rc

import helpers

TINY = {"num_features": 8, "num_blocks": 1, "num_components": 3, "unshuffle": 2}


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
  tf.random.set_seed(1)
  model = models.RC(**TINY)
  models.build_variables(model)
  path = tmp_path_factory.mktemp("rc") / "tiny.npz"
  models.save(model, "rc", path)
  return lossless.LosslessModelCodec("rc-tiny", str(path), fallback=False)


def test_config_round_trips_and_rejects_bad_values():
  model = models.RC(**TINY)
  assert models.RC(**model.get_config()).get_config() == model.get_config()
  for bad, match in (({"qp": 60}, "QPs must be"), ({"train_qps": (12, -1)}, "QPs must be"),
                     ({"train_qps": ()}, "must name QPs"), ({"base_codec": "bpg"}, "base_codec"),
                     ({"unshuffle": 0}, "unshuffle"), ({"qp_choices": (11, 70)}, "QPs must be"),
                     ({"qp_classifier": [[0.0] * 7]}, "shape"),
                     ({"qp_classifier": np.full((len(rc.QP_FEATURES) + 1, 7), np.nan)},
                      "finite")):
    with pytest.raises(ValueError, match=match):
      models.RC(**{**TINY, **bad})


def test_images_alone_get_their_base_coded_and_counted():
  model = models.RC(**TINY)
  x = testing.smooth_image(32, 48, 3, seed=2)[None]
  out = model(tf.constant(x))
  data_, base = base_layer.reconstruct(x[0], model.qp)
  np.testing.assert_array_equal(out["x_l"][0], base)
  assert float(out["bits_base"][0]) == 8 * len(data_)
  np.testing.assert_allclose(float(out["bits"][0]),
                             float(out["bits_base"][0] + out["bits_residual"][0]), rtol=1e-6)
  # The same image with its base beside it (the training pipeline's pairs): the same
  # residual bits, and no base bits, which the pairs do not know.
  paired = model(tf.concat([x, base[None]], -1))
  np.testing.assert_allclose(float(paired["bits_residual"][0]),
                             float(out["bits_residual"][0]), rtol=1e-6)
  assert float(paired["bits_base"][0]) == 0
  with pytest.raises(ValueError, match="6"):
    model(tf.zeros((1, 8, 8, 4), tf.uint8))


def test_training_gradients_reach_every_weight():
  model = models.RC(**TINY)
  x = testing.smooth_image(32, 32, 3, seed=2)[None]
  _, base = base_layer.reconstruct(x[0], 14)
  _, scalars, grads = helpers.training_gradients(model, tf.concat([x, base[None]], -1))
  assert not helpers.without_gradient(grads)
  assert all(np.isfinite(g.numpy()).all() for _, g in grads)
  assert set(scalars) >= {"loss", "bpsp", "bpsp/residual", "bpsp/base"}


def _tile_streams(codec, image, effort):
  parsed = container.read(codecs.compress(image, codec, effort=effort))
  return parsed, lossless.split_tiles(parsed.sections, parsed.geometry)[0][1]


def test_tau_is_fitted_at_effort_1_stored_and_read_back(tiny_codec):
  image = testing.smooth_image(48, 64, 3, seed=3)
  _, (_, residual) = _tile_streams(tiny_codec, image, 2)
  assert residual[:3] == b"\x00\x00\x00"  # the coder adapts instead
  parsed, (base, residual) = _tile_streams(tiny_codec, image, 1)
  k = np.frombuffer(residual[:3], np.int8)
  assert np.any(k != 0) and np.all(np.abs(k) <= rc.TAU_MAX)  # a random model is off
  # The fitted tau codes the model's residual in fewer bits than tau = 0 would.
  model = tiny_codec.model
  x = tf.constant(image[None])
  raw = model._step(tf.constant(base_layer.decode(base, 48, 64)[None]))  # pylint: disable=protected-access
  x_l = tf.constant(base_layer.decode(base, 48, 64)[None])
  fitted = model._channel_bits(x, raw, x_l, k.astype(np.int64), 3)  # pylint: disable=protected-access
  zero = model._channel_bits(x, raw, x_l, np.zeros(3, np.int64), 3)  # pylint: disable=protected-access
  assert fitted.sum() < zero.sum()
  helpers.roundtrip(tiny_codec, image)


@pytest.mark.parametrize("damage", ["tau", "tau_range", "no_tau", "base", "qp"])
# "qp": a QP byte out of HEVC's range. (Another valid one decodes the same pixels: the HEVC
# stream carries its own quantizer, the byte only records it for `tfcomp info`.)
def test_damaged_tau_or_base_give_clear_errors(tiny_codec, damage):
  image = testing.smooth_image(40, 40, 3, seed=4)
  parsed, (base, residual) = _tile_streams(tiny_codec, image, 1)
  if damage == "tau":
    residual = bytes([(residual[0] + 1) % 256]) + residual[1:]
  elif damage == "tau_range":
    residual = bytes([100]) + residual[1:]
  elif damage == "no_tau":
    residual = residual[:2]
  elif damage == "base":
    base = base[:len(base) // 2]
  else:
    base = bytes([99]) + base[1:]
  mode = lossless.split_tiles(parsed.sections, parsed.geometry)[0][0]
  sections = dict(parsed.sections)
  sections[lossless.SECTION] = container.pack_chunks([mode, base, residual])
  data_ = container.write(container.Container(parsed.model, parsed.weights_hash,
                                              parsed.geometry, sections))
  with pytest.raises(container.FormatError):
    codecs.decompress(data_, lambda _: tiny_codec)


def test_info_shows_the_qp_and_the_split(tiny_codec):
  image = testing.smooth_image(40, 56, 3, seed=6)
  parsed = container.read(codecs.compress(image, tiny_codec))
  lines = codecs.describe(parsed.sections, parsed.geometry, "rc")
  assert any(line.startswith(f"base layer: HEVC intra, QP {tiny_codec.model.qp}: ")
             and "residual:" in line for line in lines), lines
  assert not any("base layer" in line for line in codecs.describe(
      parsed.sections, parsed.geometry))
  # Effort 1 fits tau, which info shows as stored.
  parsed, (_, residual) = _tile_streams(tiny_codec, image, 1)
  k = np.frombuffer(residual[:3], np.int8)
  line = codecs.describe(parsed.sections, parsed.geometry, "rc")[-1]
  assert line == ("scale factors tau fitted on 1 of 1 tiles: " +
                  " ".join(f"{v:+d}/16" for v in k) + " (R G B log-scale)"), line


def test_residual_stream_layout():
  stream = rc_streams.pack_residual([2, -1, 0], b"coded")
  assert stream == bytes([2, 255, 0]) + b"coded"
  k, coded = rc_streams.unpack_residual(stream)
  assert k.tolist() == [2, -1, 0] and coded == b"coded"
  assert rc_streams.describe_tau(k) == "+2/16 -1/16 +0/16"
  with pytest.raises(ValueError, match="33"):
    rc_streams.pack_residual([33, 0, 0], b"")
  with pytest.raises(ValueError, match="3 integers"):
    rc_streams.pack_residual([1, 2], b"")


def test_info_refuses_a_damaged_tau(tiny_codec):
  image = testing.smooth_image(24, 24, 3, seed=6)
  parsed, (base, residual) = _tile_streams(tiny_codec, image, 1)
  mode = lossless.split_tiles(parsed.sections, parsed.geometry)[0][0]
  sections = dict(parsed.sections)
  sections[lossless.SECTION] = container.pack_chunks([mode, base, bytes([100]) + residual[1:]])
  with pytest.raises(container.FormatError, match=r"tau steps \[100"):
    codecs.describe(sections, parsed.geometry, "rc")


def test_export_refuses_rc_with_the_reason(tiny_codec, monkeypatch):
  export = helpers.tool("export")
  monkeypatch.setattr(export.toolbox, "load_codec", lambda model, weights: tiny_codec)
  with pytest.raises(export.app.UsageError, match="libheif"):
    export.load_codec("rc-tiny", None)


def test_training_pairs_crop_the_image_and_its_base_alike(tmp_path):
  from tfcomp import io as tfcomp_io  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "train"
  folder.mkdir()
  for i in range(3):
    tfcomp_io.write_png(str(folder / f"im{i}.png"), testing.smooth_image(48, 40, 3, seed=i))
  model = models.RC(**{**TINY, "train_qps": (12, 20)})
  pairs = model.training_companions(data.list_files(str(folder)), str(tmp_path / "cache"))
  batches = data.train_dataset(str(folder), crop_size=16, batch_size=3, seed=1,
                               augment=True, companions=pairs)
  x = next(iter(batches)).numpy()
  assert x.shape == (3, 16, 16, 6)
  for crop in x:
    # Each crop's base half is a crop of one of its image's cached reconstructions, at the
    # same place: an image crop and its base differ by the base's small error only.
    assert np.abs(crop[..., :3].astype(int) - crop[..., 3:]).mean() < 8
  with pytest.raises(ValueError, match="companions"):
    data.train_dataset(str(folder), companions={})


def test_qp_features_are_finite_on_any_size():
  for shape in ((1, 1, 3), (1, 7, 3), (7, 1, 3), (37, 23, 3)):
    f = rc.qp_features(testing.smooth_image(*shape, seed=1))
    assert f.shape == (len(rc.QP_FEATURES),) and np.all(np.isfinite(f))
  flat, busy = (rc.qp_features(np.full((32, 32, 3), 90, np.uint8)),
                rc.qp_features(np.random.default_rng(0).integers(0, 256, (32, 32, 3),
                                                                 dtype=np.uint8)))
  assert busy[0] > flat[0] and flat[-1] == 1.0


def test_classifier_picks_the_qp_its_weights_say_and_the_file_records_it(tmp_path):
  image = testing.smooth_image(32, 40, 3, seed=7)
  model = models.RC(**TINY)
  assert model.choose_qp(image) == model.qp  # no classifier: the fixed QP
  weights = np.zeros((len(rc.QP_FEATURES) + 1, len(model.qp_choices)))
  weights[-1, model.qp_choices.index(16)] = 1.0  # a bias toward QP 16
  model = models.RC(**{**TINY, "qp_classifier": weights})
  assert model.choose_qp(image) == 16
  assert models.RC(**model.get_config()).choose_qp(image) == 16
  models.build_variables(model)
  path = tmp_path / "qp16.npz"
  models.save(model, "rc", path)
  codec = lossless.LosslessModelCodec("rc-qp16", str(path), fallback=False)
  _, (base, _) = _tile_streams(codec, image, 1)
  assert base_layer.qp_of(base) == 16
  out = codec.model(tf.constant(image[None]))
  assert float(out["qp"][0]) == 16
  assert float(codec.model.loss_and_scalars(image[None], out)[1]["qp"]) == 16


def test_fit_qp_fits_the_classifier_and_reports_it_beside_the_oracle(tiny_codec, tmp_path):
  from tfcomp import io as tfcomp_io  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(6):
    tfcomp_io.write_png(str(folder / f"im{i}.png"), testing.smooth_image(24, 32, 3, seed=i))
  out = tmp_path / "fitted.npz"
  fit_qp = helpers.tool("fit_qp")
  report = fit_qp.main(["fit_qp", f"--weights={tiny_codec.weights_path}",
                        f"--train={folder}", f"--out={out}"])
  bpsp = report["estimated_bpsp"]
  assert report["images"] == 6
  assert bpsp["oracle"] <= min(bpsp["classifier_fitted"], bpsp["fixed_qp13"],
                               bpsp["classifier_cross_validated"])
  assert bpsp["oracle"] == pytest.approx(min(v for k, v in bpsp.items() if k.startswith("qp")
                                             and k[2:].isdigit()), rel=1e-2)
  family, fitted = models.load(out)
  assert family == "rc" and fitted.qp_classifier is not None
  for a, b in zip(fitted.weights, tiny_codec.model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert fitted.choose_qp(testing.smooth_image(24, 32, 3, seed=0)) in fitted.qp_choices
  fit_qp = helpers.tool("fit_qp")  # flags reset
  with pytest.raises(fit_qp.app.UsageError, match="required"):
    fit_qp.main(["fit_qp", f"--weights={tiny_codec.weights_path}"])


def test_val_reports_the_qp_beside_the_oracle_and_the_fixed_qp(tiny_codec, tmp_path):
  from tfcomp import io as tfcomp_io  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "images"
  folder.mkdir()
  tfcomp_io.write_png(str(folder / "a.png"), testing.smooth_image(24, 30, 3, seed=1))
  val = helpers.tool("val")
  val.main(["val", f"--weights={tiny_codec.weights_path}", str(folder), "--qp_oracle",
            f"--out={tmp_path / 'out'}"])
  import json  # pylint: disable=import-outside-toplevel
  means = json.load(open(tmp_path / "out" / "results.json"))["mean"]
  assert means["estimated_bpsp_oracle"] <= means["estimated_bpsp_at_qp"]
  assert means["estimated_bpsp_oracle"] <= means["estimated_bpsp_qp13"]
  val = helpers.tool("val")  # flags reset
  with pytest.raises(val.app.UsageError, match="qp_oracle"):
    val.main(["val", "--model=fixedpred-v1", str(folder), "--qp_oracle", "--real_bpp",
              f"--out={tmp_path / 'out2'}"])
