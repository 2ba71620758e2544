"""The `tfcomp` command as a user runs it: exact round trips, clear errors, no partial files."""
import io as io_lib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli
from tfcomp import cli, codecs, io, metrics, testing, zoo


def save(path, array, mode=None):
  if array.dtype == np.uint16 or array.shape[-1] == 2:
    with open(path, "wb") as f:
      f.write(io.encode_png(array))
  else:
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array, mode).save(path)
  return path


def round_trip(tmp_path, image, model=None, suffix="in.png"):
  src = save(tmp_path / suffix, image)
  coded, out = tmp_path / "x.tfc", tmp_path / "out.png"
  model_args = ["--model", model] if model else []
  status, stdout, stderr = run_cli("compress", *model_args, src, coded)
  assert (status, stderr) == (0, ""), stderr
  assert "bits/subpixel" in stdout
  status, _, stderr = run_cli("decompress", coded, out)
  assert (status, stderr) == (0, ""), stderr
  decoded = io.read_image(out)
  np.testing.assert_array_equal(decoded, io.read_image(src))
  assert decoded.dtype == image.dtype
  return coded


@pytest.mark.parametrize("height,width", [(1, 1), (7, 513), (37, 23), (2, 1), (1, 300)])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_is_exact_for_any_size(tmp_path, height, width, channels):
  round_trip(tmp_path, testing.smooth_image(height, width, channels, seed=height * width))


def test_round_trip_large_image(tmp_path):
  coded = round_trip(tmp_path, testing.smooth_image(2000, 3000, 3, seed=1))
  assert os.path.getsize(coded) < 2000 * 3000 * 3  # it compresses


@pytest.mark.parametrize("channels,dtype", [(4, np.uint8), (2, np.uint8), (1, np.uint16),
                                            (3, np.uint16), (4, np.uint16)])
def test_alpha_and_16_bit_are_coded_exactly(tmp_path, channels, dtype):
  image = testing.smooth_image(33, 45, channels, dtype, seed=channels)
  image[..., -1] = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (33, 45))
  round_trip(tmp_path, image)


def test_other_input_formats(tmp_path):
  image = testing.smooth_image(20, 30, 3, seed=2)
  for name in ("in.bmp", "in.ppm", "in.tif", "in.webp"):
    path = tmp_path / name
    Image.fromarray(image).save(path, **({"lossless": True} if name.endswith("webp") else {}))
    coded, out = tmp_path / "x.tfc", tmp_path / "out.png"
    assert run_cli("compress", path, coded)[0] == 0
    assert run_cli("decompress", coded, out)[0] == 0
    np.testing.assert_array_equal(io.read_image(out), image)
  palette = Image.fromarray(image).quantize(16)
  palette.save(tmp_path / "p.png")
  assert run_cli("compress", tmp_path / "p.png", tmp_path / "p.tfc")[0] == 0
  assert run_cli("decompress", tmp_path / "p.tfc", tmp_path / "p_out.png")[0] == 0
  np.testing.assert_array_equal(io.read_image(tmp_path / "p_out.png"),
                                np.asarray(palette.convert("RGB")))


def test_models_lists_one_row_per_model_with_its_measured_figures():
  status, stdout, _ = run_cli("models")
  assert status == 0
  header, *rows, footer = stdout.strip().splitlines()
  assert header.split()[:3] == ["MODEL", "FAMILY", "KIND"] and "manifest" in footer
  assert [row.split()[0] for row in rows] == zoo.names()
  for e, row in zip(zoo.ENTRIES, rows):
    assert e.name.startswith(e.family + "-") and row.split()[1] == e.family
    figures = zoo.figures(e.name)
    assert f"{figures['bpsp' if e.lossless else 'bpp']:.3f}" in row, row
    assert e.use in row
  assert zoo.DEFAULT in zoo.names() and f"{zoo.DEFAULT}  " in stdout
  status, stdout, _ = run_cli("models", "--all")
  retired = [line for line in stdout.splitlines() if " retired " in line]
  assert len(retired) == len(zoo.RETIRED) and "replaced by srec-small-v5" in stdout


def test_closed_pipe_ends_quietly():
  class ClosedPipe:
    def write(self, text):
      raise BrokenPipeError(32, "Broken pipe")

  err = io_lib.StringIO()
  assert cli.main(["models"], out=ClosedPipe(), err=err) == cli.EXIT_BROKEN_PIPE
  assert not err.getvalue()


def test_info_describes_the_file(tmp_path):
  coded = round_trip(tmp_path, testing.smooth_image(10, 12, 3))
  status, stdout, _ = run_cli("info", coded)
  assert status == 0
  assert f"model: {zoo.DEFAULT}" in stdout and "image: 12x10 RGB 8-bit" in stdout
  assert f"size: {os.path.getsize(coded)} bytes" in stdout


@pytest.mark.parametrize("name", [e.name for e in zoo.ENTRIES if e.family in ("srec", "l3c")])
def test_info_counts_the_tiles_stored_as_png(tmp_path, name):
  """A learned lossless model keeps photos and stores flat synthetic tiles as PNG."""
  for image, png_tiles in ((testing.photo_mosaic(64, 80), 0),
                           (np.full((30, 40, 3), 250, np.uint8), 1)):
    src = save(tmp_path / "in.png", image)
    assert run_cli("compress", "--model", name, src, tmp_path / "x.tfc")[0] == 0
    status, stdout, _ = run_cli("info", tmp_path / "x.tfc")
    assert status == 0 and f"tiles: 1 ({png_tiles} stored as PNG)" in stdout, stdout


@pytest.mark.parametrize("channels", [3, 1])
def test_rc_codes_through_the_command_and_info_shows_its_base_layer(tmp_path, channels):
  image = testing.photo_mosaic(160, 192)
  image = image if channels == 3 else image[..., :1]
  coded = round_trip(tmp_path, image, "rc-small-v1")
  status, stdout, _ = run_cli("info", coded)
  assert status == 0 and "tiles: 1 (0 stored as PNG)" in stdout, stdout
  assert "base layer: HEVC intra, QP " in stdout and "residual: " in stdout, stdout


def test_effort_picks_the_coders_adaptation_and_info_shows_it(tmp_path):
  src = save(tmp_path / "in.png", testing.photo_mosaic(64, 80))
  sizes = {}
  for effort, line in ((1, "the model's distributions as they are (effort 1)"),
                       (2, "online adaptation bias+scale+calibration (effort 2)")):
    coded = tmp_path / f"e{effort}.tfc"
    assert run_cli("compress", "--effort", str(effort), src, coded)[0] == 0
    status, stdout, _ = run_cli("info", coded)
    assert status == 0 and line in stdout, stdout
    assert run_cli("decompress", coded, tmp_path / f"e{effort}.png")[0] == 0
    np.testing.assert_array_equal(io.read_image(tmp_path / f"e{effort}.png"),
                                  testing.photo_mosaic(64, 80))
    sizes[effort] = os.path.getsize(coded)
  # The default is effort 2.
  assert run_cli("compress", src, tmp_path / "default.tfc")[0] == 0
  assert os.path.getsize(tmp_path / "default.tfc") == sizes[2]
  # An RGBA image's default model has no efforts: it is coded as usual.
  rgba = save(tmp_path / "rgba.png", np.zeros((5, 6, 4), np.uint8))
  assert run_cli("compress", "--effort", "1", rgba, tmp_path / "rgba.tfc")[0] == 0


def _check_error(tmp_path, argv, message, output=None):
  before = set(os.listdir(tmp_path))
  status, stdout, stderr = run_cli(*argv)
  assert status != 0
  assert stdout == ""
  assert stderr.count("\n") == 1 and stderr.startswith("tfcomp: error: "), stderr
  assert message in stderr, stderr
  assert set(os.listdir(tmp_path)) == before  # nothing written, no temporary left
  if output:
    assert not os.path.exists(output)
  return status, stderr


def test_bad_inputs_give_one_clear_line_and_no_output(tmp_path):
  coded = round_trip(tmp_path, testing.smooth_image(16, 16, 3))
  data = coded.read_bytes()
  out = tmp_path / "never.png"
  (tmp_path / "trunc.tfc").write_bytes(data[:len(data) // 2])
  (tmp_path / "random.tfc").write_bytes(np.random.default_rng(0).bytes(3000))
  (tmp_path / "empty.tfc").write_bytes(b"")
  (tmp_path / "notimage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
  flipped = bytearray(data)
  flipped[-10] ^= 4
  (tmp_path / "flipped.tfc").write_bytes(bytes(flipped))
  _check_error(tmp_path, ["decompress", tmp_path / "trunc.tfc", out], "truncated", out)
  _check_error(tmp_path, ["decompress", tmp_path / "random.tfc", out], "not a tfcomp file", out)
  _check_error(tmp_path, ["decompress", tmp_path / "empty.tfc", out], "not a tfcomp file", out)
  _check_error(tmp_path, ["decompress", tmp_path / "flipped.tfc", out], "checksum", out)
  _check_error(tmp_path, ["decompress", tmp_path / "missing.tfc", out], "cannot open", out)
  _check_error(tmp_path, ["compress", tmp_path / "notimage.png", out], "cannot decode", out)
  _check_error(tmp_path, ["compress", tmp_path / "random.tfc", out], "cannot read image", out)
  _check_error(tmp_path, ["compress", "--model", "nope-1", coded, out], "unknown model", out)
  _check_error(tmp_path, ["compress", coded], "required", None)
  _check_error(tmp_path, ["compress", "--refine_steps", "3", tmp_path / "in.png", out],
               "cannot refine", out)
  _check_error(tmp_path, ["frobnicate"], "invalid choice", None)
  _check_error(tmp_path, [], "missing command", None)
  _check_error(tmp_path, ["compress", tmp_path / "in.png", tmp_path / "no/such/dir.tfc"],
               "directory '" + str(tmp_path / "no/such") + "' does not exist", None)
  _check_error(tmp_path, ["compress", tmp_path / "in.png", tmp_path], "is a directory", None)
  _check_error(tmp_path, ["decompress", coded, tmp_path / "out.bmp"], "writes PNG, not .bmp",
               tmp_path / "out.bmp")
  _check_error(tmp_path, ["decompress", coded, tmp_path / "missing/out.png"], "does not exist",
               None)
  for name in ("OUT.PNG", "no_extension"):
    status, _, stderr = run_cli("decompress", coded, tmp_path / name)
    assert (status, stderr) == (0, ""), stderr
    assert io.read_image(tmp_path / name).shape == (16, 16, 3)


def test_file_from_another_model_version_is_refused(tmp_path):
  from tfcomp import container  # pylint: disable=import-outside-toplevel
  coded = round_trip(tmp_path, testing.smooth_image(8, 8, 3))
  parsed = container.read(coded.read_bytes())
  import dataclasses  # pylint: disable=import-outside-toplevel
  for change, message in ((dict(weights_hash=b"\x00" * 16), "another version"),
                          (dict(model="l3c-future"), "does not have")):
    (tmp_path / "other.tfc").write_bytes(container.write(dataclasses.replace(parsed, **change)))
    _check_error(tmp_path, ["decompress", tmp_path / "other.tfc", tmp_path / "o.png"], message)


def test_batch_codes_a_folder_and_names_each_failure(tmp_path):
  """Good images, a corrupt one and a non-image through one call each way: the good ones
  exact, each bad one named on one line, the others coded, exit status 1, no partials."""
  src = tmp_path / "src"
  src.mkdir()
  images = {"a": testing.photo_mosaic(40, 30), "b": testing.smooth_image(17, 9, 1, seed=2),
            "c": testing.smooth_image(12, 20, 3, seed=3)}
  for name, image in images.items():
    save(src / f"{name}.png", image)
  (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
  (src / "notes.txt").write_text("not an image, and not picked from the folder")
  (src / "d.tif").write_bytes(b"II*\x00garbage")
  status, stdout, stderr = run_cli("compress", src, tmp_path / "coded")
  assert status == cli.EXIT_ERROR
  errors = stderr.strip().splitlines()
  assert len(errors) == 2 and all(line.startswith("tfcomp: error: ") for line in errors)
  assert any("broken.png" in line for line in errors) and any("d.tif" in line for line in errors)
  assert sorted(os.listdir(tmp_path / "coded")) == ["a.tfc", "b.tfc", "c.tfc"]
  assert "3 of 5 files coded" in stdout and "2 failed" in stdout
  (tmp_path / "coded" / "junk.tfc").write_bytes(b"not a tfcomp file")
  status, stdout, stderr = run_cli("decompress", str(tmp_path / "coded" / "*.tfc"),
                                   tmp_path / "decoded")
  assert status == cli.EXIT_ERROR and stderr.count("\n") == 1 and "junk.tfc" in stderr
  assert sorted(os.listdir(tmp_path / "decoded")) == ["a.png", "b.png", "c.png"]
  for name, image in images.items():
    np.testing.assert_array_equal(io.read_image(tmp_path / "decoded" / f"{name}.png"), image)
  # Several files, every one fine: status 0; a name taken twice is refused, not overwritten.
  status, stdout, _ = run_cli("compress", src / "a.png", src / "c.png", tmp_path / "two")
  assert status == 0 and "2 of 2 files coded" in stdout
  (tmp_path / "other").mkdir()
  save(tmp_path / "other" / "a.png", images["c"])
  status, _, stderr = run_cli("compress", src / "a.png", tmp_path / "other" / "a.png",
                              tmp_path / "three")
  assert status == cli.EXIT_ERROR and "already" in stderr
  assert run_cli("compress", src, src / "a.png")[0] == cli.EXIT_USAGE  # a file as folder


def test_lossy_targets_pick_the_nearest_rate_point(tmp_path):
  points = sorted((zoo.figures(e.name)["bpp"], e.name) for e in zoo.ENTRIES
                  if e.curve == zoo.DEFAULT_LOSSY)
  assert len(points) == 4
  assert zoo.lossy_rate_point(bpp=points[1][0] + 0.01)[0] == points[1][1]
  assert zoo.lossy_rate_point(bpp=100)[0] == points[-1][1]
  assert zoo.lossy_rate_point(quality=1)[0] == points[0][1]
  assert zoo.lossy_rate_point(quality=100)[0] == points[-1][1]
  assert zoo.lossy_rate_point()[0] == points[2][1]  # quality 75
  src = save(tmp_path / "in.png", testing.photo_mosaic(40, 48))
  status, stdout, _ = run_cli("compress", "--bpp", points[0][0], src, tmp_path / "x.tfc")
  assert status == 0 and f"({points[0][1]}; --bpp" in stdout
  status, stdout, _ = run_cli("compress", "--lossy", src, tmp_path / "y.tfc")
  assert status == 0 and f"({points[2][1]}; --lossy" in stdout
  for argv, message in ((["--quality", "0"], "[1, 100]"), (["--bpp", "-1"], "positive"),
                        (["--lossy", "--model", "fixedpred-v1"], "drop --model"),
                        (["--bpp", "1", "--quality", "50"], "not both"),
                        (["--lossy", "--effort", "2"], "not with --lossy"),
                        (["--effort", "0"], "efforts are 1, 2"),
                        (["--model", "fixedpred-v1", "--effort", "2"], "no effort levels"),
                        (["--effort", "9"], "effort must be one of [1, 2]")):
    _check_error(tmp_path, ["compress", *argv, src, tmp_path / "z.tfc"], message)


def test_models_info_and_help_start_without_tensorflow(tmp_path):
  coded = round_trip(tmp_path, testing.smooth_image(8, 8, 3))
  script = ("import sys; from tfcomp import cli; status = cli.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; "
            "sys.exit(status)")
  for argv in (["models"], ["info", str(coded)], ["--help"], ["compress", "--help"]):
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, (argv, result.stderr)


@pytest.mark.parametrize("old,new", [("srec-small-v3", "srec-small-v5"),
                                     ("hyperprior-ms-v4-q2", "hyperprior-ms-v5-q2"),
                                     ("imgcomp-v4-c", "imgcomp-v5-c")])
def test_retired_models_are_refused_naming_their_replacement(tmp_path, old, new):
  """Files of the machine-bound generations (and of superseded ones no longer shipped)."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  from tfcomp import container  # pylint: disable=import-outside-toplevel
  coded = round_trip(tmp_path, testing.smooth_image(8, 8, 3))
  parsed = container.read(coded.read_bytes())
  (tmp_path / "old.tfc").write_bytes(container.write(dataclasses.replace(parsed, model=old)))
  message = f"{old}, which was retired"
  _check_error(tmp_path, ["decompress", tmp_path / "old.tfc", tmp_path / "o.png"], message)
  status, stderr = _check_error(tmp_path, ["compress", "--model", old, coded, tmp_path / "y.tfc"],
                                message)
  assert f"{new} replaces it" in stderr and "0.1.0" in stderr
  status, stdout, _ = run_cli("info", tmp_path / "old.tfc")
  assert status == 0 and f"NOT installed (model {old}, which was retired" in stdout


def test_console_script_in_a_subprocess(tmp_path):
  src = save(tmp_path / "a.png", testing.smooth_image(9, 11, 3))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")  # the CLI must silence TF itself
  env.pop("TF_CPP_MIN_LOG_LEVEL")
  cmd = [sys.executable, "-m", "tfcomp_cli"]  # the console script's entry point
  ok = subprocess.run(cmd + ["compress", src, tmp_path / "a.tfc"], capture_output=True,
                      text=True, env=env)
  assert ok.returncode == 0 and ok.stderr == "", ok.stderr
  bad = subprocess.run(cmd + ["decompress", src, tmp_path / "b.png"], capture_output=True,
                       text=True, env=env)
  assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
  (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
  bad = subprocess.run(cmd + ["compress", tmp_path / "junk.png", tmp_path / "j.tfc"],
                       capture_output=True, text=True, env=env)
  assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr


def test_huge_declared_images_are_refused_before_decoding(tmp_path):
  """Tiny PNGs whose headers claim huge sizes: refused before any pixel is decoded."""
  import struct  # pylint: disable=import-outside-toplevel
  import zlib  # pylint: disable=import-outside-toplevel

  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body)))

  for side, message in ((100000, "outside [1, 65536]"), (60000, "exceeds the cap")):
    png = (b"\x89PNG\r\n\x1a\n" +
           chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(png)
    _check_error(tmp_path, ["compress", tmp_path / "bomb.png", tmp_path / "b.tfc"], message)
  (tmp_path / "short.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
  _check_error(tmp_path, ["compress", tmp_path / "short.png", tmp_path / "s.tfc"],
               "truncated PNG header")


def test_default_model_falls_back_for_images_it_cannot_code(tmp_path):
  """Without --model, RGBA and 16-bit images still compress, with the universal model."""
  for image in (testing.smooth_image(20, 30, 4, seed=3),
                testing.smooth_image(20, 30, 3, np.uint16, seed=4)):
    coded = round_trip(tmp_path, image)
    status, stdout, _ = run_cli("info", coded)
    assert status == 0
    assert f"model: {zoo.default_for(image)} " in stdout
    try:
      zoo.load(zoo.DEFAULT).check_image(image)
    except codecs.UnsupportedImageError:
      assert zoo.default_for(image) == zoo.UNIVERSAL


def test_refined_encoding_through_the_command_decodes_as_usual(tmp_path):
  image = testing.smooth_image(37, 23, 3, seed=8)
  src = save(tmp_path / "in.png", image)
  status, stdout, stderr = run_cli("compress", "--model", "hyperprior-ms-v5-q1",
                                   "--refine_steps", "3", src, tmp_path / "x.tfc")
  assert (status, stderr) == (0, ""), stderr
  assert "hyperprior-ms-v5-q1" in stdout
  assert run_cli("decompress", tmp_path / "x.tfc", tmp_path / "out.png")[0] == 0
  assert metrics.psnr(image, io.read_image(tmp_path / "out.png")) > 20


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_codes_odd_sizes_through_the_command(tmp_path, name):
  lossless = zoo.get(name).lossless
  for shape in ((1, 1, 3), (37, 23, 3), (23, 37, 1)):
    image = testing.smooth_image(*shape, seed=sum(shape))
    src = save(tmp_path / "in.png", image)
    assert run_cli("compress", "--model", name, src, tmp_path / "x.tfc")[0] == 0
    assert run_cli("decompress", tmp_path / "x.tfc", tmp_path / "out.png")[0] == 0
    decoded = io.read_image(tmp_path / "out.png")
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    if lossless:
      np.testing.assert_array_equal(decoded, image)
    elif shape[0] > 1:
      assert metrics.psnr(image, decoded) > 20, (name, shape)
