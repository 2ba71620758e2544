"""Fuzzes every decoder with random and mutated inputs; records the result in BENCHMARKS.md.

Usage: python tools/fuzz.py [--inputs 100000] [--nowrite]

Targets (tfcomp.testing.fuzz_targets): the table, explicit-CDF and mixture decoder ops, the
whole `tfcomp decompress` path on a file, and the codec behind valid checksums. Each input is
either random bytes or a mutation of a valid input (bit flips, overwrites, truncation,
insertion, splices). An input may only raise the expected decoding errors; anything else,
and above all a dead process (a crash), is a failure. Work runs in child processes, so a
crash is caught and reported with the seed that reproduces it.
"""
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

INPUTS = flags.DEFINE_integer("inputs", 100_000, "inputs in all, spread over the targets")
CHUNK = flags.DEFINE_integer("chunk", 5_000, "inputs per child process")
WRITE = flags.DEFINE_bool("write", True, "update BENCHMARKS.md")
CHILD = flags.DEFINE_string("child", None, "internal: target,seed,count to run in this process")


def run_child(spec):
  """Runs one chunk in this process; prints a JSON summary."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from tfcomp import testing  # pylint: disable=import-outside-toplevel
  name, seed, count = spec.split(",")
  decode, valid = testing.fuzz_targets()[name]
  rng = np.random.default_rng(int(seed))
  rejected = accepted = 0
  for i in range(int(count)):
    data = rng.bytes(int(rng.integers(0, 64))) if i % 4 == 0 else testing.mutate(valid, rng)
    try:
      decode(data)
      accepted += 1
    except testing.DECODE_ERRORS:
      rejected += 1
    except Exception as e:  # pylint: disable=broad-except
      print(json.dumps({"failure": f"{type(e).__name__}: {e}", "input": data.hex()}))
      return
  print(json.dumps({"rejected": rejected, "accepted": accepted}))


def main(argv):
  del argv
  if CHILD.value:
    run_child(CHILD.value)
    return
  from tfcomp import testing  # pylint: disable=import-outside-toplevel
  names = sorted(testing.fuzz_targets())
  per_target = -(-INPUTS.value // len(names))
  rows, failures, start = [], [], time.time()
  for name in names:
    done = rejected = accepted = crashes = 0
    seed = 0
    while done < per_target:
      count = min(CHUNK.value, per_target - done)
      spec = f"{name},{seed},{count}"
      result = subprocess.run([sys.executable, __file__, f"--child={spec}"],
                              capture_output=True, text=True)
      if result.returncode != 0:
        crashes += 1
        failures.append(f"{name}: child died with status {result.returncode} "
                        f"(reproduce: python tools/fuzz.py --child={spec}); "
                        f"{result.stderr.strip().splitlines()[-1:] }")
      else:
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        if "failure" in summary:
          failures.append(f"{name}: {summary['failure']} on input {summary['input'][:200]}")
        else:
          rejected += summary["rejected"]
          accepted += summary["accepted"]
      done += count
      seed += 1
    rows.append((name, done, rejected, accepted, crashes))
    print(f"{name}: {done} inputs, {rejected} rejected, {accepted} accepted, {crashes} crashes",
          flush=True)
  total = sum(r[1] for r in rows)
  lines = ["| target | inputs | rejected with a clear error | decoded | crashes |",
           "|---|---:|---:|---:|---:|"]
  lines += [f"| {n} | {d:,} | {r:,} | {a:,} | {c} |" for n, d, r, a, c in rows]
  import benchmarks_md  # pylint: disable=import-outside-toplevel
  verdict = ("No crashes and no unexpected exceptions." if not failures else
             "FAILURES:\n\n" + "\n".join(f"- {f}" for f in failures))
  body = "\n".join([f"`python tools/fuzz.py --inputs {INPUTS.value}` "
                    f"({benchmarks_md.machine()}; {time.time() - start:.0f} s).", "",
                    f"{total:,} random and mutated inputs. \"Decoded\" counts inputs that "
                    "decoded without an error: unchanged ones (a mutation can be empty) and "
                    "changes a bare stream cannot detect, such as flipped bits among uniformly "
                    "coded escape bits, which decode to other values. Files guard against "
                    "those with CRCs of the header, of each section and of the pixels, so a "
                    "file decodes only to the pixels it was made from.", "", *lines, "",
                    verdict])
  print(body)
  if WRITE.value:
    benchmarks_md.update_section("Decoder fuzzing (tools/fuzz.py)", body)
  if failures:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
