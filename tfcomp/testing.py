"""Helpers shared by tfcomp's tests and its fuzzing and benchmark tools."""
import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf

from tfcomp import base_layer, codecs, container, ops, zoo
from tfcomp import io as tfcomp_io

SAMPLE_IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples",
                            "kodim23-crop.png")


def smooth_image(height, width, channels=3, dtype=np.uint8, seed=0):
  """A synthetic photo-like image: smooth gradients, edges and a little noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  top = np.iinfo(dtype).max
  planes = []
  for c in range(channels):
    fy, fx = rng.uniform(0.005, 0.05, 2)
    base = 0.5 + 0.35 * np.sin(fy * y + c) * np.cos(fx * x - c)
    base += 0.1 * ((x + 2 * y + 7 * c) % 97 > 48)
    base += rng.normal(0, 0.01, (height, width))
    planes.append(np.clip(base, 0, 1) * top)
  return np.rint(np.stack(planes, -1)).astype(dtype)


def photo_mosaic(height, width):
  """An 8-bit RGB photo of any size: the shipped sample photo, mirrored to fill the frame.

  Natural-image statistics (unlike smooth_image) for benchmarking large images where
  the datasets are absent.
  """
  tile = tfcomp_io.read_image(SAMPLE_IMAGE)[..., :3]
  reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]))
  band = np.concatenate([tile[:, ::(-1) ** j] for j in range(reps[1])], axis=1)
  image = np.concatenate([band[::(-1) ** i] for i in range(reps[0])], axis=0)
  return np.ascontiguousarray(image[:height, :width])


def random_tables(rng, num_tables, max_symbols, precision=16, min_symbols=1):
  """Random CDF tables for the table coder: (cdf, cdf_size, offset).

  Each table has between min_symbols and max_symbols symbols, the last one the escape.
  """
  sizes = rng.integers(min_symbols + 1, max_symbols + 2, num_tables).astype(np.int32)
  cdf = np.zeros((num_tables, sizes.max()), np.int32)
  for t, size in enumerate(sizes):
    pmf = rng.dirichlet(np.full(size - 1, rng.uniform(0.05, 5))).astype(np.float32)
    cdf[t, :size] = ops.pmf_to_cdf(pmf, precision).numpy()
  offset = rng.integers(-50, 50, num_tables).astype(np.int32)
  return cdf, sizes, offset


def information_bits(values, indexes, cdf, sizes, offset, precision=16):
  """Ideal code length in bits of in-range values under quantized CDF tables."""
  symbols = values - offset[indexes]
  freq = cdf[indexes, symbols + 1] - cdf[indexes, symbols]
  return float(-np.log2(freq / 2.0 ** precision).sum())


def random_mixture_params(rng, shape, channels, components, spread=1.0):
  """Random (logit_weights, means, log_scales, coeffs) for the mixture coder."""
  pshape = tuple(shape) + (channels, components)
  logits = rng.normal(0, 2, pshape).astype(np.float32)
  means = rng.uniform(-1, 1, pshape).astype(np.float32)
  log_scales = rng.uniform(-6, -1, pshape).astype(np.float32) * spread
  coeffs = np.tanh(rng.normal(0, 1, tuple(shape) + (channels * (channels - 1) // 2,
                                                    components))).astype(np.float32)
  return logits, means, log_scales, coeffs


def sample_mixture(rng, logit_weights, means, log_scales, coeffs, num_levels=256, x_min=-1.0,
                   x_max=1.0):
  """Levels [..., C] drawn from the discretized logistic mixtures the mixture coder codes."""
  shape, channels = logit_weights.shape[:-2], logit_weights.shape[-2]
  bin_width = (x_max - x_min) / (num_levels - 1)
  levels = np.zeros(shape + (channels,), np.int32)
  for c in range(channels):
    w = np.exp(logit_weights[..., c, :] - logit_weights[..., c, :].max(-1, keepdims=True))
    cum = np.cumsum(w / w.sum(-1, keepdims=True), -1)
    k = (rng.random(shape + (1,)) > cum).sum(-1).clip(0, w.shape[-1] - 1)[..., None]
    mu = np.take_along_axis(means[..., c, :], k, -1)[..., 0].astype(np.float64)
    for j in range(c):
      alpha = np.take_along_axis(coeffs[..., c * (c - 1) // 2 + j, :], k, -1)[..., 0]
      mu += alpha * (x_min + levels[..., j] * bin_width)
    scale = np.exp(np.take_along_axis(log_scales[..., c, :], k, -1)[..., 0])
    u = rng.uniform(1e-7, 1 - 1e-7, shape)
    value = mu + scale * np.log(u / (1 - u))
    levels[..., c] = np.clip(np.rint((value - x_min) / bin_width), 0, num_levels - 1)
  return levels


# Errors a decoder may raise on bad input. Anything else (or a dead process) is a bug.
DECODE_ERRORS = (tf.errors.InvalidArgumentError, container.FormatError)


def _fuzz_setup():
  rng = np.random.default_rng(1234)
  cdf, sizes, offset = random_tables(rng, 4, 30)
  indexes = rng.integers(0, 4, 300).astype(np.int32)
  values = (rng.integers(0, 28, 300) + offset[indexes]).astype(np.int32)
  values[::37] = 1 << 20  # escapes
  rows = ops.pmf_to_cdf(rng.random((300, 6)).astype(np.float32)).numpy()
  row_values = rng.integers(0, 6, 300).astype(np.int32)
  params = random_mixture_params(rng, (8, 9), 3, 4)
  image = rng.integers(0, 256, (8, 9, 3)).astype(np.int32)
  pixels = smooth_image(12, 17, 3, seed=3)
  # fixedpred-v1 decodes in milliseconds, so 100k mutated files stay affordable; its
  # payload section is "plane0".
  valid_file = codecs.compress(pixels, zoo.load("fixedpred-v1"))
  parsed = container.read(valid_file)

  def decode_payload(data):
    # Mutated section bytes behind valid checksums: reaches the codec's own decoding.
    sections = dict(parsed.sections)
    sections["plane0"] = data
    rewrapped = container.write(dataclasses.replace(parsed, sections=sections))
    return codecs.decompress(rewrapped, zoo.load)

  def decode_in_chunks(data):
    # As imgcomp's wavefront decoder does: the state threaded through three calls.
    state = ops.CDF_DECODE_START
    for k in range(3):
      _, state = ops.cdf_decode_chunk(data, state, rows[100 * k:100 * (k + 1)], final=k == 2)

  return {
      "table": (lambda data: ops.table_decode(data, indexes, cdf, sizes, offset),
                ops.table_encode(values, indexes, cdf, sizes, offset).numpy()),
      "cdf": (lambda data: ops.cdf_decode(data, rows),
              ops.cdf_encode(row_values, rows).numpy()),
      "cdf-chunks": (decode_in_chunks, ops.cdf_encode(row_values, rows).numpy()),
      "mixture": (lambda data: ops.mixture_decode(data, *params),
                  ops.mixture_encode(image, *params).numpy()),
      "file": (lambda data: codecs.decompress(data, zoo.load), valid_file),
      "file-payload": (decode_payload, parsed.sections["plane0"]),
      # RC's base layer: libheif and libde265 behind tfcomp's checks.
      "base-layer": (lambda data: base_layer.decode(data, 12, 17),
                     base_layer.encode(pixels, 13)),
  }


@functools.lru_cache(maxsize=None)
def fuzz_targets():
  """{name: (decode function taking bytes, a valid input to mutate)} for every decoder."""
  return _fuzz_setup()


def mutate(data, rng):
  """A random variation of `data`: flips, overwrites, truncation, insertion or splice."""
  data = bytearray(data)
  kind = rng.integers(0, 6)
  if kind == 0 and data:
    for _ in range(rng.integers(1, 4)):
      i = rng.integers(0, len(data))
      data[i] ^= 1 << int(rng.integers(0, 8))
  elif kind == 1 and data:
    i = rng.integers(0, len(data))
    data[i:i + 4] = rng.bytes(4)
  elif kind == 2:
    data = data[:rng.integers(0, len(data) + 1)]
  elif kind == 3:
    i = rng.integers(0, len(data) + 1)
    data[i:i] = rng.bytes(int(rng.integers(1, 16)))
  elif kind == 4:
    data = bytearray(rng.bytes(int(rng.integers(0, 2 * len(data) + 2))))
  else:
    i, j = sorted(rng.integers(0, len(data) + 1, 2))
    data = data[:i] + data[j:] + data[i:j]
  return bytes(data)
