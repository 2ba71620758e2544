"""The benchmark harness: classic codecs, the input pipeline, TFDS builders, end to end."""
import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli, tool
from tfcomp import baselines, bench, data, io, lpips, metrics, testing, zoo


@pytest.fixture(scope="module")
def standin_lpips(tmp_path_factory):
  """Path of a small random LPIPS network: the tests never depend on the real weights."""
  return lpips.save_standin(str(tmp_path_factory.mktemp("lpips") / "standin.npz"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A tiny image folder: names out of order, one 16-bit and one gray image."""
  path = tmp_path_factory.mktemp("images")
  for i, name in enumerate(["c.png", "a.png", "b.png"]):
    Image.fromarray(testing.smooth_image(180 + 7 * i, 200 + 5 * i, 3, seed=i)).save(path / name)
  return path


@pytest.mark.parametrize("codec", baselines.CODECS, ids=lambda c: c.name)
def test_classic_codec_round_trip(codec):
  if not codec.available():
    pytest.skip(f"{codec.name}: library not installed")
  image = testing.smooth_image(64, 96, 3, seed=1)
  for quality in codec.qualities[len(codec.qualities) // 2:][:1]:
    decoded = codec.decode(codec.encode(image, quality))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    if codec.lossless:
      np.testing.assert_array_equal(decoded, image)
    else:
      assert metrics.psnr(image, decoded) > 25


def test_jpeg2000_size_is_the_codestream():
  """Lossy JPEG 2000 sizes follow quality (no padded fixed-size buffer)."""
  codec = baselines.get("jpeg2000")
  image = testing.smooth_image(128, 128, 3, seed=2)
  sizes = [len(codec.encode(image, q)) for q in (24, 45)]
  assert sizes[0] < sizes[1]


def test_file_specs_and_fixed_order(folder):
  files = data.list_files(str(folder))
  assert [os.path.basename(f) for f in files] == ["a.png", "b.png", "c.png"]
  assert data.list_files(str(folder / "*.png")) == files
  names = [x["name"].numpy().decode() for x in data.eval_dataset(str(folder))]
  assert names == ["a.png", "b.png", "c.png"]
  assert [n for n, _ in data.load_images(str(folder))] == names
  with pytest.raises(ValueError, match="no images"):
    data.list_files(str(folder / "*.jpg"))


def test_training_crops_are_random_reproducible_batches(folder):
  first = [b.numpy() for b in data.train_dataset(str(folder), 32, 4, seed=3).take(3)]
  again = [b.numpy() for b in data.train_dataset(str(folder), 32, 4, seed=3).take(3)]
  assert all(b.shape == (4, 32, 32, 3) and b.dtype == np.uint8 for b in first)
  np.testing.assert_array_equal(np.stack(first), np.stack(again))
  assert len({b.tobytes() for batch in first for b in batch}) > 1
  # Every crop is a window of one of the images.
  crop = first[0][0]
  sources = [img for _, img in data.load_images(str(folder))]
  assert any(_contains(img, crop) for img in sources)
  # Images smaller than the crop are skipped, not padded.
  assert not list(data.train_dataset(str(folder), 500, 1, repeat=False))


def _contains(image, crop):
  h, w = crop.shape[:2]
  for y in range(image.shape[0] - h + 1):
    row = np.where((image[y, :image.shape[1] - w + 1] == crop[0, 0]).all(-1))[0]
    for x in row:
      if np.array_equal(image[y:y + h, x:x + w], crop):
        return True
  return False


def test_tfds_builder_from_a_local_directory(folder, tmp_path):
  items = data.load_images("tfds:tfcomp_kodak", data_dir=str(tmp_path),
                           manual_dir=str(folder))
  assert [n for n, _ in items] == ["a.png", "b.png", "c.png"]
  np.testing.assert_array_equal(items[0][1], io.read_image(folder / "a.png"))
  explicit = data.load_images("tfds:tfcomp_kodak/test", data_dir=str(tmp_path),
                              manual_dir=str(folder))
  assert [n for n, _ in explicit] == [n for n, _ in items]


def test_tfds_builder_without_source_says_what_it_needs(tmp_path):
  with pytest.raises(FileNotFoundError, match="500 Open Images"):
    data.load_images("tfds:tfcomp_open_images_val500", data_dir=str(tmp_path))


def test_lossless_and_lossy_runs_end_to_end(folder, tmp_path, standin_lpips):
  out = tmp_path / "lossless"
  result = bench.main(["--mode=lossless", f"--images={folder}", f"--out={out}", "--quiet",
                       "--codecs=png,qoi"])
  summary = result["results"]["datasets"][os.path.basename(str(folder))]["summary"]
  models = [f"tfcomp:{e.name}" for e in zoo.ENTRIES if e.lossless]  # every lossless one
  assert "tfcomp:fixedpred-v1" in models
  assert [s["codec"] for s in summary] == ["png", "qoi"] + models
  assert all(s["all_exact"] and s["images"] == 3 and s["bpsp"] > 0 for s in summary)
  assert json.loads((out / "results.json").read_text())["mode"] == "lossless"
  markdown = (out / "summary.md").read_text()
  assert "tfcomp:fixedpred-v1" in markdown
  assert "| png | libpng, zlib level 9 | n/a |" in markdown  # the legend of codecs

  out = tmp_path / "lossy"
  status, _, err = run_cli("bench", "--mode=lossy", f"--images={folder}", f"--out={out}",
                           "--quiet", "--codecs=jpeg-420,webp", "--limit=2",
                           f"--lpips_weights={standin_lpips}")
  assert status == 0, err
  results = json.loads((out / "results.json").read_text())
  data_set = results["datasets"][os.path.basename(str(folder))]
  assert data_set["bd_rate_psnr"]["jpeg-420"] == pytest.approx(0)
  assert data_set["bd_rate_psnr"]["webp"] < 0
  matrix = data_set["bd_rate_matrix_psnr"]
  assert set(matrix) == {c for c in data_set["bd_rate_psnr"]
                         if c.startswith("tfcomp:hyperprior")}  # imgcomp has 3 points
  assert matrix and all(set(row) == {"jpeg-420", "webp"} for row in matrix.values())
  assert results["codecs"]["jpeg-420"]["setting"] == "quality"
  assert all(r["ms_ssim"] is not None for r in data_set["records"])
  assert all(r["lpips"] > 0 for r in data_set["records"])
  assert results["lpips_weights"] == standin_lpips
  # The images are smaller than a 256x256 patch: no patch FD, and the table says so.
  assert all(s["fd_alex256"] is None and s["fd_patches"] == 0 for s in data_set["summary"])
  markdown = (out / "summary.md").read_text()
  assert "| LPIPS | FD-Alex/256 |" in markdown and "not FID" in markdown
  assert "LPIPS at each learned model's bpp" in markdown
  stem = f"rd_{os.path.basename(str(folder))}"
  assert sorted(p for p in os.listdir(out) if p.endswith(".png")) == [
      f"{stem}_lpips.png", f"{stem}_ms_ssim.png", f"{stem}_psnr.png"]

  # tools/plot.py redraws the PSNR and MS-SSIM ones from results.json, for chosen curves.
  plot = tool("plot")
  paths = plot.main(["plot.py", str(out / "results.json"), f"--out={tmp_path / 'plots'}",
                     "--curves=jpeg-420,webp"])
  assert sorted(os.path.basename(p) for p in paths) == [f"{stem}_ms_ssim.png",
                                                        f"{stem}_psnr.png"]
  assert all(io.read_image(p).shape[2] in (3, 4) for p in paths)
  with pytest.raises(Exception, match="no curves"):
    plot.FLAGS.unparse_flags()
    plot.main(["plot.py", str(out / "results.json"), "--curves=nonesuch"])


def test_refined_models_join_as_their_own_curves():
  chosen = bench.select_codecs(False, ["jpeg-420"], ["hyperprior-ms-v5-q1", "imgcomp-v5-c"],
                               refine_steps=5)
  assert [c.name for c in chosen] == ["jpeg-420", "tfcomp:hyperprior-ms-v5-q1",
                                      "tfcomp:imgcomp-v5-c",
                                      "tfcomp:hyperprior-ms-v5-q1+refine5"]
  refined = chosen[-1]
  assert refined.curve == "tfcomp:hyperprior-ms-v5+refine5" and refined.refine_steps == 5
  assert "refined in 5 steps" in refined.library


def test_efforts_add_each_adaptive_model_at_its_other_efforts():
  chosen = bench.select_codecs(True, ["png"], ["srec-small-v5", "fixedpred-v1"], efforts=(1, 2))
  assert [c.name for c in chosen] == ["png", "tfcomp:srec-small-v5", "tfcomp:fixedpred-v1",
                                      "tfcomp:srec-small-v5+effort1"]
  assert chosen[-1].effort == 1 and "effort 1" in chosen[-1].library
  with pytest.raises(ValueError, match="effort must be one of"):
    bench.select_codecs(True, ["png"], ["srec-small-v5"], efforts=(5,))


def test_lossless_table_splits_the_bits_of_models_that_name_their_streams():
  records = [dict(codec="tfcomp:rc", image=f"{i}.png", bytes=10, bpsp=3.0, exact=True,
                  encode_s=1.0, decode_s=1.0, encode_mb=1.0, decode_mb=1.0,
                  bpsp_base=1.0 + i, bpsp_residual=2.0 - i) for i in (0, 0.5)]
  records.append(dict(records[0], codec="png"))
  for r in records[-1:]:
    del r["bpsp_base"], r["bpsp_residual"]
  summary = bench.summarize_lossless(records)
  assert summary[0]["bpsp_base"] == 1.25 and "bpsp_base" not in summary[1]
  table = bench.markdown_lossless({"kodak": summary})
  assert "| codec | dataset | base | residual | share of base |" in table
  assert "| tfcomp:rc | kodak | 1.250 | 1.750 | 41.7% |" in table
  assert "| png | kodak" not in table


def test_matched_rate_table_interpolates_classic_curves():
  extra = dict(quality=None, ms_ssim=None, encode_s=0.1, decode_s=0.1)
  summary = [dict(codec="jpeg", curve="jpeg", bpp=b, psnr=p, **extra)
             for b, p in ((0.5, 30.0), (1.0, 34.0))]
  summary += [dict(codec="tfcomp:m-q1", curve="tfcomp:m", bpp=0.75, psnr=33.0, **extra),
              dict(codec="tfcomp:m-q2", curve="tfcomp:m", bpp=2.0, psnr=40.0, **extra)]
  table = bench.matched_rate_table(summary, "psnr")
  assert table == {"tfcomp:m-q1": {"jpeg": pytest.approx(32.0)}, "tfcomp:m-q2": {"jpeg": None}}
  assert "| tfcomp:m-q1 | 0.750 | 33.00 | 32.00 |" in bench.markdown_lossy(summary)


def test_bd_rate_matrix_compares_each_tfcomp_curve_with_each_classic_curve():
  extra = dict(quality=None, ms_ssim=None, encode_s=0.1, decode_s=0.1)
  jpeg = [(0.5, 30.0), (1.0, 33.0), (1.5, 35.0), (2.0, 36.5)]
  summary = [dict(codec="jpeg", curve="jpeg", bpp=b, psnr=p, **extra) for b, p in jpeg]
  summary += [dict(codec="webp", curve="webp", bpp=b, psnr=p, **extra) for b, p in jpeg[:3]]
  # The same qualities at half the bits: -50% against jpeg; webp has too few points.
  summary += [dict(codec=f"tfcomp:m-q{i}", curve="tfcomp:m", bpp=b / 2, psnr=p, **extra)
              for i, (b, p) in enumerate(jpeg)]
  summary += [dict(codec=f"tfcomp:n-q{i}", curve="tfcomp:n", bpp=b, psnr=p, **extra)
              for i, (b, p) in enumerate(jpeg[:3])]  # too few points for a BD-rate
  table = bench.bd_rate_matrix(summary, "psnr")
  assert table == {"tfcomp:m": {"jpeg": pytest.approx(-50.0), "webp": None}}
  markdown = bench.markdown_lossy(summary, bd_matrices={"psnr": table})
  assert "| curve | jpeg | webp |" in markdown and "| tfcomp:m | -50.0% | n/a |" in markdown


def test_bench_errors_are_one_line(tmp_path):
  status, _, err = run_cli("bench", "--mode=lossless", f"--images={tmp_path}/none/*.png",
                           f"--out={tmp_path}/o", "--quiet")
  assert status == 1 and err.count("\n") == 1 and "no images" in err
  status, _, err = run_cli("bench", "--mode=fast", "--images=x", "--out=y")
  assert status == 2 and err.count("\n") == 1 and "invalid choice" in err


def test_lossy_points_get_lpips_and_the_patch_fd(standin_lpips):
  """Two 256x256 images: one patch each, two per point, enough for a covariance."""
  images = [(f"{i}.png", testing.smooth_image(256, 256, 3, seed=i)) for i in range(2)]
  codec = dataclasses.replace(baselines.get("jpeg-420"), qualities=(5, 90))
  records, points = bench.run_lossy(images, [codec], progress=False,
                                    lpips_model=lpips.load(standin_lpips))
  assert [p["fd_patches"] for p in points] == [2, 2]
  low, high = (p["fd_alex256"] for p in points)
  assert low > high >= 0  # the coarser reconstructions are further from the originals
  summary = bench.summarize_lossy(records, points)
  assert [s["fd_alex256"] for s in summary] == [low, high]
  assert summary[0]["lpips"] == pytest.approx(np.mean([r["lpips"] for r in records[:2]]))
  assert summary[0]["lpips"] > summary[1]["lpips"]
  # Without a model: the same records with lpips None, and no patch FD.
  records, points = bench.run_lossy(images[:1], [codec], progress=False)
  assert all(r["lpips"] is None for r in records)
  assert all(p["fd_alex256"] is None for p in points)
  assert "LPIPS" not in bench.markdown_lossy(bench.summarize_lossy(records, points))


def test_lpips_at_rate_interpolates_in_log_bpp():
  extra = dict(quality=None, psnr=30.0, ms_ssim=None, encode_s=0.1, decode_s=0.1)
  summary = [dict(codec="jpeg", curve="jpeg", bpp=b, lpips=v, **extra)
             for b, v in ((0.1, 0.5), (0.4, 0.3), (1.6, 0.1))]
  summary += [dict(codec="tfcomp:hific-lo", curve="tfcomp:hific", bpp=0.2, lpips=0.2, **extra),
              dict(codec="tfcomp:hific-hi", curve="tfcomp:hific", bpp=2.0, lpips=0.05,
                   **extra)]
  # 0.2 bpp is half-way from 0.1 to 0.4 in log-bpp.
  assert bench.lpips_at_rate(summary, "jpeg", 0.2) == pytest.approx(0.4)
  assert bench.lpips_at_rate(summary, "jpeg", 0.8) == pytest.approx(0.2)
  assert bench.lpips_at_rate(summary, "jpeg", 0.1) == pytest.approx(0.5)
  assert bench.lpips_at_rate(summary, "jpeg", 2.0) is None
  assert bench.lpips_at_rate(summary, "jpeg", 0.05) is None
  with pytest.raises(ValueError, match="'webp' has no LPIPS"):
    bench.lpips_at_rate(summary, "webp", 0.2)
  with pytest.raises(ValueError, match="positive number, got 0"):
    bench.lpips_at_rate(summary, "jpeg", 0)
  assert bench.lpips_matched_rate_table(summary) == {
      "tfcomp:hific-lo": {"jpeg": pytest.approx(0.4)}, "tfcomp:hific-hi": {"jpeg": None}}
  markdown = bench.markdown_lossy(summary)
  assert "| tfcomp:hific-lo | 0.200 | 0.2000 | 0.4000 |" in markdown
  assert "| tfcomp:hific-hi | 2.000 | 0.0500 | n/a |" in markdown
  # Lower is better: a BD-rate on it would have the wrong sign.
  with pytest.raises(ValueError, match="lower is better"):
    bench.bd_rate_table(summary, "jpeg", "lpips")


def test_lpips_weights_missing(tmp_path, monkeypatch, capsys):
  missing = str(tmp_path / "none.npz")
  # Given explicitly: an error before anything runs, in one line.
  status, _, err = run_cli("bench", "--mode=lossy", f"--images={tmp_path}",
                           f"--out={tmp_path}/o", f"--lpips_weights={missing}")
  assert status == 2 and err.count("\n") == 1 and "LPIPS weights not found" in err
  assert not os.path.exists(tmp_path / "o")
  status, _, err = run_cli("bench", "--mode=lossless", f"--images={tmp_path}",
                           f"--out={tmp_path}/o", f"--lpips_weights={missing}")
  assert status == 2 and "--mode lossy only" in err
  # The default ones missing: the run goes on without LPIPS, after one warning.
  monkeypatch.setenv(lpips.WEIGHTS_ENV, missing)
  images = tmp_path / "images"
  images.mkdir()
  io.write_png(str(images / "a.png"), testing.smooth_image(64, 80, 3, seed=3))
  result = bench.main(["--mode=lossy", f"--images={images}", f"--out={tmp_path}/o",
                       "--quiet", "--codecs=jpeg-420", "--models="])
  warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
  assert len(warnings) == 1 and missing in warnings[0]
  summary = result["results"]["datasets"]["images"]["summary"]
  assert len(summary) == len(baselines.get("jpeg-420").qualities)
  assert all(s["lpips"] is None for s in summary)
  assert result["results"]["lpips_weights"] is None and "LPIPS" not in result["markdown"]


def test_low_rates_are_reached_and_matched():
  """The lossy codecs' sweeps start at low rates (HiFiC's 0.14 bpp and below, on Kodak;
  here on a smooth image, which costs fewer bits), and match_rate finds a rate."""
  image = testing.smooth_image(128, 192, 3, seed=4)
  for codec in baselines.available(lossless=False):
    lowest = baselines.bpp_of(codec.encode(image, codec.qualities[0]), image)
    assert lowest < 0.3, (codec.name, lowest)
  jpeg = baselines.get("jpeg-420")
  target = baselines.bpp_of(jpeg.encode(image, 50), image)
  setting, data, bpp = baselines.match_rate(jpeg, image, target)
  assert bpp == pytest.approx(target) and baselines.bpp_of(data, image) == bpp
  assert jpeg.decode(data).shape == image.shape
  jxl = baselines.get("jpegxl")
  if jxl.available():  # a continuous setting: within the tolerance
    _, _, bpp = baselines.match_rate(jxl, image, 0.5, tolerance=0.02)
    assert bpp == pytest.approx(0.5, rel=0.1)
  # Unreachable rates give the nearest end.
  assert baselines.match_rate(jpeg, image, 1e-3)[0] in (1, 2)
  assert baselines.match_rate(jpeg, image, 1e3)[0] == 100
  with pytest.raises(ValueError, match="positive number, got -1"):
    baselines.match_rate(jpeg, image, -1)
  with pytest.raises(ValueError, match="png is lossless"):
    baselines.match_rate(baselines.get("png"), image, 1.0)
