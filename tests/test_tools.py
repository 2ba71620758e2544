"""tools/train.py and tools/val.py, called in-process through their main(argv)."""
import csv
import glob
import json
import os

import numpy as np
import pytest
from absl import app
import tensorflow as tf

from tfcomp import codecs, io, models, testing, training

import helpers

train = helpers.tool("train")
val = helpers.tool("val")


def _run(module, argv):
  module.FLAGS.unparse_flags()
  module.main(argv)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  for i, (h, w) in enumerate([(40, 56), (33, 20)]):
    io.write_png(str(folder / f"im{i}.png"), testing.smooth_image(h, w, 3, seed=i))
  return str(folder)


def _event_tags(logdir):
  tags = set()
  for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.add(value.tag)
  return tags


@pytest.mark.parametrize("family,overrides,scalars,images_", [
    ("srec", ["num_levels=1", "num_features=8", "num_blocks=1", "num_components=2"],
     {"loss", "bpsp", "bpsp/y0_0", "learning_rate"}, {"x", "y1"}),
    ("hyperprior", ["num_filters=8", "latent_channels=8", "hyper_filters=8"],
     {"loss", "bpp", "psnr", "mse", "learning_rate"}, {"x", "x_hat", "scales"}),
    ("imgcomp", ["num_filters=8", "num_stacks=0", "latent_channels=4", "context_filters=4"],
     {"loss", "bpp", "H", "ms_ssim", "psnr", "centers/0", "learning_rate"},
     {"x", "x_hat", "importance"}),
    # RC: its training pairs (each image beside its cached base layers) come from the tool.
    ("rc", ["num_features=8", "num_blocks=1", "num_components=2", "train_qps=[20, 30]"],
     {"loss", "bpsp", "bpsp/residual", "bpsp/base", "qp", "learning_rate"},
     {"x", "x_l", "residual"}),
])
def test_train_writes_summaries_checkpoints_and_the_model(tmp_path, images, family,
                                                          overrides, scalars, images_):
  logdir = str(tmp_path / "run")
  argv = ["train.py", "--model", family, "--config", "b" if family == "imgcomp" else "small",
          "--train", images,
          "--eval", images, "--logdir", logdir, "--steps", "2", "--batch_size", "2",
          "--crop_size", "16" if family in ("srec", "rc") else "64", "--summary_every", "1",
          "--eval_every", "2", "--checkpoint_every", "1"]
  argv += [f"--set={o}" for o in overrides]
  if family not in ("srec", "rc"):  # 64x64 crops (a hyperprior block, MS-SSIM): bigger images
    for i in range(2):
      io.write_png(str(tmp_path / f"big{i}.png"), testing.smooth_image(80, 90, 3, seed=i))
    argv[argv.index("--train") + 1] = argv[argv.index("--eval") + 1] = str(tmp_path)
  _run(train, argv)
  assert os.path.exists(os.path.join(logdir, "model.npz"))
  assert glob.glob(os.path.join(logdir, "ckpt", "ckpt-2.index"))
  tags = _event_tags(logdir)
  assert scalars <= tags, scalars - tags
  assert images_ <= tags, images_ - tags
  frozen = str(tmp_path / "frozen.npz")
  _run(helpers.tool("freeze"), ["freeze.py", "--logdir", logdir, "--out", frozen])
  codec = codecs.from_weights("frozen", frozen)
  assert codec.model.get_config()["num_features" if family in ("srec", "rc") else
                                  "num_filters"] == 8
  if family == "rc":  # the base layers were coded once into the default cache
    assert len(glob.glob(os.path.join(logdir, "cache", "*-qp20.png"))) == len(
        glob.glob(os.path.join(argv[argv.index("--train") + 1], "*.png")))


@pytest.mark.parametrize("flag,value,message", [
    ("--min_lr", "-1e-5", "min_learning_rate must be in"),
    ("--min_lr", "1e-2", "min_learning_rate must be in"),
    ("--eval_limit", "-1", "eval_limit"),
    ("--lr_half_life", "0", "lr_half_life must be positive"),
])
def test_train_rejects_bad_options_before_it_starts(tmp_path, images, flag, value, message):
  logdir = tmp_path / "run"
  with pytest.raises(ValueError, match=message):
    _run(train, ["train.py", "--model", "srec", "--train", images, "--logdir", str(logdir),
                 "--lr", "1e-3", flag, value])
  assert not logdir.exists()


def test_restore_starts_a_run_from_another_runs_weights(tmp_path, images, capsys):
  tiny = ["--model", "imgcomp", "--config", "b", "--train", images, "--batch_size", "2",
          "--crop_size", "16", "--set=num_filters=8", "--set=num_stacks=0",
          "--set=latent_channels=4", "--set=context_filters=4"]
  source = str(tmp_path / "source")
  _run(train, ["train.py", *tiny, "--logdir", source, "--steps", "2"])
  expected = models.load(os.path.join(source, "model.npz"))[1].get_weights()
  # A checkpoint directory means its latest checkpoint, and the log names which one.
  ckpt, npz = os.path.join(source, "ckpt"), os.path.join(source, "model.npz")
  for restore, named in ((ckpt, os.path.join(ckpt, "ckpt-2")), (npz, npz)):
    fork = str(tmp_path / f"fork-{os.path.basename(named)}")
    capsys.readouterr()
    # One step at a negligible learning rate: Adam moves each weight by about the lr.
    _run(train, ["train.py", *tiny, "--logdir", fork, "--steps", "1", "--lr", "1e-12",
                 "--min_lr", "0", "--restore", restore])
    assert f"initialized from {named}\n" in capsys.readouterr().out
    restored = models.load(os.path.join(fork, "model.npz"))[1].get_weights()
    for a, b in zip(expected, restored):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_val_reports_estimated_and_real_rates(tmp_path, images):
  model = models.SReC(num_features=8, num_blocks=1, num_components=2)
  models.build_variables(model)
  weights = str(tmp_path / "tiny.npz")
  models.save(model, "srec", weights)
  out = str(tmp_path / "val")
  _run(val, ["val.py", "--weights", weights, "--real_bpp", "--save_ours", "--out", out,
             images])
  with open(os.path.join(out, "measures.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["image"] for r in rows] == ["im0.png", "im1.png"]
  for r in rows:
    assert float(r["real_bpsp"]) > 0 and abs(float(r["overhead_percent"])) < 50
  results = json.load(open(os.path.join(out, "results.json")))
  assert results["images"] == 2 and "estimated_bpsp" in results["mean"]
  np.testing.assert_array_equal(io.read_image(os.path.join(out, "imgs", "im1.png")),
                                io.read_image(os.path.join(images, "im1.png")))
  with pytest.raises(app.UsageError, match="--refine_steps: model .* cannot refine"):
    _run(val, ["val.py", "--weights", weights, "--refine_steps", "3", "--out", out, images])
  assert results["effort"] == 2
  _run(val, ["val.py", "--weights", weights, "--real_bpp", "--effort", "1", "--out", out, images])
  effort1 = json.load(open(os.path.join(out, "results.json")))
  assert effort1["effort"] == 1
  with pytest.raises(app.UsageError, match="--effort: effort must be one of"):
    _run(val, ["val.py", "--weights", weights, "--real_bpp", "--effort", "5", "--out", out,
               images])


def test_freeze_then_val_codes_a_lossy_model(tmp_path, monkeypatch):
  from tfcomp import lpips  # pylint: disable=import-outside-toplevel
  monkeypatch.setenv(lpips.WEIGHTS_ENV, lpips.save_standin(str(tmp_path / "lpips.npz")))
  for i in range(2):
    io.write_png(str(tmp_path / f"im{i}.png"), testing.smooth_image(70 + i, 90, 3, seed=i))
  model = models.Hyperprior(num_filters=8, latent_channels=8, hyper_filters=8)
  trained, frozen = str(tmp_path / "trained.npz"), str(tmp_path / "frozen.npz")
  models.save(model, "hyperprior", trained)
  with pytest.raises(ValueError, match="tools/freeze.py"):
    _run(val, ["val.py", "--weights", trained, "--out", str(tmp_path / "x"), str(tmp_path)])
  _run(helpers.tool("freeze"), ["freeze.py", "--weights", trained, "--out", frozen])
  out = str(tmp_path / "val")
  _run(val, ["val.py", "--weights", frozen, "--real_bpp", "--save_ours", "--out", out,
             str(tmp_path / "*.png")])
  with open(os.path.join(out, "measures.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["image"] for r in rows] == ["im0.png", "im1.png"]
  for r in rows:
    assert float(r["real_bpp"]) > 0 and float(r["psnr"]) > 0 and "estimated_bpp" in r
    assert float(r["lpips"]) > 0
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  means = results["mean"]
  # MS-SSIM is undefined below its five scales' size: null, not NaN (which is not JSON).
  assert means["ms_ssim"] is None and means["psnr"] > 0 and means["lpips"] > 0
  # No 256x256 patch fits: the patch distance is undefined too.
  assert results["fd_alex256"] is None and results["fd_patches"] == 0


def test_val_refines_on_both_paths(tmp_path):
  """val checks that the refined file decodes to the refined estimate's reconstruction."""
  io.write_png(str(tmp_path / "im.png"), testing.smooth_image(64, 96, 3, seed=6))
  results = {}
  for steps in (0, 10):
    out = str(tmp_path / f"val{steps}")
    # A trained model: an untrained one's rounded latents barely move.
    _run(val, ["val.py", "--model", "hyperprior-ms-v5-q3", "--real_bpp", "--refine_steps",
               str(steps), "--out", out, str(tmp_path)])
    with open(os.path.join(out, "results.json")) as f:
      results[steps] = json.load(f)
  assert results[10]["refine_steps"] == 10
  plain, refined = results[0]["mean"], results[10]["mean"]
  assert refined["estimated_bpp"] < plain["estimated_bpp"]
  assert refined["real_bpp"] < plain["real_bpp"]
  # The streams' fixed bytes weigh heavily on 64x96 pixels; alike for both encoders.
  assert abs(refined["overhead_percent"] - plain["overhead_percent"]) < 3


def test_restore_grows_a_model_from_a_smaller_one(tmp_path):
  """A .npz with fewer residual stacks restores by weight path; the new stacks start as
  the identity, so the grown model computes what the source did."""
  small = {"num_filters": 8, "num_stacks": 1, "stack_blocks": 1, "latent_channels": 4,
           "context_filters": 4}
  source = models.build("imgcomp", small)
  models.build_variables(source)
  path = str(tmp_path / "small.npz")
  models.save(source, "imgcomp", path)
  grown = models.build("imgcomp", {**small, "num_stacks": 2})
  models.build_variables(grown)
  logged = []
  training._restore_weights(grown, "imgcomp", path, log=logged.append)
  assert "g_s/stack1/last/kernel" in logged[0] and "g_s/stack0" not in logged[0]
  x = tf.constant(testing.smooth_image(24, 40, 3, seed=3)[None])
  before, after = source(x, training=False), grown(x, training=False)
  for key in ("x_hat", "bits"):
    np.testing.assert_array_equal(before[key].numpy(), after[key].numpy())
  narrower = models.build("imgcomp", {**small, "num_filters": 4})
  models.build_variables(narrower)
  with pytest.raises(ValueError, match=r"does not fit .* g_a/conv0/kernel \(5, 5, 3, 4\) is "
                                       r"\(5, 5, 3, 2\) here"):
    training._restore_weights(narrower, "imgcomp", path)
  srec = models.build("srec", {"num_features": 8, "num_blocks": 1, "num_components": 2})
  with pytest.raises(ValueError, match="holds a model of family 'imgcomp', not 'srec'"):
    training._restore_weights(srec, "srec", path)


def test_restore_adds_residual_blocks_as_the_identity(tmp_path):
  """A body restored with fewer blocks than the config asks for: the added blocks pass
  their input through, so the deeper SReC codes exactly as the shallower one did."""
  small = {"num_levels": 2, "num_features": 8, "num_blocks": 1, "num_components": 2}
  source = models.build("srec", small)
  models.build_variables(source)
  path = str(tmp_path / "shallow.npz")
  models.save(source, "srec", path)
  deeper = models.build("srec", {**small, "num_blocks": 3})
  models.build_variables(deeper)
  logged = []
  training._restore_weights(deeper, "srec", path, log=logged.append)
  assert "net0_0/body/block2/conv1/kernel" in logged[0]
  x = tf.constant(testing.smooth_image(24, 40, 3, seed=4)[None])
  np.testing.assert_array_equal(source(x)["bits"].numpy(), deeper(x)["bits"].numpy())
  # Only conv2 starts at zero: conv1 stays random, so the new block can learn.
  block = deeper.nets[0][0].body.blocks[2]
  assert not np.any(block.conv2.kernel.numpy()) and np.any(block.conv1.kernel.numpy())


@pytest.mark.parametrize("family, small, wide", [
    ("srec", {"num_levels": 2, "num_features": 8, "num_blocks": 1, "num_components": 2},
     {"num_features": 12}),
    ("l3c", {"num_scales": 2, "num_features": 8, "num_blocks": 1, "num_components": 2},
     {"num_features": 12})])
def test_restore_widens_a_model_from_a_narrower_one(tmp_path, family, small, wide):
  """Convolutions restored into more features (grouped layouts included: the classifiers'
  concatenated branches, the depth_to_space upsamplers) code exactly as before, and the
  added channels can learn."""
  tf.keras.utils.set_random_seed(3)  # the added channels' initial values
  source = models.build(family, small)
  models.build_variables(source)
  # Every weight nonzero, as after training: zero-initialized layers (the classifiers'
  # kernels, the bodies' last convolutions) would hide what the added channels do.
  rng = np.random.default_rng(6)
  for v in source.trainable_variables:
    v.assign(v + rng.normal(0, 0.05, v.shape).astype(np.float32))
  path = str(tmp_path / "narrow.npz")
  models.save(source, family, path)
  wider = models.build(family, {**small, **wide})
  models.build_variables(wider)
  training._restore_weights(wider, family, path)
  x = tf.constant(testing.smooth_image(24, 40, 3, seed=5)[None])
  np.testing.assert_allclose(source(x)["bits"].numpy(), wider(x)["bits"].numpy(), rtol=1e-5)
  with tf.GradientTape() as tape:
    bits = tf.reduce_sum(wider(x, training=True)["bits"])
  grads = tape.gradient(bits, wider.trainable_variables)
  reading = [g for v, g in zip(wider.trainable_variables, grads)
             if "body/block0/conv1/kernel" in v.name][0].numpy()
  assert np.any(reading[:, :, 8:])  # the zeroed rows reading the added channels move
  wide_path = str(tmp_path / "wide.npz")
  models.save(wider, family, wide_path)
  with pytest.raises(ValueError, match="does not fit"):  # narrowing is no restore
    training._restore_weights(source, family, wide_path)


def test_freeze_stores_exact_kernels_on_their_grids_and_plain_kernels(tmp_path):
  """The coding-ready copy codes what the trained model estimated, from smaller files."""
  from tfcomp import exact  # pylint: disable=import-outside-toplevel
  from tfcomp.models import layers  # pylint: disable=import-outside-toplevel
  model = models.Hyperprior(num_filters=8, latent_channels=8, hyper_filters=8)
  trained, frozen = str(tmp_path / "trained.npz"), str(tmp_path / "frozen.npz")
  models.save(model, "hyperprior", trained)
  _run(helpers.tool("freeze"), ["freeze.py", "--weights", trained, "--out", frozen])
  _, coding = models.load(frozen)
  assert coding.get_config()["kernel_parameter"] == "variable" and coding.compression
  for layer in coding.h_s.layers:
    assert layers.is_conv(layer) and layer.exact
    grid = exact.pow2(exact.kernel_grids(layer.kernel, layer.upsampling))
    np.testing.assert_array_equal(layer.kernel * grid, np.round(layer.kernel * grid))
  x = tf.constant(testing.smooth_image(64, 64, 3, seed=2)[None])
  np.testing.assert_allclose(coding(x)["x_hat"], model(x)["x_hat"], atol=1e-3)


def test_remake_exact_converts_a_pre_exact_hyperprior(tmp_path):
  """A hyperprior stored in the 0.1.0 layout (h_s as RDFT SignalConv2D layers) becomes a
  coding-ready exact one that computes the same h_s."""
  remake = helpers.tool("remake_exact")
  config = {"num_filters": 8, "latent_channels": 8, "hyper_filters": 8}
  model = models.Hyperprior(**config)
  legacy = remake._legacy_h_s({**model.get_config()})  # pylint: disable=protected-access
  for v in legacy.weights:
    v.assign(tf.random.stateless_normal(v.shape, (3, 4)) * 0.1)
  ours = {id(v) for v in model.h_s.weights}
  start = next(i for i, v in enumerate(model.weights) if id(v) in ours)
  rest = [v for v in model.weights if id(v) not in ours]
  stored = rest[:start] + list(legacy.weights) + rest[start:]
  old = str(tmp_path / "old.npz")
  np.savez(old, family=np.array("hyperprior"), config=np.array(json.dumps(
      {k: v for k, v in model.get_config().items() if k != "kernel_parameter"})),
           **{f"w{i:04d}:{v.name}": v.numpy() for i, v in enumerate(stored)})
  out = str(tmp_path / "new.npz")
  _run(remake, ["remake_exact.py", "--weights", old, "--out", out])
  _, made = models.load(out)
  z = tf.random.stateless_normal((1, 3, 4, 8), (5, 6))
  np.testing.assert_allclose(made.h_s(z), legacy(z), atol=0.02)  # exact grids, 11 bits
  image = testing.smooth_image(64, 64, 3, seed=4)
  codec = codecs.from_weights("made", out)
  decoded, _ = codecs.decompress(codecs.compress(image, codec), lambda _: codec)
  assert decoded.shape == image.shape
  with pytest.raises(app.UsageError, match="only hyperprior models need re-making"):
    srec = str(tmp_path / "srec.npz")
    models.save(models.SReC(num_features=4, num_blocks=1, num_components=2), "srec", srec)
    _run(remake, ["remake_exact.py", "--weights", srec, "--out", out])


def test_bench_versions_times_two_checkouts_side_by_side(tmp_path, capsys):
  """Here against itself: the same model on both sides codes the same bytes."""
  io.write_png(str(tmp_path / "a.png"), testing.smooth_image(24, 40, 3, seed=1))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  _run(helpers.tool("bench_versions"), ["bench_versions.py", "--other", root, "--pairs",
                                        "fixedpred-v1:fixedpred-v1", "--images",
                                        str(tmp_path), "--rounds", "1"])
  row = [line for line in capsys.readouterr().out.splitlines() if "fixedpred" in line]
  assert len(row) == 1 and "(+0.00%)" in row[0]


def test_bench_cli_times_batch_single_and_in_process_coding(tmp_path, capsys):
  io.write_png(str(tmp_path / "a.png"), testing.smooth_image(16, 24, 3, seed=1))
  _run(helpers.tool("bench_cli"), ["bench_cli.py", "--images", str(tmp_path), "--models",
                                   "fixedpred-v1"])
  out = capsys.readouterr().out
  row = [line for line in out.splitlines() if line.startswith("| fixedpred-v1")]
  assert len(row) == 1 and "`tfcomp models`" in out and "`tfcomp info`" in out


def test_hific_figure_compares_a_model_with_classic_codecs_at_its_rate(tmp_path):
  from tfcomp import baselines, lpips  # pylint: disable=import-outside-toplevel
  weights = str(tmp_path / "tiny.npz")
  helpers.tiny_lossy_codec(weights)
  standin = lpips.save_standin(str(tmp_path / "lpips.npz"))
  samples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "tfcomp", "samples")
  out = tmp_path / "figure" / "crops.png"
  figure = helpers.tool("hific_figure")
  argv = ["hific_figure.py", "--weights", weights, "--dataset", samples, "--images",
          "kodim23-crop", "--codecs", "jpeg-420,webp", "--crop", "128", "--crop_at", "64,100",
          "--lpips_weights", standin, "--out", str(out)]
  rows = figure.main(argv)
  assert [(r["image"], r["model"]) for r in rows] == [("kodim23-crop", "tiny")]
  model, jpeg, webp = rows[0]["panels"]
  assert [p["label"] for p in (model, jpeg, webp)] == ["tiny", "jpeg-420", "webp"]
  assert rows[0]["window"] == (64, 100) and all(p["lpips"] > 0 for p in (model, jpeg, webp))
  # Each classic codec at its setting of the rate closest to the model's.
  image = io.read_image(os.path.join(samples, "kodim23-crop.png"))
  for panel, name in ((jpeg, "jpeg-420"), (webp, "webp")):
    codec = baselines.get(name)
    assert panel["bpp"] == pytest.approx(baselines.match_rate(codec, image, model["bpp"])[2])
  picture = io.read_image(str(out))
  # A row of three 128-pixel crops at 1:1 (100 dpi), with captions above.
  assert picture.shape[1] >= 3 * 128 and picture.shape[0] >= 128 and picture.std() > 10
  assert json.loads((tmp_path / "figure" / "crops.json").read_text())["lpips"] is True
  with pytest.raises(app.UsageError, match="--crop_at 200,0: a 128-pixel crop there"):
    _run(figure, argv[:-2] + ["--crop_at", "200,0", "--out", str(out)])
  with pytest.raises(app.UsageError, match="--images kodim99: not in"):
    _run(figure, ["hific_figure.py", "--weights", weights, "--dataset", samples,
                  "--images", "kodim99"])
  with pytest.raises(app.UsageError, match="at least one learned model"):
    _run(figure, ["hific_figure.py", "--dataset", samples, "--images", "kodim23-crop"])


def test_bench_adaptation_measures_every_setting_and_decodes(tmp_path):
  tool = helpers.tool("bench_adaptation")
  folder = tmp_path / "photos"
  folder.mkdir()
  io.write_png(str(folder / "a.png"), testing.photo_mosaic(40, 56))
  results, datasets = tool.run([str(folder)], ["srec-small-v5"])
  assert datasets == ["photos"]
  per = results["srec-small-v5"]
  assert sorted(per) == [0, 1, 2, 3, 4, 7]
  bpsp = {a: per[a]["photos"][0] for a in per}
  assert all(0 < b < 8 for b in bpsp.values()) and bpsp[7] < bpsp[0], bpsp
  table = tool.markdown(results, datasets)
  assert "| srec-small-v5 | bias + scale + calibration (effort 2) |" in table
