"""Times the `tfcomp` command as users run it: one batch call against one call per image.

    python tools/bench_cli.py --images ../shared/datasets/kodak \
        --models srec-small-v5,hyperprior-ms-v5-q2 [--benchmarks_md]

Per model, side by side in one run:
  * batch: `tfcomp compress --model M IMAGES OUT` (one process), then `tfcomp decompress`
    of its files into a folder;
  * singles: one `tfcomp compress` and one `tfcomp decompress` per image;
  * in-process: the same coding in one Python process after its start-up and tracing
    (tools/bench_versions.py's timing, as tools/bench.py measures), and the start-up: a process that imports, loads the model and
    codes one 8x8 image.
The batch's wall time over in-process plus one start-up is the overhead of the command.
Also the wall time of `tfcomp models` and `tfcomp info` (median of 5 runs). Every command
runs in a fresh process; outputs go to a temporary folder.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import toolbox  # first: it puts the repository on the path
import bench_versions  # pylint: disable=wrong-import-order
from tfcomp import data, io as tfcomp_io, testing, zoo  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_string("images", None, "images: a folder or an (escaped) glob", flag_values=FLAGS)
flags.DEFINE_list("models", ["srec-small-v5", "hyperprior-ms-v5-q2"], "zoo models",
                  flag_values=FLAGS)
flags.DEFINE_integer("limit", 0, "the first N images only (0: all)", flag_values=FLAGS)
flags.DEFINE_bool("benchmarks_md", False, "replace the section of BENCHMARKS.md",
                  flag_values=FLAGS)

SECTION = "The tfcomp command (tools/bench_cli.py)"
TFCOMP = os.path.join(os.path.dirname(sys.executable), "tfcomp")


def _wall(argv):
  """Seconds one command takes; RuntimeError if it fails."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  start = time.perf_counter()
  result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
  seconds = time.perf_counter() - start
  if result.returncode:
    raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()[-1000:]}")
  return seconds, result.stdout


def measure(model, paths, work):
  """{"batch": (enc, dec), "singles": (enc, dec), "in_process": (enc, dec), "start": s}."""
  coded, decoded = os.path.join(work, "coded"), os.path.join(work, "decoded")
  batch = (_wall([TFCOMP, "compress", "--model", model, *paths, coded])[0],
           _wall([TFCOMP, "decompress", coded, decoded])[0])
  singles = [0.0, 0.0]
  for p in paths:
    name = os.path.splitext(os.path.basename(p))[0]
    tfc, png = os.path.join(work, name + ".tfc"), os.path.join(work, name + ".png")
    singles[0] += _wall([TFCOMP, "compress", "--model", model, p, tfc])[0]
    singles[1] += _wall([TFCOMP, "decompress", tfc, png])[0]
  tiny = os.path.join(work, "tiny.png")
  tfcomp_io.write_atomic(tiny, tfcomp_io.encode_png(testing.smooth_image(8, 8, 3)))
  start = _wall([TFCOMP, "compress", "--model", model, tiny, tiny + ".tfc"])[0]
  timed = bench_versions.time_in_process(bench_versions.ROOT, model, paths)  # means per image
  in_process = (timed["enc"] * len(paths), timed["dec"] * len(paths))
  return {"batch": batch, "singles": tuple(singles), "in_process": in_process, "start": start}


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) != 1 or not FLAGS.images:
    raise app.UsageError("give --images")
  for name in FLAGS.models:
    try:
      zoo.get(name)
    except KeyError as e:
      raise app.UsageError(str(e.args[0])) from None
  paths = [os.path.abspath(p) for p in data.list_files(FLAGS.images)]
  paths = paths[:FLAGS.limit] if FLAGS.limit else paths
  lines = [f"| model | {len(paths)} images: batch call (enc / dec s) | {len(paths)} single "
           "calls | in-process coding | start-up | batch / (in-process + start-up) |",
           "|---|---|---|---|---|---|"]
  for model in FLAGS.models:
    work = tempfile.mkdtemp(prefix="tfcomp-bench-cli-")
    try:
      m = measure(model, paths, work)
    finally:
      shutil.rmtree(work, ignore_errors=True)
    ratios = [b / (i + m["start"]) for b, i in zip(m["batch"], m["in_process"])]
    pair = lambda t: f"{t[0]:.1f} / {t[1]:.1f}"  # noqa: E731
    lines.append(f"| {model} | {pair(m['batch'])} | {pair(m['singles'])} | "
                 f"{pair(m['in_process'])} | {m['start']:.1f} | "
                 f"{ratios[0]:.2f} / {ratios[1]:.2f} |")
    print(lines[-1], file=sys.stderr, flush=True)  # progress; the table ends on stdout
  work = tempfile.mkdtemp(prefix="tfcomp-bench-cli-")
  try:
    coded = os.path.join(work, "x.tfc")
    _wall([TFCOMP, "compress", paths[0], coded])
    quick = {cmd: statistics.median(_wall([TFCOMP, *args])[0] for _ in range(5))
             for cmd, args in (("tfcomp models", ["models"]),
                               ("tfcomp info", ["info", coded]))}
  finally:
    shutil.rmtree(work, ignore_errors=True)
  table = "\n".join(lines)
  quick_line = ", ".join(f"`{cmd}` {s:.2f} s" for cmd, s in quick.items())
  print(table + "\n\n" + quick_line)
  if FLAGS.benchmarks_md:
    import benchmarks_md  # pylint: disable=import-outside-toplevel
    command = (f"python tools/bench_cli.py --images={FLAGS.images} "
               f"--models={','.join(FLAGS.models)}" +
               (f" --limit={FLAGS.limit}" if FLAGS.limit else "") + " --benchmarks_md")
    benchmarks_md.update_section(
        SECTION, f"`{command}` ({benchmarks_md.machine()}).\n\nWall seconds to code all the "
        "images, encode / decode: one `tfcomp` call for all of them, one call per image, "
        "and the coding alone in one process (after tracing); the start-up is a call on an "
        "8x8 image. Median of 5 runs: " + quick_line + ".\n\n" + table)


if __name__ == "__main__":
  toolbox.run(main)
