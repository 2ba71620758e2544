"""The coder's online adaptation, one part at a time: an ablation on whole images.

Usage:
  python tools/bench_adaptation.py --images ../shared/datasets/kodak,../shared/datasets/lossless_eval \
      [--models srec-small-v5,l3c-small-v3] [--limit N] [--benchmarks_md]

For each learned lossless model whose coder adapts (tfcomp.ops.mixture_encode's
`adaptation`) and each set of adaptations (none, each alone, bias + scale, all), every image is
coded tile by tile through the model (tfcomp.codecs.lossless's tiling, without its PNG
fallback, so the model alone is measured), decoded and compared. Reports bits per subpixel
from the streams' bytes per dataset, and encode / decode seconds per image of the first
dataset; the settings of one image run back to back (each first in turn), so their times
compare side by side.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfcomp import data, zoo  # pylint: disable=g-import-not-at-top,wrong-import-position
import benchmarks_md  # pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order

FLAGS = flags.FLAGS
flags.DEFINE_string("images", None, "comma-separated image specs (folders or globs)")
flags.DEFINE_string("models", "srec-small-v5,l3c-small-v3", "comma-separated zoo models")
flags.DEFINE_integer("limit", None, "images per spec")
flags.DEFINE_bool("benchmarks_md", False, "record the run in BENCHMARKS.md")
flags.mark_flag_as_required("images")

TITLE = "Online adaptation in the coder (tools/bench_adaptation.py)"
SETTINGS = ((0, "none (effort 1)"), (1, "bias"), (2, "scale"), (4, "calibration"),
            (3, "bias + scale"), (7, "bias + scale + calibration (effort 2)"))


def code_image(codec, image, adaptation):
  """(bytes, encode s, decode s) of `image` through codec.model, tile by tile; raises if a
  tile does not decode to itself."""
  model, total, enc_s, dec_s = codec.model, 0, 0.0, 0.0
  channels = image.shape[2]
  for h, w, tile, padded in codec._tiles(image):  # pylint: disable=protected-access
    start = time.perf_counter()
    streams = [s.numpy() for s in model.compress(padded, h, w, channels,
                                                 adaptation=adaptation)]
    enc_s += time.perf_counter() - start
    start = time.perf_counter()
    levels = np.asarray(model.decompress(streams, padded.shape[1:3], h, w, channels,
                                         adaptation=adaptation))[0]
    dec_s += time.perf_counter() - start
    if not np.array_equal(levels, tile):
      raise AssertionError(f"adaptation {adaptation}: a tile does not decode to itself")
    total += sum(len(s) for s in streams)
  return total, enc_s, dec_s


def run(specs, model_names, limit=None):
  """{model: {adaptation: {dataset: (bpsp, enc s, dec s)}}} and the dataset names."""
  datasets = [(os.path.basename(os.path.normpath(spec)), data.load_images(spec, limit=limit))
              for spec in specs]
  results = {}
  for name in model_names:
    codec = zoo.load(name)
    if not codec.efforts:
      raise app.UsageError(f"model {name}'s coder does not adapt")
    per = {a: {} for a, _ in SETTINGS}
    for dataset, images in datasets:
      code_image(codec, images[0][1], 0)  # traces the steps, outside the timings
      sums = {a: [0, 0, 0.0, 0.0] for a, _ in SETTINGS}
      for i, (image_name, image) in enumerate(images):
        # A new shape traces again (portrait Kodak images): each setting goes first in turn.
        for a, _ in SETTINGS[i % len(SETTINGS):] + SETTINGS[:i % len(SETTINGS)]:
          size, enc_s, dec_s = code_image(codec, image, a)
          s = sums[a]
          s[0] += 8 * size
          s[1] += image.size
          s[2] += enc_s
          s[3] += dec_s
        print(f"{name} {dataset} {image_name}: " + ", ".join(
            f"{a}: {sums[a][0] / sums[a][1]:.4f}" for a, _ in SETTINGS), flush=True)
      for a, _ in SETTINGS:
        bits, subpixels, enc_s, dec_s = sums[a]
        per[a][dataset] = (bits / subpixels, enc_s / len(images), dec_s / len(images))
    results[name] = per
  return results, [d for d, _ in datasets]


def markdown(results, datasets):
  first = datasets[0]
  head = (["model", "adaptation"] + [f"{d} bpsp" for d in datasets] +
          [f"vs none on {d}" for d in datasets] + [f"{first} enc s", f"{first} dec s"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
  for name, per in results.items():
    for a, label in SETTINGS:
      row = [name, label] + [f"{per[a][d][0]:.3f}" for d in datasets]
      row += [f"{100 * (per[a][d][0] / per[0][d][0] - 1):+.1f}%" for d in datasets]
      row += [f"{per[a][first][1]:.2f}", f"{per[a][first][2]:.2f}"]
      lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  specs = FLAGS.images.split(",")
  results, datasets = run(specs, FLAGS.models.split(","), FLAGS.limit)
  table = markdown(results, datasets)
  print(table)
  if FLAGS.benchmarks_md:
    command = ("python tools/bench_adaptation.py --images=" + FLAGS.images +
               f" --models={FLAGS.models}" + (f" --limit={FLAGS.limit}" if FLAGS.limit else "") +
               " --benchmarks_md")
    benchmarks_md.update_section(TITLE, "\n".join([
        f"`{command}` ({benchmarks_md.machine()}).", "",
        "Each model alone (no PNG fallback), every file decoded and compared. Bits per "
        "subpixel over each set; seconds per image of the first set, the settings of an "
        "image run back to back. Bias: the mean error of the mixture's mean per context "
        "(signs of the left and upper neighbours' errors, predicted scale) shifts the means. "
        "Scale: the mean ratio of the absolute error to the predicted one per context "
        "(neighbours' error activity, predicted scale) steps the log-scales by 1/32. "
        "Calibration: the CDF F becomes G(F), G piecewise linear through counts of where "
        "the coded levels fell in F (32 bins per channel and predicted scale). All are "
        "integer statistics updated as the coder goes (ops/lib/mixture_coder.cc).",
        "", table]))


if __name__ == "__main__":
  app.run(main)
