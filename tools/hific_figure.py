"""Side-by-side crops of learned and classic codecs at the same rate, as in the HiFiC paper.

    python tools/hific_figure.py --models hific-lo,hific-hi [--weights runs/hific/model.npz]
        [--images kodim04,kodim14,kodim21] [--dataset ../shared/datasets/kodak]
        [--codecs jpeg-420,webp,avif,heic] [--crop 256] [--crop_at Y,X]
        [--out docs/hific_crops.png] [--lpips_weights PATH]

Each image is coded into a real file by each learned model (zoo names with --models, model
.npz files with --weights) and decoded. Each classic codec is then run at the setting whose
rate on that image is closest to the model's (baselines.match_rate: a bisection over the
encoder's whole setting range). The figure has a row per image and model: the original,
the model's reconstruction and each classic codec's, cropped to the same --crop x --crop
window (centred unless --crop_at gives its top-left corner) and shown at 1:1. Each panel is
labelled with the codec, its setting and the rate (bpp) and LPIPS of the whole image
(LPIPS-AlexNet v0.1; left out, after a warning, when the default weights are missing).
Beside the PNG, <out>.json lists every panel's figures.
"""
import json
import os

from absl import app, flags

import toolbox  # first: it puts the repository on the path
# pylint: disable=wrong-import-order
from tfcomp import baselines, bench, codecs, data, io as tfcomp_io, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CODECS = ("jpeg-420", "webp", "avif", "heic")

# Its own flag registry, so that tests can import several tools into one process.
FLAGS = flags.FlagValues()
flags.DEFINE_list("models", [], "zoo models (see `tfcomp models`)", flag_values=FLAGS)
flags.DEFINE_list("weights", [], "model .npz files written by tools/train.py",
                  flag_values=FLAGS)
flags.DEFINE_string("dataset", os.path.join(ROOT, os.pardir, "shared", "datasets", "kodak"),
                    "folder of the images", flag_values=FLAGS)
flags.DEFINE_list("images", ["kodim04", "kodim14", "kodim21"],
                  "images of --dataset, by file name or name without extension",
                  flag_values=FLAGS)
flags.DEFINE_list("codecs", list(DEFAULT_CODECS), "classic lossy codecs (by default those "
                  "of them installed here)", flag_values=FLAGS)
flags.DEFINE_integer("crop", 256, "side of the square crop shown, in pixels",
                     flag_values=FLAGS)
flags.DEFINE_string("crop_at", None, "Y,X: top-left corner of the crop (default: centred)",
                    flag_values=FLAGS)
flags.DEFINE_string("out", os.path.join(ROOT, "docs", "hific_crops.png"),
                    "the figure (PNG); its figures go to the same path with .json",
                    flag_values=FLAGS)
flags.DEFINE_string("lpips_weights", None, "LPIPS-AlexNet weights (.npz; default: "
                    "$TFCOMP_LPIPS_WEIGHTS, else ../shared/weights/lpips-alexnet-v0.1.npz)",
                    flag_values=FLAGS)
flags.DEFINE_integer("dpi", 100, "resolution of the PNG (crops are drawn at 1:1 at it)",
                     flag_values=FLAGS)


def find_images(folder, names):
  """[(name, uint8 RGB image)] of `names` (file names, or file names without extension) in
  `folder`; app.UsageError naming what is missing."""
  try:
    files = data.list_files(folder)
  except ValueError as e:
    raise app.UsageError(f"--dataset {folder}: {e}") from None
  by_name = {}
  for path in files:
    base = os.path.basename(path)
    by_name.setdefault(base, path)
    by_name.setdefault(os.path.splitext(base)[0], path)
  missing = [n for n in names if n not in by_name]
  if missing:
    raise app.UsageError(f"--images {','.join(missing)}: not in {folder} (it has "
                         f"{', '.join(os.path.basename(f) for f in files[:8])}"
                         f"{', ...' if len(files) > 8 else ''})")
  return [(n, bench.to_rgb8(tfcomp_io.read_image(by_name[n]))) for n in names]


def crop_window(shape, crop, crop_at, name):
  """(top, left) of the crop x crop window in an image of `shape`: `crop_at` (Y, X), or the
  centre when None; app.UsageError if it does not fit."""
  h, w = shape[:2]
  if crop > min(h, w):
    raise app.UsageError(f"--crop {crop}: larger than {name} ({h}x{w})")
  if crop_at is None:
    return (h - crop) // 2, (w - crop) // 2
  top, left = crop_at
  if top + crop > h or left + crop > w:
    raise app.UsageError(f"--crop_at {top},{left}: a {crop}-pixel crop there leaves {name} "
                         f"({h}x{w})")
  return top, left


def _parse_crop_at(value):
  if value is None:
    return None
  try:
    top, left = (int(v) for v in value.split(","))
  except ValueError:
    raise app.UsageError(f"--crop_at {value!r}: expected Y,X (two integers)") from None
  if top < 0 or left < 0:
    raise app.UsageError(f"--crop_at {value!r}: the corner must not be negative")
  return top, left


def select_codecs(names, explicit):
  """The ClassicCodecs named: unknown or lossless ones are errors; unavailable ones too if
  the user named them (`explicit`), else they are dropped (the default list names codecs
  whose libraries are optional)."""
  chosen = []
  for name in names:
    try:
      codec = baselines.get(name)
    except KeyError as e:
      raise app.UsageError(f"--codecs: {e.args[0]}") from None
    if codec.lossless:
      raise app.UsageError(f"--codecs {name}: lossless; the figure compares lossy codecs")
    if codec.available():
      chosen.append(codec)
    elif explicit:
      raise app.UsageError(f"--codecs {name}: its library is not installed here")
    else:
      print(f"note: {name} left out (its library is not installed here)")
  return chosen


def load_models(names, weights):
  """Lossy codecs of zoo `names` and of model files `weights`; at least one in all."""
  if not names and not weights:
    raise app.UsageError("give at least one learned model: --models (zoo names) or "
                         "--weights (model .npz files)")
  loaded = [toolbox.load_codec(n, None) for n in names]
  for path in weights:
    if not os.path.isfile(path):
      raise app.UsageError(f"--weights {path}: no such file")
    loaded.append(toolbox.load_codec(None, path))
  for codec in loaded:
    if codec.lossless:
      raise app.UsageError(f"model {codec.name} is lossless; the figure compares lossy "
                           "models with classic codecs at their rate")
  return loaded


def load_lpips(path):
  """The LPIPS model, or None (after a warning) when the default weights are missing;
  weights given with --lpips_weights must exist."""
  from tfcomp import lpips  # pylint: disable=import-outside-toplevel  (TensorFlow)
  try:
    return lpips.load(path)
  except FileNotFoundError as e:
    if path is not None:
      raise app.UsageError(f"--lpips_weights {path}: {e}") from None
    print(f"warning: the panels leave LPIPS out: {e}")
    return None


def _panel(label, setting, quality_name, image, decoded, data_bytes, lpips_model):
  """One panel's figures (and its pixels, which the JSON leaves out)."""
  return {"label": label, "setting": setting, "quality_name": quality_name,
          "bytes": len(data_bytes),
          "bpp": baselines.bpp_of(data_bytes, image), "psnr": metrics.psnr(image, decoded),
          "lpips": (None if lpips_model is None else
                    metrics.lpips(image, decoded, lpips_model)), "pixels": decoded}


def code_image(image, model, classic, lpips_model):
  """Panels of one image and one learned model: the model's, then each classic codec's at
  the setting of the closest rate."""
  data_bytes = codecs.compress(image, model)
  decoded, _ = codecs.decompress(data_bytes, lambda _: model)
  panels = [_panel(model.name, None, "", image, decoded, data_bytes, lpips_model)]
  target = panels[0]["bpp"]
  for codec in classic:
    setting, encoded, _ = baselines.match_rate(codec, image, target)
    panels.append(_panel(codec.name, setting, codec.quality_name, image,
                         codec.decode(encoded), encoded, lpips_model))
  return panels


def _caption(panel):
  """Two lines: the codec and its setting; the rate and LPIPS of the whole image."""
  setting = ("" if panel["setting"] is None else
             f" {panel['quality_name'] or 'setting'} {panel['setting']:g}")
  figures = f"{panel['bpp']:.3f} bpp"
  if panel["lpips"] is not None:
    figures += f", LPIPS {panel['lpips']:.3f}"
  return f"{panel['label']}{setting}\n{figures}"


def draw(rows, path, crop, dpi):
  """Writes the figure: a row per entry of `rows` ({"image", "window", "original",
  "panels"}), crops at 1:1 at `dpi`."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  columns = 1 + max(len(r["panels"]) for r in rows)
  # Inches: the crop (1:1 at dpi), the gap between crops, two lines of caption above each.
  side, gap, caption = crop / dpi, 0.08, 0.4
  width, height = columns * (side + gap) + gap, len(rows) * (side + caption) + gap
  fig = plt.figure(figsize=(width, height), dpi=dpi)
  for r, row in enumerate(rows):
    top, left = row["window"]
    shown = [(f"original\n{row['image']}, crop at {top},{left}", row["original"])]
    shown += [(_caption(p), p["pixels"]) for p in row["panels"]]
    for c, (title, pixels) in enumerate(shown):
      # Placed by hand, not by subplots: the crops must stay exactly 1:1.
      ax = fig.add_axes([(gap + c * (side + gap)) / width,
                         (gap + (len(rows) - 1 - r) * (side + caption)) / height,
                         side / width, side / height])
      ax.imshow(pixels[top:top + crop, left:left + crop], interpolation="nearest")
      ax.set_title(title, fontsize=7)
      ax.axis("off")
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def main(argv):
  """Runs the tool on a full command line (program name first); returns the rows drawn,
  each {"image", "model", "window", "panels"} with the panels' figures."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return []
  if len(argv) != 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; images come from --dataset "
                         "and --images")
  if FLAGS.crop < 32:
    raise app.UsageError(f"--crop {FLAGS.crop}: must be at least 32 pixels")
  if FLAGS.dpi < 10:
    raise app.UsageError(f"--dpi {FLAGS.dpi}: must be at least 10")
  if not FLAGS.images:
    raise app.UsageError("--images: give at least one image")
  if not FLAGS.out.lower().endswith(".png"):
    raise app.UsageError(f"--out {FLAGS.out}: the figure is a PNG; give a .png path")
  crop_at = _parse_crop_at(FLAGS.crop_at)
  # Everything that can be checked is checked before the first (slow) coding.
  images = find_images(FLAGS.dataset, FLAGS.images)
  windows = [crop_window(image.shape, FLAGS.crop, crop_at, name) for name, image in images]
  classic = select_codecs(FLAGS.codecs, FLAGS["codecs"].present)
  models = load_models(FLAGS.models, FLAGS.weights)
  lpips_model = load_lpips(FLAGS.lpips_weights)
  rows = []
  for (name, image), window in zip(images, windows):
    for model in models:
      panels = code_image(image, model, classic, lpips_model)
      rows.append({"image": name, "model": model.name, "window": window, "original": image,
                   "panels": panels})
      print(f"{name} {model.name}: " + "; ".join(
          _caption(p).replace("\n", " ") for p in panels),
          flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  draw(rows, FLAGS.out, FLAGS.crop, FLAGS.dpi)
  for row in rows:  # the pixels were for the figure only
    del row["original"]
    for panel in row["panels"]:
      del panel["pixels"]
  with open(os.path.splitext(FLAGS.out)[0] + ".json", "w") as f:
    json.dump({"crop": FLAGS.crop, "lpips": lpips_model is not None, "rows": rows}, f,
              indent=1)
  print(FLAGS.out)
  return rows


if __name__ == "__main__":
  toolbox.run(main)
