"""HiFiC (tfcomp.models.hific): the conditional discriminator, the losses and rate-target
control, files, and training through tools/train.py.

The LPIPS in the loss is a small stand-in network (tfcomp.lpips.save_standin) given by
TFCOMP_LPIPS_WEIGHTS, so these tests run where ../shared is absent; test_lpips checks the
real weights where they are.
"""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcomp import (base_layer, codecs, configs, container, io as tfcomp_io, lpips, models,
                    testing, training)

import helpers


@pytest.fixture(autouse=True)
def standin_lpips(tmp_path_factory, monkeypatch):
  path = tmp_path_factory.getbasetemp() / "lpips-standin.npz"
  if not path.exists():
    lpips.save_standin(str(path), seed=0)
  monkeypatch.setenv(lpips.WEIGHTS_ENV, str(path))
  return path


def _tiny(**overrides):
  tf.keras.utils.set_random_seed(3)
  return models.build("hific", {**helpers.TINY_HIFIC, **overrides})


def _crops(batch=2, side=64, seed=0):
  return tf.constant(np.stack([testing.smooth_image(side, side, 3, seed=seed + i)
                               for i in range(batch)]))


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
  return helpers.tiny_lossy_codec(tmp_path_factory.mktemp("hific") / "tiny.npz", "hific")


def test_config_round_trips_and_frozen_models_hold_no_discriminator(tiny_codec):
  model = _tiny()
  models.build_variables(model)
  assert model.discriminator is not None
  assert models.build("hific", model.get_config()).get_config() == model.get_config()
  frozen = tiny_codec.model  # a coding_copy, saved and loaded
  assert frozen.discriminator is None and frozen.compression
  assert frozen.get_config() == {**model.get_config(), "compression": True,
                                 "kernel_parameter": "variable"}
  assert not any("discriminator" in v.name for v in frozen.weights)
  assert _tiny(beta=0.0).discriminator is None  # the first stage trains without D
  for bad, message in (({"beta": -1.0}, "beta"), ({"target_bpp": 0.0}, "target_bpp"),
                       ({"num_residual_blocks": 0}, "num_residual_blocks")):
    with pytest.raises(ValueError, match=message):
      _tiny(**bad)


def test_the_discriminator_sees_the_latent_it_is_conditioned_on():
  model = _tiny()
  x = tf.cast(_crops(), tf.float32)
  y_hat = model(x, training=False)["y_hat"]
  logits = model.discriminator((x, y_hat))
  assert logits.shape == (2, 8, 8)
  changed = model.discriminator((x, y_hat + tf.one_hot(0, model.latent_channels) * 3.0))
  assert float(tf.reduce_max(tf.abs(changed - logits))) > 1e-4
  # In training D scores real and reconstructed images, conditioned on the same latent.
  out = model(x, training=True)
  assert out["d_real"].shape == out["d_fake"].shape == (2, 8, 8)


def test_each_loss_group_trains_its_own_side():
  model = _tiny()
  x = _crops()
  (g_name, g_vars), (d_name, d_vars) = model.loss_groups()
  assert (g_name, d_name) == ("loss", "d_loss")
  assert not {id(v) for v in g_vars} & {id(v) for v in d_vars}
  with tf.GradientTape(persistent=True) as tape:
    out = model(x, training=True)
    step = tf.constant(0, tf.int64)
    _, scalars = model.loss_and_scalars(x, out, step=step)
  for name in ("bpp", "mse", "psnr", "lpips", "g_loss", "d_loss", "d_real", "d_fake"):
    assert np.isfinite(float(scalars[name])), name
  g_grads = tape.gradient(scalars["loss"], g_vars)
  d_grads = tape.gradient(scalars["d_loss"], d_vars)
  assert [v.name for v, g in zip(g_vars, g_grads) if g is None] == []
  assert [v.name for v, g in zip(d_vars, d_grads) if g is None] == []
  # The generator's loss holds beta times the GAN term.
  no_gan = model.loss_and_scalars(x, {k: v for k, v in out.items()
                                      if not k.startswith("d_")}, step=step)[0]
  assert float(scalars["loss"] - no_gan) == pytest.approx(
      model.beta * float(scalars["g_loss"]), abs=1e-4)


def test_rate_weight_follows_the_target_and_the_warm_up():
  model = _tiny(target_bpp=0.3, lambda_a=2.0, lambda_b=0.0625, warmup_steps=10,
                warmup_factor=3.0)
  assert float(model.rate_weight(tf.constant(0.5))) == 2.0
  assert float(model.rate_weight(tf.constant(0.2))) == 0.0625
  assert float(model.rate_weight(tf.constant(0.5), tf.constant(9, tf.int64))) == 6.0
  assert float(model.rate_weight(tf.constant(0.5), tf.constant(10, tf.int64))) == 2.0


def test_rate_target_control_moves_the_rate_toward_the_target():
  """The same start and steps, with the target far below or far above the rate: below,
  lambda_a's weight pulls the rate down; above, lambda_b's lets it be."""
  rates = {}
  for target in (1e-3, 1e3):
    model = _tiny(beta=0.0, target_bpp=target, lambda_a=4.0, lambda_b=1e-3)
    optimizer = tf.keras.optimizers.Adam(1e-2)
    x = _crops(batch=1, side=64, seed=7)

    @tf.function
    def step(x, model=model, optimizer=optimizer):
      with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss, scalars = model.loss_and_scalars(x, out)
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return scalars["bpp"]

    for _ in range(10):
      bpp = float(step(x))
    rates[target] = bpp
  assert rates[1e-3] < 0.8 * rates[1e3], rates


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 23, 3), (37, 23, 1), (70, 130, 3)])
def test_files_decode_to_the_reconstruction_of_the_non_coded_path(tiny_codec, shape):
  image = testing.smooth_image(*shape, seed=3)
  data = codecs.compress(image, tiny_codec)
  decoded, _ = codecs.decompress(data, lambda _: tiny_codec)
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, tiny_codec.estimate(image)["x_hat"])


def test_the_gan_stage_trains_through_the_tool_from_the_first_stage(tmp_path):
  """The GAN stage warm-started from a first-stage model (beta = 0, no D): D starts from
  its initial values, everything else from the first stage's weights."""
  train = helpers.tool("train")
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):
    tfcomp_io.write_png(str(images / f"{i}.png"), testing.smooth_image(80, 80, 3, seed=i))
  config = {**configs.load("hific", "small-lo"), **helpers.TINY_HIFIC, "warmup_steps": 1}
  (tmp_path / "tiny.json").write_text(json.dumps(config))
  base = models.build("hific", {**config, "beta": 0.0})
  models.build_variables(base)
  assert base.discriminator is None
  models.save(base, "hific", str(tmp_path / "base.npz"))
  train.main(["train.py", "--model", "hific", "--config", str(tmp_path / "tiny.json"),
              "--train", str(images), "--batch_size", "2", "--crop_size", "64",
              "--steps", "1", "--logdir", str(tmp_path / "gan"),
              "--restore", str(tmp_path / "base.npz")])
  _, gan = models.load(str(tmp_path / "gan" / "model.npz"))
  assert gan.discriminator is not None and gan.get_config()["beta"] == 0.15
  trained = training.named_weights(gan)
  moved = [name for name, v in training.named_weights(base).items()
           if not np.array_equal(v.numpy(), trained[name].numpy())]
  assert moved  # one step of Adam moves the restored weights
  assert os.path.isdir(tmp_path / "gan" / "train")


def test_a_trained_hyperprior_starts_a_hific_with_its_transforms(tmp_path, tiny_codec):
  """transforms="hyperprior": every weight but D's comes from a hyperprior of the same
  sizes (a frozen zoo one too), so the GAN stage starts from what it computes."""
  source = helpers.tiny_lossy_codec(tmp_path / "hyperprior.npz").model
  model = _tiny(**helpers.TINY_LOSSY, transforms="hyperprior", kernel_parameter="variable")
  models.build_variables(model)
  lines = []
  training._restore_weights(model, "hific", str(tmp_path / "hyperprior.npz"), lines.append)  # pylint: disable=protected-access
  assert lines and all("discriminator/" in name for name in lines[0].split(": ")[1].split(", "))
  y = tf.random.stateless_normal((1, 4, 4, source.latent_channels), (1, 2)) * 3
  np.testing.assert_array_equal(model.g_s(y), source.g_s(y))
  np.testing.assert_array_equal(model.h_s(y[..., :source.hyper_filters]),
                                source.h_s(y[..., :source.hyper_filters]))
  with pytest.raises(ValueError, match="family 'hific', not 'hyperprior'"):  # not backwards
    training._restore_weights(source, "hyperprior", tiny_codec.weights_path)  # pylint: disable=protected-access


# -- HiFiC on a base layer (transforms "layered") ---------------------------------------------


@pytest.fixture(scope="module")
def layered_codec(tmp_path_factory):
  return helpers.tiny_lossy_codec(tmp_path_factory.mktemp("layered") / "tiny.npz", "hific",
                                  **helpers.TINY_LAYERED)


def test_layered_config_round_trips_and_is_validated():
  model = _tiny(**helpers.TINY_LAYERED)
  assert models.build("hific", model.get_config()).get_config() == model.get_config()
  assert model.stream_names == ("base", "y", "z") and not model.graph_coding
  assert not model.refines and _tiny().refines and _tiny().graph_coding
  for bad, message in (({"base_codec": None}, "base_codec"), ({"qp": 52}, "QP"),
                       ({"train_qps": []}, "train_qps"), ({"fusion_blocks": -1},
                                                          "fusion_blocks")):
    with pytest.raises(ValueError, match=message):
      _tiny(**{**helpers.TINY_LAYERED, **bad})
  with pytest.raises(ValueError, match="belong to layered"):
    _tiny(qp=30)


def test_an_untrained_layered_model_reconstructs_its_base_and_counts_its_bits():
  """The fusion starts at zero: x_hat is the HEVC base, whose real bits the output adds to
  the latents' (for [B, H, W, 3] inputs, whose bases it codes); the loss's rate is the
  latents' alone, and a cached pair [B, H, W, 6] has no base bits."""
  model = _tiny(**helpers.TINY_LAYERED)
  x = _crops(side=64)
  out = model(x, training=False)
  for i in range(2):
    data, base = base_layer.reconstruct(x[i].numpy(), 40)
    np.testing.assert_array_equal(out["x_b"][i], base)
    assert float(out["bits_base"][i]) == 8 * len(data)
  np.testing.assert_allclose(out["x_hat"], tf.cast(out["x_b"], tf.float32), atol=1e-3)
  np.testing.assert_allclose(out["bits"], out["bits_y"] + out["bits_z"] + out["bits_base"])
  _, scalars = model.loss_and_scalars(x, out)
  np.testing.assert_allclose(scalars["bpp/latents"] + scalars["bpp/base"], scalars["bpp"],
                             rtol=1e-5)
  paired = tf.concat([x, tf.cast(out["x_b"], tf.uint8)], -1)
  trained = model(paired, training=True)
  assert float(tf.reduce_sum(trained["bits_base"])) == 0.0
  loss, scalars = model.loss_and_scalars(paired, trained, step=0)
  assert np.isfinite(float(loss)) and "d_loss" in scalars
  with pytest.raises(ValueError, match="image and base"):
    model(tf.zeros((1, 64, 64, 4), tf.uint8))


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 23, 1), (70, 130, 3)])
def test_layered_files_decode_to_the_reconstruction_of_the_non_coded_path(layered_codec,
                                                                          shape):
  image = testing.smooth_image(*shape, seed=4)
  data = codecs.compress(image, layered_codec)
  decoded, _ = codecs.decompress(data, lambda _: layered_codec)
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, layered_codec.estimate(image)["x_hat"])
  estimate = layered_codec.estimate(image)["bits"]
  sections = container.read(data).sections
  assert sorted(sections) == ["base", "y", "z"]
  assert abs(8 * sum(map(len, sections.values())) - estimate) < 0.05 * estimate + 64


def test_a_damaged_base_layer_is_a_format_error(layered_codec):
  image = testing.smooth_image(64, 64, 3, seed=5)
  data = codecs.compress(image, layered_codec)
  parsed = container.read(data)
  base = parsed.sections["base"]
  for damaged_base in (base[:len(base) // 2], b"", bytes([40]) + b"\0" * 30):
    damaged = container.write(dataclasses.replace(
        parsed, sections={**parsed.sections, "base": damaged_base}))
    with pytest.raises(container.FormatError):
      codecs.decompress(damaged, lambda _: layered_codec)


def test_layered_models_refuse_refinement_and_export(layered_codec, monkeypatch):
  assert not layered_codec.refines
  with pytest.raises(ValueError, match="refine"):
    codecs.compress(testing.smooth_image(64, 64, 3), layered_codec, refine_steps=2)
  export = helpers.tool("export")
  monkeypatch.setattr(export.toolbox, "load_codec", lambda model, weights: layered_codec)
  with pytest.raises(export.app.UsageError, match="outside TensorFlow's graph"):
    export.load_codec("hific-tiny", None)


def test_layered_hific_trains_through_the_tool_beside_cached_bases(tmp_path):
  train = helpers.tool("train")
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):
    tfcomp_io.write_png(str(images / f"{i}.png"), testing.smooth_image(80, 80, 3, seed=i))
  config = {**configs.load("hific", "layered-mi"), **helpers.TINY_HIFIC,
            **helpers.TINY_LAYERED, "warmup_steps": 1}
  (tmp_path / "tiny.json").write_text(json.dumps(config))
  train.main(["train.py", "--model", "hific", "--config", str(tmp_path / "tiny.json"),
              "--train", str(images), "--batch_size", "2", "--crop_size", "64",
              "--steps", "1", "--logdir", str(tmp_path / "run"),
              "--cache_dir", str(tmp_path / "cache")])
  assert len(os.listdir(tmp_path / "cache")) == 2 * len(config["train_qps"])
  _, model = models.load(str(tmp_path / "run" / "model.npz"))
  assert model.get_config()["transforms"] == "layered"


def test_freeze_sets_the_base_qp_of_one_trained_layered_model(tmp_path):
  """One trained model, several rate points: tools/freeze.py --set qp=... keeps every
  weight and refuses fields that would change them."""
  freeze = helpers.tool("freeze")
  model = _tiny(**helpers.TINY_LAYERED)
  models.build_variables(model)
  models.save(model, "hific", str(tmp_path / "model.npz"))
  freeze.main(["freeze.py", "--weights", str(tmp_path / "model.npz"), "--set", "qp=44",
               "--out", str(tmp_path / "q44.npz")])
  _, frozen = models.load(str(tmp_path / "q44.npz"))
  assert frozen.qp == 44 and frozen.compression
  image = testing.smooth_image(64, 64, 3, seed=6)
  reference = model.coding_copy()
  reference.qp = 44
  np.testing.assert_array_equal(frozen(tf.constant(image[None]))["x_hat"],
                                reference(tf.constant(image[None]))["x_hat"])
  with pytest.raises(ValueError, match="change the model's weights"):
    freeze.main(["freeze.py", "--weights", str(tmp_path / "model.npz"), "--set",
                 "fusion_filters=4", "--out", str(tmp_path / "bad.npz")])
