"""Times this tfcomp against another checkout of it, side by side, on the same images.

    git worktree add /tmp/tfcomp-old 993d1c0
    (cd /tmp/tfcomp-old && ../main/.venv/bin/python setup.py build_ext --inplace)
    python tools/bench_versions.py --other /tmp/tfcomp-old \
        --pairs srec-small-v3:srec-small-v5,l3c-small-v2:l3c-small-v3 \
        --images ../shared/datasets/kodak --limit 8 [--rounds 2] [--benchmarks_md]

Each pair names a model of the other checkout and one of this one. For every round and
pair, a fresh process of each side (the other first) loads its model, codes two images to
trace its functions, then times compress and decompress of every image in-process; the
sides alternate, so both see the same machine. Reports the mean seconds per image, the
bytes, and this side's time over the other's. Both checkouts run in this Python, so the
other needs its op library built in place.
"""
import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import data  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_string("other", None, "the other checkout's root", flag_values=FLAGS)
flags.DEFINE_list("pairs", None, "OTHER_MODEL:THIS_MODEL pairs", flag_values=FLAGS)
flags.DEFINE_string("images", None, "images: a folder or an (escaped) glob", flag_values=FLAGS)
flags.DEFINE_integer("limit", 8, "the first N images (0: all)", flag_values=FLAGS)
flags.DEFINE_integer("rounds", 2, "alternating rounds", flag_values=FLAGS)
flags.DEFINE_bool("benchmarks_md", False, "replace the section of BENCHMARKS.md",
                  flag_values=FLAGS)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "Against the previous version (tools/bench_versions.py)"


# Runs in a fresh process whose working directory is the checkout to time, so that its
# `import tfcomp` is that checkout's.
TIMING_SCRIPT = r"""
import json, statistics, sys, time
from tfcomp import codecs, io, zoo
name, paths = sys.argv[1], sys.argv[2:]
codec = zoo.load(name)
images = [io.read_image(p) for p in paths]
# Trace both orientations first: tracing is paid once per process, not per image.
for image in {im.shape: im for im in images}.values():
  codecs.decompress(codecs.compress(image, codec), zoo.load)
enc, dec, size = [], [], 0
for image in images:
  start = time.perf_counter()
  coded = codecs.compress(image, codec)
  middle = time.perf_counter()
  codecs.decompress(coded, zoo.load)
  enc.append(middle - start)
  dec.append(time.perf_counter() - middle)
  size += len(coded)
print(json.dumps({"enc": statistics.mean(enc), "dec": statistics.mean(dec), "bytes": size}))
"""


def time_in_process(root, name, paths):
  """{"enc", "dec": mean seconds per image, "bytes": total} of model `name` of `root`."""
  env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", TIMING_SCRIPT, name] + paths,
                          capture_output=True, text=True, env=env, cwd=root, check=False)
  if result.returncode:
    raise RuntimeError(f"timing {name} in {root} failed: {result.stderr.strip()[-2000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) != 1 or not (FLAGS.other and FLAGS.pairs and FLAGS.images):
    raise app.UsageError("give --other, --pairs and --images")
  pairs = [p.split(":") for p in FLAGS.pairs]
  if any(len(p) != 2 for p in pairs):
    raise app.UsageError(f"pairs are OTHER_MODEL:THIS_MODEL, got {FLAGS.pairs}")
  paths = [os.path.abspath(p) for p in data.list_files(FLAGS.images)]
  paths = paths[:FLAGS.limit] if FLAGS.limit else paths
  results = {tuple(p): {"other": [], "this": []} for p in pairs}
  for _ in range(FLAGS.rounds):
    for other, this in pairs:
      results[(other, this)]["other"].append(time_in_process(os.path.abspath(FLAGS.other), other, paths))
      results[(other, this)]["this"].append(time_in_process(ROOT, this, paths))
  lines = ["| other model | this model | enc s (other / this) | dec s (other / this) | "
           "enc ratio | dec ratio | bytes (other / this) |", "|---|---|---|---|---|---|---|"]
  for (other, this), sides in results.items():
    o = {k: statistics.median(r[k] for r in sides["other"]) for k in ("enc", "dec")}
    t = {k: statistics.median(r[k] for r in sides["this"]) for k in ("enc", "dec")}
    size = (sides["other"][0]["bytes"], sides["this"][0]["bytes"])
    lines.append(f"| {other} | {this} | {o['enc']:.3f} / {t['enc']:.3f} | "
                 f"{o['dec']:.3f} / {t['dec']:.3f} | {t['enc'] / o['enc']:.2f} | "
                 f"{t['dec'] / o['dec']:.2f} | {size[0]:,} / {size[1]:,} "
                 f"({100 * (size[1] / size[0] - 1):+.2f}%) |")
  table = "\n".join(lines)
  print(table)
  if FLAGS.benchmarks_md:
    import benchmarks_md  # pylint: disable=import-outside-toplevel
    other_rev = subprocess.run(["git", "-C", FLAGS.other, "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True, check=False).stdout.strip()
    command = (f"python tools/bench_versions.py --other CHECKOUT_OF_{other_rev or 'OTHER'} "
               f"--pairs {','.join(FLAGS.pairs)} --images {FLAGS.images} "
               f"--limit {FLAGS.limit} --rounds {FLAGS.rounds} --benchmarks_md")
    benchmarks_md.update_section(
        SECTION, f"`{command}` ({benchmarks_md.machine()}).\n\nMean seconds per image to "
        "encode and decode in-process (after tracing), the median over the rounds; the two "
        "sides alternate in fresh processes. Ratio: this version's time over the other's. "
        "Bytes: all images' files.\n\n" + table)


if __name__ == "__main__":
  toolbox.run(main)
