"""The benchmark harness: tfcomp's codecs against the classic ones, on the same images.

    run_lossless(images, ...) -> records: bits/subpixel, exactness, seconds, peak memory
    run_lossy(images, ...)    -> records: bpp (real bytes), PSNR-RGB, MS-SSIM, LPIPS,
                                 seconds; and per (codec, quality) point the patch FD
    summarize_*(records)      -> per-codec means; bd_rate_table; markdown_*; plot_rd

`main(argv)` is the command line shared by `tools/bench.py` and `tfcomp bench`:

    --mode lossless|lossy --images SPEC[,SPEC...] --out DIR [--codecs a,b] [--models m,n]
    [--limit N] [--anchor CODEC] [--refine_steps N] [--efforts 1,2] [--manual_dir DIR]
    [--lpips_weights PATH]

It writes DIR/results.json (every record and the summaries), DIR/summary.md, and for lossy
runs DIR/rd_<dataset>_psnr.png, DIR/rd_<dataset>_ms_ssim.png and, when LPIPS was measured,
DIR/rd_<dataset>_lpips.png. Bits per subpixel count the subpixels of the image as stored
(RGB: 3 per pixel); bpp counts pixels.

Perceptual measures of lossy runs (for generative codecs such as HiFiC, whose PSNR says
little): LPIPS v0.1 with AlexNet (tfcomp.lpips; the weights are not shipped: --lpips_weights,
else $TFCOMP_LPIPS_WEIGHTS, else ../shared/weights; without them the run leaves LPIPS out
with a warning), per image; and per (codec, quality) point `fd_alex256`, the Fréchet distance
between LPIPS-AlexNet features of 256x256 patches of the originals and of the decoded images
(metrics.patch_fd: HiFiC's FID/256 patch protocol, but not FID, whose Inception weights are
not available here; comparable only within the same images and weights). Both are lower is
better, so they get no BD-rate; `lpips_at_rate` compares curves at equal bpp instead.
"""
import argparse
import json
import math
import os
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from tfcomp import baselines, codecs, container, data, metrics, zoo


class PeakMemory:
  """Peak resident memory above the starting level, in MB, sampled while the block runs."""

  def __init__(self, interval=0.002):
    self.interval, self.peak_mb = interval, 0.0

  @staticmethod
  def _rss():
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

  def _sample(self):
    while not self._done.wait(self.interval):
      self._peak = max(self._peak, self._rss())

  def __enter__(self):
    self._base = self._peak = self._rss()
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._done.set()
    self._thread.join()
    self._peak = max(self._peak, self._rss())
    self.peak_mb = (self._peak - self._base) / 2**20


def _measure(fn, *args):
  with PeakMemory() as memory:
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
  return result, seconds, memory.peak_mb


class _ZooAdapter:
  """A zoo model seen through the ClassicCodec interface (whole tfcomp files)."""

  def __init__(self, name, refine_steps=0, effort=None):
    self.entry = zoo.get(name)
    self.refine_steps = refine_steps
    self.effort = effort
    suffix = (f"+refine{refine_steps}" if refine_steps else "") + (
        f"+effort{effort}" if effort is not None else "")
    self.name = f"tfcomp:{name}{suffix}"
    self.lossless = self.entry.lossless
    self.curve = f"tfcomp:{self.entry.curve or name}{suffix}"
    self.qualities = (None,)
    self.quality_name = ""
    self.library = self.entry.description + (
        f"; latents refined in {refine_steps} steps at encoding" if refine_steps else "") + (
        f"; effort {effort}" if effort is not None else "")

  def encode(self, image, quality):
    del quality
    return codecs.compress(image, zoo.load(self.entry.name), refine_steps=self.refine_steps,
                           effort=self.effort)

  def decode(self, data_bytes):
    return codecs.decompress(data_bytes, zoo.load)[0]

  def stream_bytes(self, data_bytes):
    """{stream name: bytes over the file's model tiles} for models that name their streams
    (RC: base and residual); {} for the others."""
    names = getattr(getattr(zoo.load(self.entry.name), "model", None), "stream_names", ())
    if not names:
      return {}
    from tfcomp.codecs import lossless  # pylint: disable=import-outside-toplevel
    parsed = container.read(data_bytes)
    tiles = [streams for mode, streams in lossless.split_tiles(parsed.sections,
                                                               parsed.geometry)
             if mode != lossless.PNG]
    return {name: sum(len(streams[i]) for streams in tiles) for i, name in enumerate(names)}


def select_codecs(lossless, codec_names=None, model_names=None, refine_steps=0, efforts=()):
  """Classic codecs (default: all available) and zoo models (default: all) of one kind;
  with refine_steps, each model that refines its latents also with that many steps; with
  efforts, each model that has effort levels also at each of them but its default."""
  if codec_names is None:
    chosen = baselines.available(lossless)
  else:
    chosen = [baselines.get(n) for n in codec_names]
    for c in chosen:
      if c.lossless != lossless:
        raise ValueError(f"codec {c.name} is {'lossless' if c.lossless else 'lossy'}")
  if model_names is None:
    model_names = [e.name for e in zoo.ENTRIES if e.lossless == lossless]
  models = [_ZooAdapter(n) for n in model_names]
  if refine_steps:
    models += [_ZooAdapter(n, refine_steps) for n in model_names
               if zoo.load(n).refines]
  for n in model_names if efforts else ():
    codec = zoo.load(n)
    for effort in efforts if codec.efforts else ():
      codecs.check_effort(codec, effort)
      if effort != codec.default_effort:
        models.append(_ZooAdapter(n, effort=effort))
  return chosen + models


def run_lossless(images, chosen, progress=True):
  """Codes every image with every codec of `chosen` (lossless; see select_codecs); each
  result is decoded and compared."""
  records = []
  todo = [(c, name, image) for c in chosen for name, image in images]
  for codec, name, image in tqdm(todo, desc="lossless", disable=not progress):
    if image.dtype != np.uint8 or image.shape[2] != 3:
      image = to_rgb8(image)
    encoded, enc_s, enc_mb = _measure(codec.encode, image, None)
    decoded, dec_s, dec_mb = _measure(codec.decode, encoded)
    exact = decoded.shape == image.shape and bool(np.array_equal(decoded, image))
    record = dict(codec=codec.name, image=name, bytes=len(encoded),
                  bpsp=8 * len(encoded) / image.size, exact=exact,
                  encode_s=enc_s, decode_s=dec_s, encode_mb=enc_mb, decode_mb=dec_mb)
    for stream, size in getattr(codec, "stream_bytes", lambda _: {})(encoded).items():
      record[f"bpsp_{stream}"] = 8 * size / image.size
    records.append(record)
  return records


# Side of the patches of the patch FD (HiFiC's FID/256); the summary key names it.
FD_PATCH = 256
FD_KEY = f"fd_alex{FD_PATCH}"
# Measures where lower is better: no BD-rate (it assumes quality rising with rate).
LOWER_IS_BETTER = ("lpips", FD_KEY)


def run_lossy(images, chosen, progress=True, lpips_model=None):
  """Codes every image at every quality of every codec of `chosen` (lossy) and measures
  the result.

  Args:
    images: [(name, image)], as data.load_images gives.
    chosen: Lossy codecs (see select_codecs).
    progress: Show a progress bar.
    lpips_model: A tfcomp.lpips.LPIPS, or None to leave LPIPS and the patch FD out.

  Returns:
    (records, points): a dict per image and (codec, quality) (its `lpips` is None without
    a model or below lpips.MIN_SIDE pixels per side); and a dict per (codec, quality) with
    FD_KEY (None without a model, or with fewer than 2 patches of FD_PATCH pixels) and
    `fd_patches`, for summarize_lossy.
  """
  records, points = [], []
  images = [(name, to_rgb8(image)) for name, image in images]
  originals = [image for _, image in images]
  bar = tqdm(total=sum(len(c.qualities) for c in chosen) * len(images), desc="lossy",
             disable=not progress)
  for codec in chosen:
    for quality in codec.qualities:
      # One point's reconstructions at a time: the patch FD needs all of them together,
      # and a whole run's (every point of every codec) would not fit in memory.
      decoded_images = []
      for name, image in images:
        encoded, enc_s, _ = _measure(codec.encode, image, quality)
        decoded, dec_s, _ = _measure(codec.decode, encoded)
        if decoded.shape != image.shape:
          raise RuntimeError(f"{codec.name} decoded {name} to {decoded.shape}, not "
                             f"{image.shape}")
        pixels = image.shape[0] * image.shape[1]
        small = min(image.shape[:2]) < metrics.min_ms_ssim_side()
        records.append(dict(
            codec=codec.name, curve=getattr(codec, "curve", codec.name), quality=quality,
            image=name, bytes=len(encoded), bpp=8 * len(encoded) / pixels,
            psnr=metrics.psnr(image, decoded),
            ms_ssim=None if small else metrics.ms_ssim(image, decoded),
            lpips=None if lpips_model is None else metrics.lpips(image, decoded, lpips_model),
            encode_s=enc_s, decode_s=dec_s))
        if lpips_model is not None:
          decoded_images.append(decoded)
        bar.update()
      distance, patches = (metrics.patch_fd(originals, decoded_images, lpips_model, FD_PATCH)
                           if lpips_model is not None else (None, 0))
      points.append({"codec": codec.name, "quality": quality, FD_KEY: distance,
                     "fd_patches": patches})
  bar.close()
  return records, points


def to_rgb8(image):
  """The benchmarks compare RGB 8-bit codecs: gray is replicated, alpha dropped, 16-bit
  reduced to its high byte."""
  if image.dtype == np.uint16:
    image = (image >> 8).astype(np.uint8)
  if image.shape[2] in (1, 2):
    image = np.repeat(image[..., :1], 3, axis=2)
  return np.ascontiguousarray(image[..., :3])


def _mean(records, key):
  return metrics.mean_of_defined(r[key] for r in records)


def summarize_lossless(records):
  """Per codec: mean bits/subpixel over images, exactness, mean seconds, max peak MB."""
  out = []
  for codec in dict.fromkeys(r["codec"] for r in records):
    rs = [r for r in records if r["codec"] == codec]
    out.append(dict(codec=codec, images=len(rs), bpsp=_mean(rs, "bpsp"),
                    all_exact=all(r["exact"] for r in rs), encode_s=_mean(rs, "encode_s"),
                    decode_s=_mean(rs, "decode_s"),
                    peak_mb=max(max(r["encode_mb"], r["decode_mb"]) for r in rs),
                    **{k: _mean(rs, k) for k in rs[0] if k.startswith("bpsp_")}))
  return out


def summarize_lossy(records, points=()):
  """Per codec and quality: means over images of bpp, PSNR, MS-SSIM, LPIPS (None where no
  image has one) and seconds, with the point's patch FD from `points` (run_lossy's; None
  and 0 patches for a point not there)."""
  out = []
  by_point = {(p["codec"], p["quality"]): p for p in points}
  keys = dict.fromkeys((r["codec"], r["curve"], r["quality"]) for r in records)
  for codec, curve, quality in keys:
    rs = [r for r in records if (r["codec"], r["quality"]) == (codec, quality)]
    point = by_point.get((codec, quality), {})
    out.append({"codec": codec, "curve": curve, "quality": quality, "images": len(rs),
                "bpp": _mean(rs, "bpp"), "psnr": _mean(rs, "psnr"),
                "ms_ssim": _mean(rs, "ms_ssim"),
                "lpips": metrics.mean_of_defined(r.get("lpips") for r in rs),
                FD_KEY: point.get(FD_KEY), "fd_patches": point.get("fd_patches", 0),
                "encode_s": _mean(rs, "encode_s"), "decode_s": _mean(rs, "decode_s")})
  return out


def curves(summary, quality_key="psnr"):
  """{curve name: [(bpp, quality)]} sorted by rate; points without that measure (None, or
  summaries older than it) are left out."""
  result = {}
  for s in summary:
    value = s.get(quality_key)
    if value is not None and np.isfinite(value):
      result.setdefault(s["curve"], []).append((s["bpp"], value))
  return {k: sorted(v) for k, v in result.items()}


def bd_rate_table(summary, anchor, quality_key="psnr"):
  """{curve: BD-rate % against `anchor`} for every curve overlapping the anchor's."""
  if quality_key in LOWER_IS_BETTER:
    raise ValueError(f"BD-rate assumes quality rising with rate; {quality_key!r} is lower "
                     "is better (compare with lpips_at_rate)")
  rd = curves(summary, quality_key)
  if anchor not in rd:
    raise ValueError(f"anchor {anchor!r} is not among the curves {sorted(rd)}")
  table = {}
  for name, points in rd.items():
    try:
      table[name] = metrics.bd_rate(rd[anchor], points)
    except ValueError:
      table[name] = None  # too few points or no overlap
  return table


def bd_rate_matrix(summary, quality_key="psnr"):
  """{tfcomp curve: {classic curve: BD-rate % of the tfcomp curve against it}} for the
  tfcomp curves with the 4 points BD-rate needs; None where the classic curve has fewer or
  the two do not overlap in quality."""
  rd = curves(summary, quality_key)
  against = {other: bd_rate_table(summary, other, quality_key) for other in rd
             if not other.startswith("tfcomp:")}
  return {name: {other: table[name] for other, table in against.items()}
          for name, points in rd.items() if name.startswith("tfcomp:") and len(points) >= 4}


def _at_rate(points, bpp, log_rate):
  """The quality of curve `points` [(bpp, quality)] at `bpp`, interpolated linearly in
  bpp or in log-bpp; None outside the curve's range of rates."""
  rates, values = zip(*points)
  if not rates[0] <= bpp <= rates[-1]:
    return None
  if log_rate:
    return float(np.interp(np.log(bpp), np.log(rates), values))
  return float(np.interp(bpp, rates, values))


def matched_rate_table(summary, quality_key, log_rate=False):
  """{tfcomp point: {classic curve: quality at the point's bpp}}, by linear interpolation
  along each classic codec's curve, in bpp or (`log_rate`) in log-bpp (None where the
  curve does not reach that rate), for the tfcomp points with that quality measured."""
  others = {name: points for name, points in curves(summary, quality_key).items()
            if not name.startswith("tfcomp:")}
  return {s["codec"]: {name: _at_rate(points, s["bpp"], log_rate)
                       for name, points in others.items()}
          for s in summary
          if s["codec"].startswith("tfcomp:") and s.get(quality_key) is not None
          and s["bpp"] > 0}


def lpips_at_rate(summary, curve, bpp):
  """LPIPS of `curve` at `bpp`, interpolated linearly in log-bpp between the neighbouring
  points of the curve (rates of codecs spread over decades, and quality is closer to
  linear in log-rate than in rate).

  Args:
    summary: summarize_lossy's list.
    curve: A curve name of the summary with LPIPS measured.
    bpp: The rate, > 0.

  Returns:
    The LPIPS as a float, or None if bpp lies outside the curve's range of rates.

  Raises:
    ValueError: bpp is not positive, or the curve has no point with LPIPS.
  """
  if not (isinstance(bpp, (int, float, np.floating)) and math.isfinite(bpp) and bpp > 0):
    raise ValueError(f"bpp must be a positive number, got {bpp!r}")
  rd = curves(summary, "lpips")
  if curve not in rd:
    raise ValueError(f"curve {curve!r} has no LPIPS; curves with LPIPS: {sorted(rd)}")
  return _at_rate(rd[curve], bpp, log_rate=True)


def lpips_matched_rate_table(summary):
  """{tfcomp point: {classic curve: its LPIPS at the point's bpp}} (see lpips_at_rate), for
  the tfcomp points with LPIPS and the classic curves with LPIPS."""
  return matched_rate_table(summary, "lpips", log_rate=True)


_AXIS_LABELS = {"psnr": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM",
                "lpips": "LPIPS (AlexNet, v0.1; lower is better)",
                FD_KEY: f"FD on LPIPS-AlexNet features of {FD_PATCH}px patches (not FID)"}


def plot_rd(summary, path, quality_key="psnr", title=""):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
  for name, points in curves(summary, quality_key).items():
    bpp, quality = zip(*points)
    ax.plot(bpp, quality, marker="o", markersize=3, label=name)
  ax.set_xlabel("bits per pixel")
  ax.set_ylabel(_AXIS_LABELS[quality_key])
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _f(value, digits=3):
  return "n/a" if value is None else f"{value:.{digits}f}"


def _percent(value):
  return "n/a" if value is None else f"{value:.1f}%"


def markdown_lossless(summaries):
  """One table: a row per codec, a column group per dataset. `summaries`: {dataset: summary}."""
  datasets = list(summaries)
  head = "| codec | " + " | ".join(f"{d} bpsp | {d} enc s | {d} dec s" for d in datasets)
  lines = [head + " | peak MB | exact |",
           "|---|" + "---:|---:|---:|" * len(datasets) + "---:|---|"]
  codecs_in_order = list(dict.fromkeys(s["codec"] for d in datasets for s in summaries[d]))
  for codec in codecs_in_order:
    cells, peak, exact = [], 0.0, True
    for d in datasets:
      s = next((s for s in summaries[d] if s["codec"] == codec), None)
      cells += ([_f(s["bpsp"]), _f(s["encode_s"], 2), _f(s["decode_s"], 2)] if s else
                ["", "", ""])
      if s:
        peak, exact = max(peak, s["peak_mb"]), exact and s["all_exact"]
    lines.append(f"| {codec} | " + " | ".join(cells) + f" | {peak:.0f} | "
                 f"{'yes' if exact else 'NO'} |")
  split = [(d, s) for d in datasets for s in summaries[d] if any(k.startswith("bpsp_")
                                                                 for k in s)]
  if split:
    names = list(dict.fromkeys(k[5:] for _, s in split for k in s if k.startswith("bpsp_")))
    lines += ["", "Bits per subpixel by stream (over the tiles coded through the model):", "",
              "| codec | dataset | " + " | ".join(names) + " | share of " + names[0] + " |",
              "|---|---|" + "---:|" * (len(names) + 1)]
    for d, s in split:
      parts = [s.get(f"bpsp_{n}", 0.0) for n in names]
      share = 100 * parts[0] / sum(parts) if sum(parts) else 0.0
      lines.append(f"| {s['codec']} | {d} | " + " | ".join(_f(p) for p in parts) +
                   f" | {share:.1f}% |")
  return "\n".join(lines)


def markdown_lossy(summary, bd_psnr=None, bd_msssim=None, bd_matrices=None):
  """Tables of the lossy run: the points (with LPIPS and the patch FD when measured), then
  BD-rates (bd_*: from bd_rate_table, bd_matrices: {quality key: bd_rate_matrix}, each left
  out when not given), then each tfcomp point against the classic curves at its rate (LPIPS
  when measured, MS-SSIM, PSNR)."""
  # The perceptual columns only when measured: runs without the LPIPS weights (and older
  # summaries) keep the table they had.
  perceptual = any(s.get("lpips") is not None or s.get(FD_KEY) is not None for s in summary)
  extra_head, extra_rule = (" LPIPS | FD-Alex/256 |", "---:|---:|") if perceptual else ("", "")
  lines = ["| codec | setting | bpp | PSNR-RGB (dB) | MS-SSIM |" + extra_head + " enc s | dec s |",
           "|---|---:|---:|---:|---:|" + extra_rule + "---:|---:|"]
  for s in summary:
    setting = "n/a" if s["quality"] is None else s["quality"]
    extra = (f" {_f(s.get('lpips'), 4)} | {_f(s.get(FD_KEY), 4)} |" if perceptual else "")
    lines.append(f"| {s['codec']} | {setting} | {_f(s['bpp'])} | {_f(s['psnr'], 2)} | "
                 f"{_f(s['ms_ssim'], 4)} |{extra} {_f(s['encode_s'], 3)} | "
                 f"{_f(s['decode_s'], 3)} |")
  if perceptual:
    patches = sorted({s.get("fd_patches", 0) for s in summary})
    lines += ["", "LPIPS: v0.1, AlexNet backbone, mean over the images (lower is better). "
              f"FD-Alex/256: Fréchet distance between the LPIPS-AlexNet features of the "
              f"{FD_PATCH}x{FD_PATCH} patches of the originals and of the decoded images "
              "(HiFiC's FID/256 patch protocol with AlexNet instead of Inception features: "
              "not FID, and not comparable with published FID/256 values; lower is better; "
              f"{'/'.join(str(p) for p in patches)} patches per point, n/a below 2)."]
  if bd_psnr is not None:
    lines += ["", "| curve | BD-rate vs anchor (PSNR-RGB) | BD-rate vs anchor (MS-SSIM) |",
              "|---|---:|---:|"]
    for name in bd_psnr:
      ms = (bd_msssim or {}).get(name)
      lines.append(f"| {name} | {_percent(bd_psnr[name])} | {_percent(ms)} |")
  for key, label in (("psnr", "PSNR-RGB"), ("ms_ssim", "MS-SSIM")):
    table = (bd_matrices or {}).get(key)
    if not table:
      continue
    others = list(next(iter(table.values())))
    lines += ["", f"BD-rate ({label}) of each tfcomp curve of at least 4 points against "
              "each other codec (negative: fewer bits than that codec for the same quality; "
              "n/a: fewer than 4 points or no overlap):", "",
              "| curve | " + " | ".join(others) + " |", "|---|" + "---:|" * len(others)]
    for name, row in table.items():
      lines.append(f"| {name} | " + " | ".join(_percent(row[o]) for o in others) + " |")
  points = {s["codec"]: s for s in summary}
  table = lpips_matched_rate_table(summary)
  others = list(next(iter(table.values()))) if table else []
  if others:
    lines += ["", "LPIPS at each learned model's bpp, interpolated along each classic curve "
              "(linearly in log-bpp; lower is better; n/a outside the curve's range of rates):",
              "", "| point | bpp | ours | " + " | ".join(others) + " |",
              "|---|---:|---:|" + "---:|" * len(others)]
    for codec, row in table.items():
      lines.append(f"| {codec} | {_f(points[codec]['bpp'])} | "
                   f"{_f(points[codec]['lpips'], 4)} | " +
                   " | ".join(_f(row[o], 4) for o in others) + " |")
  for key, label, digits in (("ms_ssim", "MS-SSIM", 4), ("psnr", "PSNR-RGB (dB)", 2)):
    table = matched_rate_table(summary, key)
    if not table:
      continue
    others = list(next(iter(table.values())))
    lines += ["", f"{label} of each tfcomp point and of the other codecs at the same bpp "
              "(interpolated along their curves; n/a outside their range):", "",
              "| point | bpp | ours | " + " | ".join(others) + " |",
              "|---|---:|---:|" + "---:|" * len(others)]
    for codec, row in table.items():
      lines.append(f"| {codec} | {_f(points[codec]['bpp'])} | "
                   f"{_f(points[codec][key], digits)} | " +
                   " | ".join(_f(row[o], digits) for o in others) + " |")
  return "\n".join(lines)


class UsageError(ValueError):
  """Bad command-line arguments."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    raise UsageError(f"{message} (see `tfcomp bench --help`)")


def markdown_codecs(chosen):
  """What each codec row means: the encoder with its options, and what its setting is."""
  lines = ["| codec | encoder | setting |", "|---|---|---|"]
  for c in chosen:
    lines.append(f"| {c.name} | {c.library} | {c.quality_name or 'n/a'} |")
  return "\n".join(lines)


def _parser():
  p = _Parser(prog="tfcomp bench", description=__doc__.split("\n")[0])
  p.add_argument("--mode", choices=("lossless", "lossy"), required=True)
  p.add_argument("--images", required=True,
                 help="comma-separated specs: folders, globs or tfds:NAME[/split]")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--codecs", default=None, help="classic codecs (default: all available)")
  p.add_argument("--models", default=None, help="tfcomp zoo models (default: all of the mode)")
  p.add_argument("--limit", type=int, default=None, help="images per spec")
  p.add_argument("--refine_steps", type=int, default=0,
                 help="also code with the latents refined in this many steps (the models "
                 "that can; see `tfcomp compress --refine_steps`)")
  p.add_argument("--efforts", default=None,
                 help="comma-separated efforts: also code each model that has effort levels "
                 "at each of them besides its default (see `tfcomp compress --effort`)")
  p.add_argument("--anchor", default="jpeg-420", help="BD-rate anchor curve (lossy)")
  p.add_argument("--manual_dir", default=None, help="TFDS manual directory")
  p.add_argument("--data_dir", default=None, help="TFDS data directory")
  p.add_argument("--quiet", action="store_true", help="no progress bars")
  p.add_argument("--lpips_weights", default=None,
                 help="LPIPS-AlexNet weights (.npz) for the lossy mode's LPIPS and patch FD "
                 "(default: $TFCOMP_LPIPS_WEIGHTS, else ../shared/weights/"
                 "lpips-alexnet-v0.1.npz; if that is missing, both are left out with a "
                 "warning)")
  p.add_argument("--manifest", default=None, help="update this zoo manifest (JSON) with the "
                 "figures measured for the zoo models (tools/bench.py --update_manifest: the "
                 "shipped one, which `tfcomp models` shows)")
  return p


_MANIFEST_FIGURES = {"lossless": ("bpsp", "encode_s", "decode_s"),
                     "lossy": ("bpp", "psnr", "ms_ssim", "lpips", "encode_s", "decode_s")}


def update_manifest(path, results, source):
  """Writes each zoo model's mean figures per dataset of `results` (main's) into the
  manifest at `path`, keeping the other models' entries; `source` says what measured them."""
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    manifest = {"models": {}}
  keys = _MANIFEST_FIGURES[results["mode"]]
  for label, dataset in results["datasets"].items():
    for s in dataset["summary"]:
      name = s["codec"][len("tfcomp:"):]
      if not s["codec"].startswith("tfcomp:") or "+" in name:  # refined variants: not models
        continue
      entry = manifest["models"].setdefault(name, {"datasets": {}})
      entry["datasets"][label] = {k: round(float(s[k]), 4) for k in keys
                                  if s.get(k) is not None}
      entry["source"] = source
  manifest["models"] = dict(sorted(manifest["models"].items()))
  from tfcomp import io as tfcomp_io  # pylint: disable=import-outside-toplevel
  tfcomp_io.write_atomic(path, (json.dumps(manifest, indent=1) + "\n").encode())


def _split(value):
  return None if value is None else [v for v in value.split(",") if v]


def load_lpips(path=None, mode="lossy"):
  """The LPIPS model of a run and the file it came from.

  Args:
    path: --lpips_weights: an explicit file (an error if unusable), or None for
      tfcomp.lpips's default resolution (environment variable, then ../shared/weights).
    mode: --mode; LPIPS is measured in the lossy mode only.

  Returns:
    (model, path), or (None, None) when lossless, or when the default weights are missing,
    which prints one warning line to stderr: the rest of the benchmark runs without LPIPS.

  Raises:
    UsageError: The weights given do not exist, cannot be read, or are given for a lossless
      run; or the default ones exist but cannot be read.
  """
  if mode != "lossy":
    if path is not None:
      raise UsageError(f"--lpips_weights {path}: LPIPS is measured in --mode lossy only, "
                       f"not {mode}")
    return None, None
  from tfcomp import lpips  # pylint: disable=import-outside-toplevel  (TensorFlow)
  try:
    resolved = lpips.weights_path(path)
    return lpips.load(resolved), resolved
  except FileNotFoundError as e:
    if path is not None:
      raise UsageError(f"--lpips_weights {path}: {e}") from None
    print(f"tfcomp bench: warning: LPIPS and {FD_KEY} left out: {e}", file=sys.stderr,
          flush=True)
    return None, None
  except (OSError, ValueError) as e:  # a damaged or foreign file: never silently skipped
    raise UsageError(f"LPIPS weights {path or 'default'}: cannot read them: {e}") from None


def main(argv=None):
  """Runs the benchmark; returns a dict of the summaries and the markdown written."""
  args = _parser().parse_args(argv)
  # Before any image is coded: a bad --lpips_weights should not cost a whole run.
  lpips_model, lpips_path = load_lpips(args.lpips_weights, args.mode)
  os.makedirs(args.out, exist_ok=True)
  lossless = args.mode == "lossless"
  try:
    efforts = tuple(int(e) for e in _split(args.efforts) or ())
  except ValueError:
    raise UsageError(f"--efforts must be comma-separated integers, got {args.efforts!r}") from None
  chosen = select_codecs(lossless, _split(args.codecs), _split(args.models),
                         args.refine_steps, efforts)
  results = {"mode": args.mode, "command": argv, "datasets": {},
             "codecs": {c.name: {"encoder": c.library, "setting": c.quality_name}
                        for c in chosen}}
  if not lossless:
    results["lpips_weights"] = lpips_path
  for spec in _split(args.images):
    images = data.load_images(spec, args.data_dir, args.manual_dir, args.limit)
    label = os.path.basename(os.path.normpath(spec)) if not data.is_tfds(spec) else spec
    if lossless:
      records = run_lossless(images, chosen, progress=not args.quiet)
      summary = summarize_lossless(records)
    else:
      records, points = run_lossy(images, chosen, not args.quiet, lpips_model)
      summary = summarize_lossy(records, points)
    del images  # before the next spec's: one dataset in memory at a time
    results["datasets"][label] = {"spec": spec, "records": records, "summary": summary}
  if lossless:
    markdown = markdown_lossless({d: v["summary"] for d, v in results["datasets"].items()})
  else:
    parts = []
    for label, v in results["datasets"].items():
      summary = v["summary"]
      bd_psnr = bd_rate_table(summary, args.anchor, "psnr")
      bd_msssim = (bd_rate_table(summary, args.anchor, "ms_ssim")
                   if any(s["ms_ssim"] is not None for s in summary) else {})
      matrices = {key: bd_rate_matrix(summary, key) for key in ("psnr", "ms_ssim")}
      v.update(bd_rate_psnr=bd_psnr, bd_rate_ms_ssim=bd_msssim, anchor=args.anchor,
               bd_rate_matrix_psnr=matrices["psnr"], bd_rate_matrix_ms_ssim=matrices["ms_ssim"])
      slug = "".join(ch if ch.isalnum() else "_" for ch in label)
      for key in ("psnr", "ms_ssim") + (("lpips",) if curves(summary, "lpips") else ()):
        plot_rd(summary, os.path.join(args.out, f"rd_{slug}_{key}.png"), key, label)
      parts.append(f"### {label}\n\n" + markdown_lossy(summary, bd_psnr, bd_msssim, matrices))
    markdown = "\n\n".join(parts)
  markdown += "\n\n" + markdown_codecs(chosen)
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, indent=1, default=float)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(markdown + "\n")
  if args.manifest:
    update_manifest(args.manifest, results, "tfcomp bench " + " ".join(
        a for a in argv or [] if not a.startswith("--manifest")) +
        f" ({time.strftime('%Y-%m-%d')})")
  print(markdown)
  return {"results": results, "markdown": markdown}
