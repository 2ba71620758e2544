"""Benchmarks tfcomp's codecs against the classic ones (see tfcomp/bench.py).

Usage:
  python tools/bench.py --mode lossless --images ../shared/datasets/kodak,../shared/datasets/lossless_eval --out out/lossless
  python tools/bench.py --mode lossy --images ../shared/datasets/kodak --out out/lossy

With --benchmarks_md, the summary also replaces its section of BENCHMARKS.md (lossy runs
copy their RD plots to docs/<out folder name>-<plot>.png); with --update_manifest, the zoo models' figures go into
tfcomp/zoo/manifest.json, which `tfcomp models` shows.
"""
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfcomp import bench, zoo  # pylint: disable=g-import-not-at-top  (before TensorFlow)
import benchmarks_md  # pylint: disable=g-import-not-at-top,wrong-import-order

MODE = flags.DEFINE_enum("mode", None, ["lossless", "lossy"], "which benchmark")
IMAGES = flags.DEFINE_string("images", None, "comma-separated image specs")
OUT = flags.DEFINE_string("out", None, "output directory")
CODECS = flags.DEFINE_string("codecs", None, "classic codecs (default: all available)")
MODELS = flags.DEFINE_string("models", None, "tfcomp zoo models (default: all of the mode)")
LIMIT = flags.DEFINE_integer("limit", None, "images per spec")
EFFORTS = flags.DEFINE_string("efforts", None, "also code each model that has effort levels "
                              "at each of these (comma-separated) besides its default")
REFINE_STEPS = flags.DEFINE_integer("refine_steps", None, "also code each model that can "
                                    "with its latents refined in this many steps")
ANCHOR = flags.DEFINE_string("anchor", "jpeg-420", "BD-rate anchor")
MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "TFDS manual directory")
SECTION = flags.DEFINE_string("benchmarks_md", None, "BENCHMARKS.md section title to replace")
UPDATE_MANIFEST = flags.DEFINE_bool("update_manifest", False, "write the zoo models' "
                                    "figures into the shipped manifest (tfcomp models)")
flags.mark_flags_as_required(["mode", "images", "out"])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
  del argv
  args = [f"--mode={MODE.value}", f"--images={IMAGES.value}", f"--out={OUT.value}"]
  if MODE.value == "lossy":
    args.append(f"--anchor={ANCHOR.value}")
  for name, flag in (("codecs", CODECS), ("models", MODELS), ("limit", LIMIT),
                     ("refine_steps", REFINE_STEPS), ("efforts", EFFORTS),
                     ("manual_dir", MANUAL_DIR)):
    if flag.value is not None:
      args.append(f"--{name}={flag.value}")
  result = bench.main(args + ([f"--manifest={zoo.MANIFEST}"] if UPDATE_MANIFEST.value else []))
  if SECTION.value:
    command = "python tools/bench.py " + " ".join(a for a in args) + \
        f" --benchmarks_md='{SECTION.value}'"
    body = [f"`{command}` ({benchmarks_md.machine()}).", ""]
    if MODE.value == "lossless":
      body.append("Mean bits per subpixel over the images (each file decoded and compared "
                  "with the input), mean encode/decode seconds per image, and the largest "
                  "peak memory above the process's resting level over all images.")
    else:
      body.append("Means over the images per codec and setting; bpp from the real bytes. "
                  f"BD-rate against {ANCHOR.value}: negative means fewer bits for the same "
                  "quality.")
    body += ["", result["markdown"]]
    if MODE.value == "lossy":
      os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
      # Named after the run's folder: sections of other lossy runs keep their plots.
      prefix = os.path.basename(os.path.normpath(OUT.value))
      for name in sorted(os.listdir(OUT.value)):
        if name.endswith(".png"):
          shutil.copy(os.path.join(OUT.value, name),
                      os.path.join(ROOT, "docs", f"{prefix}-{name}"))
          body += ["", f"![{name}](docs/{prefix}-{name})"]
    benchmarks_md.update_section(SECTION.value, "\n".join(body))


if __name__ == "__main__":
  app.run(main)
