"""Training throughput with 1 and 2 local workers (tf.distribute), side by side in one run.

    python tools/bench_train.py --train ../shared/datasets/train [--model srec] \
        [--config small] [--batch_size 16] [--crop_size 128] [--steps 30] [--benchmarks_md]

Each run is `tools/train.py --strategy multi_worker` with a cluster of N worker processes
on 127.0.0.1 (N = 1, then 2, alternating over --repeats), the same flags and global batch.
Examples per second are timed from the chief's step lines as they arrive, after --warmup
steps (start-up and tracing), to the last step.
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import toolbox  # first: it puts the repository on the path  # pylint: disable=unused-import

FLAGS = flags.FlagValues()
flags.DEFINE_string("train", None, "training images (folder, glob or tfds:NAME)",
                    flag_values=FLAGS)
flags.DEFINE_string("model", "srec", "model family", flag_values=FLAGS)
flags.DEFINE_string("config", "small", "its config", flag_values=FLAGS)
flags.DEFINE_multi_string("set", [], "config overrides, as tools/train.py's", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 16, "global batch", flag_values=FLAGS)
flags.DEFINE_integer("crop_size", 128, "crop side", flag_values=FLAGS)
flags.DEFINE_integer("steps", 30, "steps per run", flag_values=FLAGS)
flags.DEFINE_integer("warmup", 5, "steps not timed (start-up, tracing)", flag_values=FLAGS)
flags.DEFINE_list("workers", ["1", "2"], "cluster sizes to compare", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 2, "runs per cluster size, alternating", flag_values=FLAGS)
flags.DEFINE_bool("benchmarks_md", False, "replace the section of BENCHMARKS.md",
                  flag_values=FLAGS)

SECTION = "Distributed training (tools/bench_train.py)"
TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def free_ports(count):
  """`count` TCP ports free on 127.0.0.1 now."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def start_workers(argv, logdir, count, stdout=None):
  """The processes of a cluster of `count` workers on 127.0.0.1 (free ports), each running
  tools/train.py `argv` --strategy multi_worker --logdir `logdir`. Worker i logs to
  logdir/worker<i>.log (appended), or the chief to `stdout` if given."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(count)]}
  os.makedirs(logdir, exist_ok=True)
  workers = []
  for i in range(count):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}}))
    out = stdout if stdout and i == 0 else open(  # pylint: disable=consider-using-with
        os.path.join(logdir, f"worker{i}.log"), "a")
    workers.append(subprocess.Popen(
        [sys.executable, TRAIN, *argv, "--strategy", "multi_worker", "--logdir", logdir],
        env=env, stdout=out, stderr=subprocess.STDOUT, text=True))
  return workers


def examples_per_second(count, logdir):
  """One run of a `count`-worker cluster: its examples/s after the warm-up steps."""
  argv = ["--model", FLAGS.model, "--config", FLAGS.config, "--train", FLAGS.train,
          "--batch_size", str(FLAGS.batch_size), "--crop_size", str(FLAGS.crop_size),
          "--steps", str(FLAGS.steps), "--summary_every", "1",
          "--checkpoint_every", str(FLAGS.steps), *[f"--set={s}" for s in FLAGS.set]]
  workers = start_workers(argv, logdir, count, stdout=subprocess.PIPE)
  seen = {}
  for line in workers[0].stdout:
    match = re.match(r"step (\d+) loss=", line)
    if match:
      seen[int(match.group(1))] = time.perf_counter()
  if [w.wait() for w in workers] != [0] * count or FLAGS.steps not in seen:
    raise RuntimeError(f"the {count}-worker run failed; see {logdir}")
  return (FLAGS.steps - FLAGS.warmup) * FLAGS.batch_size / (seen[FLAGS.steps] -
                                                            seen[FLAGS.warmup])


def main(argv):
  """Runs the tool on a full command line (program name first); returns {workers: [ex/s]}."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return None
  if not FLAGS.train:
    raise app.UsageError("--train is required")
  if not 0 < FLAGS.warmup < FLAGS.steps:
    raise app.UsageError(f"--warmup {FLAGS.warmup} must be in [1, --steps {FLAGS.steps})")
  counts = [int(c) for c in FLAGS.workers]
  rates = {c: [] for c in counts}
  with tempfile.TemporaryDirectory() as work:
    for r in range(FLAGS.repeats):
      for c in counts:
        rates[c].append(examples_per_second(c, os.path.join(work, f"{c}-{r}")))
  base = statistics.median(rates[counts[0]])
  rows = ["| workers | examples/s (median) | runs | vs 1 worker |", "|---|---|---|---|"]
  for c in counts:
    rate = statistics.median(rates[c])
    rows.append(f"| {c} | {rate:.2f} | {', '.join(f'{v:.2f}' for v in rates[c])} | "
                f"{rate / base:.2f}x |")
  table = "\n".join(rows)
  print(table)
  if FLAGS.benchmarks_md:
    import benchmarks_md  # pylint: disable=import-outside-toplevel
    command = ("python tools/bench_train.py " + " ".join(
        f"--{k}={getattr(FLAGS, k)}" for k in ("train", "model", "config", "batch_size",
                                              "crop_size", "steps", "warmup", "repeats")) +
        "".join(f" --set={s}" for s in FLAGS.set) + " --benchmarks_md")
    benchmarks_md.update_section(SECTION, (
        f"`{command}` ({benchmarks_md.machine()}).\n\n"
        f"tools/train.py --strategy multi_worker, every worker a process on this machine, "
        f"global batch {FLAGS.batch_size} of {FLAGS.crop_size}x{FLAGS.crop_size} crops split "
        f"across the workers; examples/s from step {FLAGS.warmup} to step {FLAGS.steps}.\n\n"
        f"{table}\n\nOn one machine the workers share its cores, so a second worker adds "
        "the cost of its gradient all-reduce and input pipeline, not compute: this shows "
        "that overhead. The speed-up comes from workers on separate machines or GPUs."))
  return rates


if __name__ == "__main__":
  toolbox.run(main)
