"""Load-tests `tfcomp serve`: requests/s and latency at several numbers of clients.

    python tools/bench_serve.py --model hyperprior-ms-v5-q2 [--image PNG] \
        [--clients 1,4,16] [--requests 64] [--out table.md]
    python tools/bench_serve.py --model_dir DIR [--name NAME] [--signature compress]

Starts the server in-process on a free port, over --model_dir or over a temporary folder
into which tools/export.py exports the zoo model --model. Then, for each number of
clients, that many client threads send --requests predictions in all (column format,
--image as the signature's one input, as 8-bit RGB), after one unmeasured request that
warms the model up. Prints a markdown table of requests/s, the median and 99th percentile
latencies and the failed requests. The clients run in the server's process: on few cores
they take some of its CPU, so the figures are a lower bound.
"""
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

from absl import app, flags
import numpy as np

import toolbox  # first: it puts the repository on the path and imports tfcomp
import benchmarks_md  # pylint: disable=wrong-import-order
import export  # pylint: disable=wrong-import-order
from tfcomp import io as tfcomp_io, serve, testing  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_string("model_dir", None, "models laid out as DIR/NAME/VERSION/saved_model.pb",
                    flag_values=FLAGS)
flags.DEFINE_string("model", None, "a lossy zoo model to export and serve (instead of "
                    "--model_dir)", flag_values=FLAGS)
flags.DEFINE_string("name", None, "the served model to load (default: the only one)",
                    flag_values=FLAGS)
flags.DEFINE_string("signature", "compress", "the signature to call", flag_values=FLAGS)
flags.DEFINE_string("image", testing.SAMPLE_IMAGE, "the image each request sends",
                    flag_values=FLAGS)
flags.DEFINE_list("clients", ["1", "4", "16"], "numbers of concurrent clients",
                  flag_values=FLAGS)
flags.DEFINE_integer("requests", 64, "requests per number of clients", flag_values=FLAGS)
flags.DEFINE_integer("max_concurrent", 4, "the server's --max_concurrent", flag_values=FLAGS)
flags.DEFINE_string("out", None, "also write the table to this file", flag_values=FLAGS)
flags.DEFINE_bool("benchmarks_md", False, "replace the section of BENCHMARKS.md",
                  flag_values=FLAGS)

SECTION = "tfcomp serve under load (tools/bench_serve.py)"


def _post(url, body):
  """(seconds, None) of one request, or (None, why it failed)."""
  request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
  start = time.perf_counter()
  try:
    with urllib.request.urlopen(request, timeout=600) as response:
      json.loads(response.read())
  except urllib.error.HTTPError as e:
    return None, f"HTTP {e.code}: {e.read()[:500].decode(errors='replace')}"
  except (OSError, ValueError) as e:  # no connection, or a garbled answer
    return None, str(e)
  return time.perf_counter() - start, None


def load_test(url, body, clients, requests):
  """{clients, requests, errors, requests_per_s, p50_ms, p99_ms} of `requests` POSTs of
  `body` to `url`, shared among `clients` threads that send them one after another."""
  seconds = []  # list.append is atomic: the threads share it without a lock

  def client(count):
    for _ in range(count):
      seconds.append(_post(url, body)[0])

  counts = [requests // clients + (i < requests % clients) for i in range(clients)]
  threads = [threading.Thread(target=client, args=(c,)) for c in counts if c]
  start = time.perf_counter()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - start
  ok = [s for s in seconds if s is not None]
  p50, p99 = np.percentile(ok, [50, 99]) * 1000 if ok else (float("nan"),) * 2
  return {"clients": clients, "requests": requests, "errors": len(seconds) - len(ok),
          "requests_per_s": len(seconds) / wall, "p50_ms": float(p50), "p99_ms": float(p99)}


def _image(path):
  image = tfcomp_io.read_image(path)
  if image.dtype != np.uint8:
    raise app.UsageError(f"--image {path}: 16-bit; give an 8-bit image")
  return np.repeat(image, 3, axis=2) if image.shape[2] < 3 else image[..., :3]


def main(argv):
  """Runs the tool on a full command line (program name first); returns the rows."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return None
  if len(argv) != 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(FLAGS.model_dir) == bool(FLAGS.model):
    raise app.UsageError("give exactly one of --model_dir and --model")
  try:
    levels = [int(c) for c in FLAGS.clients]
  except ValueError:
    raise app.UsageError(f"--clients {','.join(FLAGS.clients)}: give whole numbers") from None
  if not levels or min(levels) < 1 or FLAGS.requests < 1:
    raise app.UsageError("--clients and --requests must be positive")
  image = _image(FLAGS.image)
  body = json.dumps({"signature_name": FLAGS.signature, "inputs": image.tolist()}).encode()
  work = tempfile.mkdtemp(prefix="tfcomp-bench-serve-")
  try:
    model_dir = FLAGS.model_dir
    if FLAGS.model:
      model_dir = work
      export.export(export.load_codec(FLAGS.model, None), os.path.join(work, FLAGS.model, "1"))
    server = serve.make_server(model_dir, port=0, max_concurrent=FLAGS.max_concurrent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
      name = FLAGS.name or (list(server.models)[0] if len(server.models) == 1 else None)
      if name not in server.models:
        raise app.UsageError(f"--name {FLAGS.name}: give one of {', '.join(server.models)}")
      url = f"{server.url}/v1/models/{name}:predict"
      failure = _post(url, body)[1]
      if failure:
        raise app.UsageError(f"{name} {FLAGS.signature} fails on --image {FLAGS.image}: "
                             f"{failure}")
      rows = [load_test(url, body, c, FLAGS.requests) for c in levels]
    finally:
      server.shutdown()
      server.server_close()
  finally:
    shutil.rmtree(work, ignore_errors=True)
  height, width = image.shape[:2]
  table = "\n".join(
      [f"{name} `{FLAGS.signature}` on a {width}x{height} image, {FLAGS.requests} requests "
       f"per row, server --max_concurrent {FLAGS.max_concurrent} "
       f"({benchmarks_md.machine()}).", "",
       "| clients | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"] +
      [f"| {r['clients']} | {r['requests_per_s']:.2f} | {r['p50_ms']:.1f} | "
       f"{r['p99_ms']:.1f} | {r['errors']} |" for r in rows])
  print(table)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      f.write(table + "\n")
  if FLAGS.benchmarks_md:
    command = " ".join(["python tools/bench_serve.py"] + [
        f"--{k}={getattr(FLAGS, k)}" for k in ("model", "model_dir", "signature", "requests",
                                              "max_concurrent") if getattr(FLAGS, k)] +
        [f"--clients={','.join(FLAGS.clients)}", "--benchmarks_md"])
    benchmarks_md.update_section(SECTION, f"`{command}`: {table}\n\nThe clients are "
                                 "threads of the server's process: on 2 cores they take "
                                 "some of its CPU, so these are lower bounds.")
  return rows


if __name__ == "__main__":
  toolbox.run(main)
