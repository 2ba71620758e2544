"""Checks that files decode alike on other machines: encodes here, decodes elsewhere.

    python tools/check_portable.py --models srec-small-v5,hyperprior-ms-v5-q2 \
        --images ../shared/datasets/kodak [--limit 4] [--out out/portable] [--benchmarks_md]

Every image is compressed with every model in this process. Fresh processes then decode
all the files, one per setting (as many at once as there are cores), each a stand-in for
another machine (an older instruction set, another convolution backend, another thread
count):

    ONEDNN_MAX_CPU_ISA=AVX     oneDNN limited to AVX (a CPU without AVX2 or AVX-512)
    ONEDNN_MAX_CPU_ISA=SSE41   oneDNN limited to SSE4.1
    TF_ENABLE_ONEDNN_OPTS=0    TensorFlow's Eigen kernels instead of oneDNN
    TF_NUM_INTRAOP_THREADS=1   one thread
    default                    this machine as it is

Per model and setting it reports whether every decoded image is identical to the input
(lossless models) or, for lossy ones, whether the decoded latents are identical to the
encoder's and by how much the pixels differ from this process's own decoding (networks
that only shape a reconstruction run in plain float, so other machines may round a pixel
the other way: at most 1 is expected). Writes <out>/results.json and <out>/summary.md;
--benchmarks_md replaces its section of BENCHMARKS.md. Exit status 1 if any check fails.
"""
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import codecs, data, zoo  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_list("models", None, "zoo models (default: every learned one)", flag_values=FLAGS)
flags.DEFINE_string("images", None, "images: a folder, an (escaped) glob or tfds:NAME",
                    flag_values=FLAGS)
flags.DEFINE_integer("limit", 0, "the first N images only (0: all)", flag_values=FLAGS)
flags.DEFINE_string("out", "out/portable", "folder for results.json and summary.md",
                    flag_values=FLAGS)
flags.DEFINE_bool("benchmarks_md", False, "replace the section of BENCHMARKS.md",
                  flag_values=FLAGS)
flags.DEFINE_string("decode", None, "internal: decode the files a manifest lists",
                    flag_values=FLAGS)

SETTINGS = {
    "ONEDNN_MAX_CPU_ISA=AVX": {"ONEDNN_MAX_CPU_ISA": "AVX"},
    "ONEDNN_MAX_CPU_ISA=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "TF_ENABLE_ONEDNN_OPTS=0": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "TF_NUM_INTRAOP_THREADS=1": {"TF_NUM_INTRAOP_THREADS": "1"},
    "default": {},
}
SECTION = "Portability (tools/check_portable.py)"


def latents_digest(codec, parsed):
  """SHA-256 of a lossy file's decoded latents (every tile, in order; `parsed` its
  container); None for a lossless one."""
  if codec.lossless:
    return None
  digest = hashlib.sha256()
  for latents in codec.decompress_latents(parsed.sections, parsed.geometry):
    digest.update(np.ascontiguousarray(latents).tobytes())
  return digest.hexdigest()


def decode_files(entries):
  """{file: {"image": path of the decoded .npy, "latents": digest} or {"error": text}}."""
  from tfcomp import container  # pylint: disable=import-outside-toplevel
  results = {}
  for entry in entries:
    path = entry["file"]
    try:
      with open(path, "rb") as f:
        raw = f.read()
      image, parsed = codecs.decompress(raw, zoo.load)
      decoded = path + f".{os.getpid()}.npy"
      np.save(decoded, image)
      results[path] = {"image": decoded, "latents": latents_digest(zoo.load(parsed.model),
                                                                   parsed)}
    except (container.FormatError, ValueError, OSError) as e:
      results[path] = {"error": str(e)}
  return results


def _decode_elsewhere(manifest, setting):
  """decode_files in a fresh process under `setting`'s environment."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS")}
  env.update(SETTINGS[setting], TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, os.path.abspath(__file__), f"--decode={manifest}"],
                          capture_output=True, text=True, env=env, check=False)
  if result.returncode:
    raise RuntimeError(f"decoding under {setting} failed: {result.stderr.strip()[-2000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def check(codec_names, images, workdir, settings=tuple(SETTINGS), log=print):
  """{model: {setting: {"ok", "max_diff", "latents_identical", "failures"}}}."""
  entries = []
  for name in codec_names:
    codec = zoo.load(name)
    for image_name, image in images:
      path = os.path.join(workdir, f"{len(entries):04d}.tfc")
      raw = codecs.compress(image, codec)
      with open(path, "wb") as f:
        f.write(raw)
      if codec.lossless:
        reference, latents = image, None
      else:
        reference, parsed = codecs.decompress(raw, zoo.load)
        latents = latents_digest(codec, parsed)
      np.save(path + ".reference.npy", reference)
      entries.append({"model": name, "image": image_name, "file": path,
                      "reference": path + ".reference.npy", "latents": latents,
                      "lossless": codec.lossless})
    log(f"{name}: {len(images)} files written")
  manifest = os.path.join(workdir, "manifest.json")
  with open(manifest, "w") as f:
    json.dump(entries, f)
  report = {name: {} for name in codec_names}
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    runs = {setting: pool.submit(_decode_elsewhere, manifest, setting) for setting in settings}
  for setting in settings:
    decoded = runs[setting].result()
    for name in codec_names:
      cells = {"ok": True, "max_diff": 0, "latents_identical": True, "failures": []}
      for entry in (e for e in entries if e["model"] == name):
        got = decoded[entry["file"]]
        if "error" in got:
          cells["ok"] = False
          cells["failures"].append(f"{entry['image']}: {got['error']}")
          continue
        image = np.load(got["image"]).astype(np.int64)
        diff = int(np.abs(image - np.load(entry["reference"]).astype(np.int64)).max())
        cells["max_diff"] = max(cells["max_diff"], diff)
        if entry["lossless"] and diff:
          cells["ok"] = False
          cells["failures"].append(f"{entry['image']}: differs by up to {diff}")
        if not entry["lossless"]:
          same = got["latents"] == entry["latents"]
          cells["latents_identical"] &= same
          if not same or diff > 1:
            cells["ok"] = False
            cells["failures"].append(f"{entry['image']}: latents "
                                     f"{'identical' if same else 'DIFFER'}, pixels up to {diff}")
      report[name][setting] = cells
      log(f"{name} under {setting}: {_cell(cells, zoo.get(name).lossless)}")
  return report


def _cell(cells, lossless):
  if not cells["ok"]:
    return "FAILED"
  if lossless:
    return "identical"
  return "latents identical, pixels " + ("identical" if cells["max_diff"] == 0 else
                                         f"within ±{cells['max_diff']}")


def markdown(report, settings):
  lines = ["| model | " + " | ".join(f"`{s}`" for s in settings) + " |",
           "|---|" + "---|" * len(settings)]
  for name, row in report.items():
    lossless = zoo.get(name).lossless
    lines.append(f"| {name} | " + " | ".join(_cell(row[s], lossless) for s in settings) + " |")
  return "\n".join(lines)


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return 0
  if FLAGS.decode:
    with open(FLAGS.decode) as f:
      print(json.dumps(decode_files(json.load(f))))
    return 0
  if len(argv) != 1 or not FLAGS.images:
    raise app.UsageError("give --images (and optionally --models)")
  names = FLAGS.models or [e.name for e in zoo.ENTRIES if e.family != "fixedpred"]
  for name in names:
    try:
      zoo.get(name)
    except KeyError as e:
      raise app.UsageError(str(e.args[0])) from None
  images = data.load_images(FLAGS.images, limit=FLAGS.limit or None)
  if not images:
    raise app.UsageError(f"no images in {FLAGS.images}")
  with tempfile.TemporaryDirectory() as workdir:
    report = check(names, images, workdir)
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump(report, f, indent=2)
  table = markdown(report, list(SETTINGS))
  with open(os.path.join(FLAGS.out, "summary.md"), "w") as f:
    f.write(table + "\n")
  print(table)
  if FLAGS.benchmarks_md:
    import benchmarks_md  # pylint: disable=import-outside-toplevel
    command = (f"python tools/check_portable.py --models={','.join(names)} "
               f"--images={FLAGS.images}" + (f" --limit={FLAGS.limit}" if FLAGS.limit else "") +
               " --benchmarks_md")
    benchmarks_md.update_section(SECTION, f"`{command}` ({benchmarks_md.machine()}).\n\n"
                                 "Files written in one process (at the default effort), "
                                 "decoded in a fresh one per setting. Lossless: the decoded "
                                 "image equals the input. Lossy: the decoded latents equal "
                                 "the encoder's, and the largest pixel difference from this "
                                 "machine's decoding.\n\n"
                                 + table)
  failed = [f for row in report.values() for cells in row.values() for f in cells["failures"]]
  for failure in failed:
    print(f"FAILED: {failure}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  toolbox.run(lambda argv: sys.exit(main(argv)))
