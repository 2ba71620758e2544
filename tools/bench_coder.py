"""Throughput of tfcomp's coding ops, side by side with tensorflow-compression's range coder.

Usage: python tools/bench_coder.py [--symbols 10000000] [--repeats 3] [--nowrite]

Every op runs on one thread (the kernels are single-threaded), on the same data for both
libraries, best of --repeats runs. The table section of BENCHMARKS.md is replaced.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # pylint: disable=g-import-not-at-top
import numpy as np
from scipy.stats import norm
import tensorflow as tf
import tensorflow_compression as tfc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmarks_md  # pylint: disable=g-import-not-at-top
from tfcomp import ops, testing  # pylint: disable=g-import-not-at-top

SYMBOLS = flags.DEFINE_integer("symbols", 10_000_000, "symbols per op (at least 10M for "
                             "the recorded figures)")
REPEATS = flags.DEFINE_integer("repeats", 3, "runs per measurement; the best is kept")
WRITE = flags.DEFINE_bool("write", True, "update BENCHMARKS.md")


def best_time(fn, repeats):
  result, best = None, float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - start)
  return best, result


def gaussian_tables(num_tables=64, precision=16):
  """Discretized Gaussians of log-spaced scales, like a hyperprior's scale table."""
  cdf_rows, offsets = [], []
  for scale in np.exp(np.linspace(np.log(0.11), np.log(64), num_tables)):
    half = int(np.ceil(scale * 8)) + 1
    x = np.arange(-half, half + 1)
    pmf = norm.cdf(x + 0.5, scale=scale) - norm.cdf(x - 0.5, scale=scale)
    tail = max(1 - pmf.sum(), 0)
    cdf_rows.append(ops.pmf_to_cdf(np.append(pmf, tail).astype(np.float32), precision).numpy())
    offsets.append(-half)
  width = max(len(r) for r in cdf_rows)
  cdf = np.full((num_tables, width), 1 << precision, np.int32)
  for i, r in enumerate(cdf_rows):
    cdf[i, :len(r)] = r
  return cdf, np.array([len(r) for r in cdf_rows], np.int32), np.array(offsets, np.int32)


def bench_tables(n, repeats):
  rng = np.random.default_rng(0)
  cdf, sizes, offset = gaussian_tables()
  indexes = rng.integers(0, len(sizes), n).astype(np.int32)
  scales = np.exp(np.linspace(np.log(0.11), np.log(64), len(sizes)))
  values = np.rint(rng.normal(0, scales[indexes])).astype(np.int32)
  values_t, indexes_t = tf.constant(values), tf.constant(indexes)

  enc_t, encoded = best_time(lambda: ops.table_encode(values_t, indexes_t, cdf, sizes, offset),
                             repeats)
  dec_t, decoded = best_time(lambda: ops.table_decode(encoded, indexes_t, cdf, sizes, offset),
                             repeats)
  assert (decoded.numpy() == values).all()

  # tensorflow-compression: the same CDFs, overflow (escape) enabled by a negative precision.
  lookup = np.concatenate([np.full((len(sizes), 1), -16, np.int32), cdf], 1)

  def tfc_encode():
    handle = tfc.ops.create_range_encoder([], lookup)
    handle = tfc.ops.entropy_encode_index(handle, indexes_t, values_t - offset[indexes])
    return tfc.ops.entropy_encode_finalize(handle)

  def tfc_decode():
    handle = tfc.ops.create_range_decoder(tfc_encoded, lookup)
    handle, out = tfc.ops.entropy_decode_index(handle, indexes_t, [n], tf.int32)
    return out

  tfc_enc_t, tfc_encoded = best_time(tfc_encode, repeats)
  tfc_dec_t, tfc_decoded = best_time(tfc_decode, repeats)
  assert (tfc_decoded.numpy() + offset[indexes] == values).all()
  ideal = testing.information_bits(values, indexes, cdf, sizes, offset) / 8
  return [
      ("table coder (tfcomp, rANS)", n, enc_t, dec_t, len(encoded.numpy()), ideal),
      ("tensorflow-compression range coder", n, tfc_enc_t, tfc_dec_t,
       len(tfc_encoded.numpy()), ideal),
  ]


def bench_cdf(n, repeats):
  rng = np.random.default_rng(1)
  rows = ops.pmf_to_cdf(rng.dirichlet(np.full(6, 0.5), 4096).astype(np.float32)).numpy()
  which = rng.integers(0, 4096, n)
  cdf = tf.constant(rows[which])
  freq = np.diff(rows, axis=1)[which]
  u = rng.random(n)[:, None] * 65536
  values = (np.cumsum(freq, 1) <= u).sum(1).astype(np.int32)
  enc_t, encoded = best_time(lambda: ops.cdf_encode(values, cdf), repeats)
  dec_t, decoded = best_time(lambda: ops.cdf_decode(encoded, cdf), repeats)
  assert (decoded.numpy() == values).all()
  ideal = -np.log2(freq[np.arange(n), values] / 65536).sum() / 8
  return [("explicit-CDF coder (6 symbols/row)", n, enc_t, dec_t, len(encoded.numpy()), ideal)]


def bench_mixture(n, repeats, channels, components, seed):
  """Subpixels drawn from random mixtures: what a well-calibrated model codes."""
  rng = np.random.default_rng(seed)
  pixels = -(-n // channels)
  params = testing.random_mixture_params(rng, (pixels,), channels, components)
  symbols = tf.constant(testing.sample_mixture(rng, *params))
  params = [tf.constant(p) for p in params]
  enc_t, encoded = best_time(lambda: ops.mixture_encode(symbols, *params), repeats)
  dec_t, decoded = best_time(lambda: ops.mixture_decode(encoded, *params), repeats)
  assert (decoded.numpy() == symbols.numpy()).all()
  kind = {1: "gray", 3: "RGB"}[channels]
  return [(f"logistic-mixture coder ({kind}, K={components}, CDFs included)", pixels * channels,
           enc_t, dec_t, len(encoded.numpy()), None)]


def main(argv):
  del argv
  tf.config.threading.set_intra_op_parallelism_threads(1)
  n, repeats = SYMBOLS.value, REPEATS.value
  rows = (bench_tables(n, repeats) + bench_cdf(n, repeats) +
          bench_mixture(n, repeats, channels=1, components=5, seed=3) +
          bench_mixture(n, repeats, channels=3, components=10, seed=2))
  lines = ["| op | symbols | encode (M symbols/s) | decode (M symbols/s) | bytes | "
           "overhead vs information |", "|---|---:|---:|---:|---:|---:|"]
  for name, count, enc_t, dec_t, size, ideal in rows:
    overhead = f"{100 * (size / ideal - 1):+.3f}%" if ideal else "n/a"
    lines.append(f"| {name} | {count:,} | {count / enc_t / 1e6:.2f} | {count / dec_t / 1e6:.2f} "
                 f"| {size:,} | {overhead} |")
  ours, theirs = rows[0], rows[1]
  ratios = (f"Table coder vs tensorflow-compression on the same data: encode "
            f"{theirs[2] / ours[2]:.2f}x, decode {theirs[3] / ours[3]:.2f}x its throughput "
            "(target: decode >= 2x, encode >= 1x).")
  mix = rows[-1]
  mixture = (f"Mixture coder (RGB, K=10) per core: encode {mix[1] / mix[2] / 1e6:.2f} M "
             f"subpixels/s, decode {mix[1] / mix[3] / 1e6:.2f} M subpixels/s (targets: >= 10 "
             "and >= 3). Its symbols are drawn from the mixtures themselves, as a "
             "well-calibrated model's would be; parameters are random (logits N(0, 2^2), so "
             "most of the 10 components carry weight).")
  body = "\n".join([f"`python tools/bench_coder.py --symbols {n} --repeats {repeats}` "
                    f"({benchmarks_md.machine()}; one intra-op thread, best of {repeats}).",
                    "", *lines, "", ratios, "", mixture])
  print(body)
  if WRITE.value:
    benchmarks_md.update_section("Entropy coders (tools/bench_coder.py)", body)


if __name__ == "__main__":
  app.run(main)
