"""Rate-distortion plots from the benchmark harness's results.json.

    python tools/plot.py bench_out/results.json [--out DIR] [--dataset kodak]
        [--curves imgcomp-v5,jpeg-420,webp]

For each dataset of a lossy run (or the one named) it writes DIR/rd_<dataset>_psnr.png
(bpp vs PSNR-RGB) and DIR/rd_<dataset>_ms_ssim.png (bpp vs MS-SSIM), one line per RD
curve: tfcomp's zoo curves and the classic codecs measured in the same run.
"""
import json
import os

from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import bench  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_string("out", None, "folder for the plots (default: next to results.json)",
                    flag_values=FLAGS)
flags.DEFINE_string("dataset", None, "plot this dataset only (default: all)",
                    flag_values=FLAGS)
flags.DEFINE_list("curves", None, "plot these curves only (default: all)", flag_values=FLAGS)


def main(argv):
  """Runs the tool on a full command line (program name first); returns the plot paths."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return []
  if len(argv) != 2:
    raise app.UsageError("give one results.json written by tools/bench.py --mode=lossy")
  try:
    with open(argv[1]) as f:
      results = json.load(f)
  except (OSError, ValueError) as e:
    raise app.UsageError(f"cannot read {argv[1]}: {e}") from None
  if results.get("mode") != "lossy":
    raise app.UsageError(f"{argv[1]} is not from a lossy benchmark run "
                         f"(mode {results.get('mode')!r})")
  datasets = results["datasets"]
  if FLAGS.dataset is not None:
    if FLAGS.dataset not in datasets:
      raise app.UsageError(f"no dataset {FLAGS.dataset!r}; the run has {sorted(datasets)}")
    datasets = {FLAGS.dataset: datasets[FLAGS.dataset]}
  out = FLAGS.out or os.path.dirname(os.path.abspath(argv[1]))
  os.makedirs(out, exist_ok=True)
  paths = []
  for label, run in datasets.items():
    summary = run["summary"]
    if FLAGS.curves:
      unknown = sorted(set(FLAGS.curves) - {s["curve"] for s in summary})
      if unknown:
        raise app.UsageError(f"no curves {unknown} in {label}")
      summary = [s for s in summary if s["curve"] in FLAGS.curves]
    slug = "".join(ch if ch.isalnum() else "_" for ch in label)
    for key in ("psnr", "ms_ssim"):
      path = os.path.join(out, f"rd_{slug}_{key}.png")
      bench.plot_rd(summary, path, key, label)
      paths.append(path)
      print(path)
  return paths


if __name__ == "__main__":
  toolbox.run(main)
