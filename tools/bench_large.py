"""Time and peak memory of coding one large image with zoo models, each in a fresh process.

    python tools/bench_large.py --models l3c-small-v3,fixedpred-v1 [--size 6000x4000] \
        [--benchmarks_md]

The image is a photo-like mosaic (`tfcomp.testing.photo_mosaic`) or --image FILE. Each
model compresses and then decompresses it in its own subprocess, so the peak resident
memory (ru_maxrss) of each phase belongs to that model alone. Decoding is checked
bit-exact for lossless models.
"""
import json
import os
import subprocess
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tfcomp  # noqa: F401  pylint: disable=unused-import,wrong-import-position  (before TensorFlow)
import benchmarks_md  # pylint: disable=wrong-import-position,wrong-import-order

FLAGS = flags.FLAGS
flags.DEFINE_string("models", None, "comma-separated zoo model names")
flags.DEFINE_string("size", "6000x4000", "WIDTHxHEIGHT of the synthetic image")
flags.DEFINE_string("image", None, "use this image file instead of a synthetic one")
flags.DEFINE_string("workdir", "out/large", "where the image and the files go")
flags.DEFINE_bool("benchmarks_md", False, "record the run in BENCHMARKS.md")

PHASE = r"""
import json, resource, sys, time
import numpy as np
import tfcomp
from tfcomp import codecs, io, zoo
phase, model, src, dst = sys.argv[1:5]
started = time.perf_counter()
if phase == "compress":
  image = io.read_image(src)
  data = codecs.compress(image, zoo.load(model))
  io.write_atomic(dst, data)
  extra = {"bytes": len(data), "subpixels": int(image.size)}
else:
  with open(src, "rb") as f:
    decoded, _ = codecs.decompress(f.read(), zoo.load)
  extra = {"exact": bool(np.array_equal(decoded, io.read_image(dst)))}
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_bytes": peak, **extra}))
"""


def _phase(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", PHASE, *args], capture_output=True,
                          text=True, env=env, check=False)
  if result.returncode:
    raise RuntimeError(f"{args[0]} with {args[1]} failed: {result.stderr.strip()[-500:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if not FLAGS.models:
    raise app.UsageError("--models is required")
  from tfcomp import io, testing  # pylint: disable=import-outside-toplevel
  os.makedirs(FLAGS.workdir, exist_ok=True)
  if FLAGS.image:
    source = FLAGS.image
  else:
    width, height = map(int, FLAGS.size.lower().split("x"))
    source = os.path.join(FLAGS.workdir, f"mosaic_{width}x{height}.png")
    if not os.path.exists(source):
      io.write_png(source, testing.photo_mosaic(height, width))
  shape = io.read_image(source).shape
  rows = []
  for model in FLAGS.models.split(","):
    coded = os.path.join(FLAGS.workdir, f"{model}.tfc")
    enc = _phase("compress", model, source, coded)
    dec = _phase("decompress", model, coded, source)
    rows.append((model, enc, dec))
    print(f"{model}: {8 * enc['bytes'] / enc['subpixels']:.3f} bpsp, compress "
          f"{enc['seconds']:.1f} s / {enc['peak_bytes'] / 2**30:.2f} GiB, decompress "
          f"{dec['seconds']:.1f} s / {dec['peak_bytes'] / 2**30:.2f} GiB, exact "
          f"{dec['exact']}", flush=True)
  if FLAGS.benchmarks_md:
    what = os.path.basename(FLAGS.image) if FLAGS.image else "a photo-like mosaic"
    lines = [f"{shape[1]}x{shape[0]} RGB ({what}), each phase in a fresh process; peak "
             f"memory is the process's peak resident set. {benchmarks_md.machine()}.", "",
             f"`python tools/bench_large.py --models {FLAGS.models} --size {FLAGS.size} "
             "--benchmarks_md`", "",
             "| model | bpsp | compress s | compress peak GiB | decompress s | "
             "decompress peak GiB | exact |", "|---|---|---|---|---|---|---|"]
    for model, enc, dec in rows:
      lines.append(f"| {model} | {8 * enc['bytes'] / enc['subpixels']:.3f} | "
                   f"{enc['seconds']:.1f} | {enc['peak_bytes'] / 2**30:.2f} | "
                   f"{dec['seconds']:.1f} | {dec['peak_bytes'] / 2**30:.2f} | {dec['exact']} |")
    benchmarks_md.update_section("Large images (tools/bench_large.py)", "\n".join(lines))


if __name__ == "__main__":
  app.run(main)
