"""tfcomp.ops: exact round trips, code length, graph mode and input validation."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import ops, testing

InvalidArgument = tf.errors.InvalidArgumentError


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1000, 65537, 10**6])
def test_table_round_trip_over_lengths(n):
  rng = np.random.default_rng(n)
  cdf, sizes, offset = testing.random_tables(rng, 7, 60)
  indexes = rng.integers(0, 7, n).astype(np.int32)
  values = (rng.integers(0, sizes[indexes] - 2 + 1) + offset[indexes]).astype(np.int32)
  encoded = ops.table_encode(values, indexes, cdf, sizes, offset)
  np.testing.assert_array_equal(ops.table_decode(encoded, indexes, cdf, sizes, offset), values)


@pytest.mark.parametrize("seed", range(12))
def test_table_round_trip_over_distributions(seed):
  rng = np.random.default_rng(100 + seed)
  precision = int(rng.integers(1, 17))
  max_symbols = int(rng.integers(1, min(300, 2**precision - 1) + 1))
  cdf, sizes, offset = testing.random_tables(rng, int(rng.integers(1, 20)), max_symbols,
                                             precision)
  shape = tuple(rng.integers(1, 30, rng.integers(1, 4)))
  indexes = rng.integers(0, len(sizes), shape).astype(np.int32)
  # Values drawn from the tables themselves, plus out-of-range ones through the escape.
  pmf = np.diff(cdf, axis=1).clip(0)
  values = np.empty(shape, np.int32)
  for i, t in np.ndenumerate(indexes):
    values[i] = rng.choice(sizes[t] - 1, p=pmf[t, :sizes[t] - 1] / 2**precision)
  values += offset[indexes]
  escapes = rng.random(shape) < 0.05
  values[escapes] = rng.integers(-2**31, 2**31, escapes.sum())
  encoded = ops.table_encode(values, indexes, cdf, sizes, offset, precision)
  np.testing.assert_array_equal(
      ops.table_decode(encoded, indexes, cdf, sizes, offset, precision), values)


def test_table_escape_covers_every_int32():
  cdf = ops.pmf_to_cdf([[0.7, 0.2, 0.1]]).numpy()
  values = np.array([0, 1, 2, -1, 3, 2**31 - 1, -2**31, 12345678, -7], np.int32)
  indexes = np.zeros_like(values)
  encoded = ops.table_encode(values, indexes, cdf, [4], [0])
  np.testing.assert_array_equal(ops.table_decode(encoded, indexes, cdf, [4], [0]), values)


def test_table_code_length_within_half_percent_of_information():
  rng = np.random.default_rng(7)
  cdf, sizes, offset = testing.random_tables(rng, 16, 64, min_symbols=3)
  n = 2_000_000
  indexes = rng.integers(0, 16, n).astype(np.int32)
  pmf = np.diff(cdf, axis=1).clip(0) / 2**16
  u = rng.random(n)
  symbols = np.empty(n, np.int32)
  for t in range(16):  # sample every table's values from its own quantized distribution
    where = indexes == t
    cum = np.cumsum(pmf[t, :sizes[t] - 2])
    symbols[where] = np.minimum(np.searchsorted(cum / cum[-1], u[where]), sizes[t] - 3)
  values = symbols + offset[indexes]
  bits = 8 * len(ops.table_encode(values, indexes, cdf, sizes, offset).numpy())
  ideal = testing.information_bits(values, indexes, cdf, sizes, offset)
  assert ideal < bits < 1.005 * ideal


def test_cdf_coder_round_trip_and_code_length():
  rng = np.random.default_rng(3)
  n, m = 300_000, 9
  pmf = rng.dirichlet(np.full(m, 0.3), n).astype(np.float32)
  cdf = ops.pmf_to_cdf(pmf).numpy()
  freq = np.diff(cdf, axis=1)
  values = np.array([rng.choice(m, p=f / f.sum()) for f in freq[:3000]] * 100, np.int32)
  encoded = ops.cdf_encode(values, cdf)
  np.testing.assert_array_equal(ops.cdf_decode(encoded, cdf), values)
  ideal = -np.log2(freq[np.arange(n), values] / 2**16).sum()
  assert ideal < 8 * len(encoded.numpy()) < 1.005 * ideal


def test_cdf_coder_empty_and_shapes():
  cdf = ops.pmf_to_cdf(np.ones((2, 3, 4), np.float32)).numpy()
  values = np.array([[0, 1, 2], [3, 2, 1]], np.int32)
  encoded = ops.cdf_encode(values, cdf)
  assert ops.cdf_decode(encoded, cdf).shape == (2, 3)
  empty = ops.cdf_encode(np.zeros((0,), np.int32), np.zeros((0, 4), np.int32))
  assert ops.cdf_decode(empty, np.zeros((0, 4), np.int32)).shape == (0,)


def test_cdf_stream_decodes_step_by_step_in_graph_mode():
  """One stream, decoded in steps whose rows depend on the symbols decoded before."""
  rng = np.random.default_rng(5)
  steps, m = 40, 6
  tables = ops.pmf_to_cdf(rng.dirichlet(np.ones(m - 1), m - 1).astype(np.float32)).numpy()
  values = [rng.integers(0, m - 1, int(rng.integers(0, 30))).astype(np.int32)
            for _ in range(steps)]
  # Step k's rows: table[previous step's first value], as a context model would choose.
  rows = [tables[np.full(len(v), values[k - 1][0] if k and len(values[k - 1]) else 0)]
          for k, v in enumerate(values)]
  encoded = ops.cdf_encode(np.concatenate(values), np.concatenate(rows))

  @tf.function
  def step(state, cdf, final):
    return ops.cdf_decode_chunk(encoded, state, cdf, final=final)

  state, previous = ops.CDF_DECODE_START, None
  for k, v in enumerate(values):
    context = previous[0] if previous is not None and len(previous) else 0
    decoded, state = step(state, tables[np.full(len(v), context)], k == steps - 1)
    np.testing.assert_array_equal(decoded, v)
    previous = decoded.numpy()
  with pytest.raises(InvalidArgument, match="does not end"):
    ops.cdf_decode_chunk(encoded, ops.CDF_DECODE_START, np.concatenate(rows)[:-1], final=True)
  with pytest.raises(InvalidArgument, match="does not belong"):
    ops.cdf_decode_chunk(encoded, [1 << 40, 1 << 40, 10**9, 0], tables[:1])
  with pytest.raises(InvalidArgument, match="state must have shape"):
    ops.load().tfcomp_cdf_decode_chunk(encoded, tf.zeros(3, tf.int64), tables[:1])


def test_pmf_to_cdf_keeps_every_symbol_codable():
  pmf = np.array([[1, 0, 0, 1e-9], [0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]], np.float32)
  cdf = ops.pmf_to_cdf(pmf, 8).numpy()
  assert (cdf[:, 0] == 0).all() and (cdf[:, -1] == 256).all()
  assert (np.diff(cdf, axis=1) >= 1).all()
  np.testing.assert_array_equal(cdf[2], [0, 64, 128, 192, 256])
  with pytest.raises(InvalidArgument, match="non-finite"):
    ops.pmf_to_cdf([[0.5, np.nan]])
  with pytest.raises(InvalidArgument, match="does not fit precision"):
    ops.pmf_to_cdf(np.ones((1, 5), np.float32), 2)


@pytest.mark.parametrize("shape,channels,components", [
    ((1, 1), 3, 10), ((7, 13), 3, 5), ((37, 23), 1, 10), ((4, 5), 3, 1), ((9,), 2, 3),
    ((3, 4, 5), 4, 2), ((0, 5), 3, 10)])
def test_mixture_round_trip(shape, channels, components):
  rng = np.random.default_rng(sum(shape) + channels)
  params = testing.random_mixture_params(rng, shape, channels, components)
  symbols = rng.integers(0, 256, tuple(shape) + (channels,)).astype(np.int32)
  encoded = ops.mixture_encode(symbols, *params)
  np.testing.assert_array_equal(ops.mixture_decode(encoded, *params), symbols)


@pytest.mark.parametrize("adaptation", [1, 2, 4, 7])
@pytest.mark.parametrize("shape,channels", [((1, 1), 3), ((7, 13), 3), ((37, 23), 1),
                                            ((9,), 2), ((2, 3, 5), 3), ((0, 5), 3)])
def test_mixture_round_trip_with_adaptation(shape, channels, adaptation):
  rng = np.random.default_rng(sum(shape) + channels + adaptation)
  params = testing.random_mixture_params(rng, shape, channels, 4)
  symbols = rng.integers(0, 256, tuple(shape) + (channels,)).astype(np.int32)
  encoded = ops.mixture_encode(symbols, *params, adaptation=adaptation)
  np.testing.assert_array_equal(ops.mixture_decode(encoded, *params, adaptation=adaptation),
                                symbols)


def _biased_image_and_params(rng, height=48, width=64):
  """Levels of a smooth image and mixture params that predict it off by a few levels
  (too dark) with scales a third of the real spread: what adaptation should learn."""
  image = testing.smooth_image(height, width, 3, seed=int(rng.integers(100))).astype(np.int32)
  k = 2
  centre = (image - 4) / 127.5 - 1  # too dark by 4 levels
  noisy = np.clip(image + rng.integers(-3, 4, image.shape), 0, 255).astype(np.int32)
  means = np.repeat(centre[..., None], k, -1).astype(np.float32)
  log_scales = np.full(means.shape, np.log(0.4 / 127.5), np.float32)
  logits = np.zeros(means.shape, np.float32)
  coeffs = np.zeros((height, width, 3, k), np.float32)
  return noisy, (logits, means, log_scales, coeffs)


def test_mixture_adaptation_learns_a_biased_model():
  symbols, params = _biased_image_and_params(np.random.default_rng(5))
  sizes = {a: len(ops.mixture_encode(symbols, *params, adaptation=a).numpy())
           for a in (0, 1, 2, 3, 4, 7)}
  assert sizes[1] < 0.9 * sizes[0] and sizes[2] < 0.9 * sizes[0], sizes
  assert sizes[4] < 0.9 * sizes[0], sizes
  assert sizes[3] < min(sizes[1], sizes[2]) and sizes[7] < sizes[3], sizes


def test_mixture_decoded_with_other_adaptation_never_crashes():
  """The flags are part of the stream's meaning: other flags give an error or other
  levels (files carry a pixel checksum for that), never a crash."""
  symbols, params = _biased_image_and_params(np.random.default_rng(6), 16, 20)
  encoded = ops.mixture_encode(symbols, *params, adaptation=7)
  for other in (0, 1, 3, 4):
    try:
      decoded = ops.mixture_decode(encoded, *params, adaptation=other).numpy()
    except tf.errors.InvalidArgumentError as e:
      assert "corrupted" in str(e)
    else:
      assert not np.array_equal(decoded, symbols)


@pytest.mark.parametrize("num_levels,x_min,x_max", [(25, -1, 1), (2, 0, 1), (4096, 0, 4095),
                                                    (256, 0, 255)])
def test_mixture_other_level_grids(num_levels, x_min, x_max):
  rng = np.random.default_rng(num_levels)
  params = testing.random_mixture_params(rng, (20, 20), 3, 4)
  params = (params[0], params[1] * (x_max - x_min) / 2 + (x_max + x_min) / 2,
            params[2] + np.log((x_max - x_min) / 2), params[3])
  symbols = rng.integers(0, num_levels, (20, 20, 3)).astype(np.int32)
  kwargs = dict(num_levels=num_levels, x_min=x_min, x_max=x_max)
  encoded = ops.mixture_encode(symbols, *params, **kwargs)
  np.testing.assert_array_equal(ops.mixture_decode(encoded, *params, **kwargs), symbols)


def test_mixture_code_length_matches_the_model():
  """Real bits are within 0.5% of the mixture's cross-entropy on values drawn from it."""
  rng = np.random.default_rng(11)
  n, k = 100_000, 3
  logits, means, log_scales, _ = testing.random_mixture_params(rng, (n,), 1, k)
  coeffs = np.zeros((n, 0, k), np.float32)
  weights = np.exp(logits[:, 0] - logits[:, 0].max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  comp = (rng.random(n)[:, None] > np.cumsum(weights, -1)).sum(-1).clip(0, k - 1)
  mu, s = means[np.arange(n), 0, comp], np.exp(log_scales[np.arange(n), 0, comp])
  u = rng.uniform(1e-6, 1 - 1e-6, n)
  x = np.clip(np.rint((mu + s * np.log(u / (1 - u)) + 1) * 127.5), 0, 255).astype(np.int32)
  bits = 8 * len(ops.mixture_encode(x[:, None], logits, means, log_scales, coeffs).numpy())

  @np.errstate(over="ignore")
  def cdf(edge):  # float64 discretized-logistic-mixture CDF at level edges
    z = (edge[:, None] - means[:, 0]) / np.exp(log_scales[:, 0])
    return (weights / (1 + np.exp(-z))).sum(-1)

  lower = np.where(x > 0, cdf((x - 0.5) / 127.5 - 1), 0)
  upper = np.where(x < 255, cdf((x + 0.5) / 127.5 - 1), 1)
  ideal = -np.log2(np.maximum(upper - lower, 1e-12)).sum()
  assert abs(bits - ideal) < 0.005 * ideal


def test_ops_run_inside_tf_function():
  rng = np.random.default_rng(5)
  cdf, sizes, offset = testing.random_tables(rng, 3, 10)
  params = testing.random_mixture_params(rng, (6, 7), 3, 4)
  symbols = rng.integers(0, 256, (6, 7, 3)).astype(np.int32)
  indexes = rng.integers(0, 3, (50,)).astype(np.int32)
  values = (rng.integers(0, 8, 50) + offset[indexes]).astype(np.int32)

  @tf.function(input_signature=[tf.TensorSpec(None, tf.int32), tf.TensorSpec(None, tf.int32)])
  def table_round_trip(v, i):
    return ops.table_decode(ops.table_encode(v, i, cdf, sizes, offset), i, cdf, sizes, offset)

  @tf.function
  def mixture_round_trip(x):
    return ops.mixture_decode(ops.mixture_encode(x, *params), *params)

  np.testing.assert_array_equal(table_round_trip(values, indexes), values)
  np.testing.assert_array_equal(mixture_round_trip(symbols), symbols)
  assert table_round_trip.get_concrete_function().structured_outputs.shape.rank is None


def test_coexists_with_tensorflow_compression_ops():
  tfc = pytest.importorskip("tensorflow_compression")
  cdf = ops.pmf_to_cdf([[0.5, 0.3, 0.2]]).numpy()
  ours = ops.table_encode([0, 1, 2], [0, 0, 0], cdf, [4], [0])
  lookup = np.concatenate([[-16], cdf[0]]).astype(np.int32)[None]
  handle = tfc.ops.create_range_encoder([], lookup)
  handle = tfc.ops.entropy_encode_index(handle, tf.constant([0, 0, 0]), tf.constant([0, 1, 2]))
  theirs = tfc.ops.entropy_encode_finalize(handle)
  assert ours.dtype == theirs.dtype == tf.string


@pytest.mark.parametrize("call,message", [
    (lambda c: ops.table_encode([5], [0], c, [4], [0]), "escape"),
    (lambda c: ops.table_encode([0], [3], c, [4], [0]), "outside"),
    (lambda c: ops.table_encode([0, 1], [0], c, [4], [0]), "same shape"),
    (lambda c: ops.table_encode([0], [0], c, [9], [0]), "cdf_size"),
    (lambda c: ops.table_encode([0], [0], c[:, ::-1], [4], [0]), "not decrease"),
    (lambda c: ops.table_encode([0], [0], c, [4], [0], precision=17), "precision"),
    (lambda c: ops.cdf_encode([3], c), "outside"),
    (lambda c: ops.mixture_encode([[256, 0, 0]], *testing.random_mixture_params(
        np.random.default_rng(0), (1,), 3, 2)), "outside"),
    (lambda c: ops.mixture_encode([[0]], [[[np.nan]]], [[[0.]]], [[[0.]]],
                                  np.zeros((1, 0, 1))), "finite"),
    (lambda c: ops.mixture_encode([[0, 0]], *testing.random_mixture_params(
        np.random.default_rng(0), (1,), 3, 2)), "symbols must be"),
    (lambda c: ops.mixture_encode([[0]], [[[0.]]], [[[0.]]], [[[0.]]], np.zeros((1, 0, 1)),
                                  num_levels=1), "num_levels"),
    (lambda c: ops.mixture_encode([[0]], [[[0.]]], [[[0.]]], [[[0.]]], np.zeros((1, 0, 1)),
                                  adaptation=8), "adaptation must be"),
    (lambda c: ops.mixture_decode(b"", [[[0.]]], [[[0.]]], [[[0.]]], np.zeros((1, 0, 1)),
                                  adaptation=-1), "adaptation must be"),
])
def test_invalid_arguments_raise_invalid_argument(call, message):
  cdf = ops.pmf_to_cdf([[0.5, 0.3, 0.0]]).numpy()  # escape symbol: frequency 1
  cdf[0, -2:] = [65536, 65536]  # make the escape impossible
  with pytest.raises(InvalidArgument, match=message):
    call(cdf)


def test_decoders_reject_truncated_and_extended_streams():
  for name, (decode, valid) in testing.fuzz_targets().items():
    if name.startswith("file") or name == "base-layer":  # not ops: test_base_layer.py
      continue
    decode(valid)  # the valid input decodes
    for bad in (valid[:-1], valid[:-2], valid + b"\x00\x00", b"", valid[:7]):
      with pytest.raises(InvalidArgument):
        decode(bad)


def _golden_inputs():
  """Inputs from plain arithmetic (no RNG stream that could change between versions)."""
  i = np.arange(4000)
  values = ((i * 7919) % 23 - 8).astype(np.int32)
  values[::97] = 100000 + i[::97]  # escapes
  indexes = (i % 3).astype(np.int32)
  pmf = np.stack([np.exp(-np.abs(np.arange(20) - 8) / s) for s in (1.0, 2.5, 6.0)])
  table = ops.pmf_to_cdf(np.append(pmf, np.full((3, 1), 1e-3), 1).astype(np.float32)).numpy()
  n = np.arange(600 * 3 * 4, dtype=np.float64).reshape(600, 3, 4)
  params = (np.sin(n * 0.37).astype(np.float32) * 2, np.sin(n * 0.11).astype(np.float32) * 0.8,
            (np.cos(n * 0.23) * 2 - 3).astype(np.float32),
            np.sin(n * 0.05).astype(np.float32) * 0.6)
  symbols = ((np.arange(600 * 3).reshape(600, 3) * 37) % 256).astype(np.int32)
  return values, indexes, table, params, symbols


def test_golden_bitstreams():
  """The coders' output is part of the file format: a change here breaks existing files
  and needs a new container version (tfcomp.container.FORMAT_VERSION)."""
  import hashlib  # pylint: disable=import-outside-toplevel
  values, indexes, table, params, symbols = _golden_inputs()
  sizes, offsets = np.full(3, 22, np.int32), np.full(3, -8, np.int32)
  streams = {
      "table": ops.table_encode(values, indexes, table, sizes, offsets).numpy(),
      "cdf": ops.cdf_encode(values[:500] % 20, table[indexes[:500]]).numpy(),
      "mixture": ops.mixture_encode(symbols, params[0], params[1], params[2],
                                    params[3][:, :3]).numpy(),
      # 20 rows of 30 pixels, so that the adaptation's neighbours above count too.
      "mixture-adaptive": ops.mixture_encode(
          symbols.reshape(20, 30, 3), *[p.reshape((20, 30) + p.shape[1:]) for p in
                                        (params[0], params[1], params[2], params[3][:, :3])],
          adaptation=ops.MIXTURE_ADAPT_ALL).numpy(),
  }
  digests = {k: hashlib.sha256(v).hexdigest()[:16] for k, v in streams.items()}
  assert digests == GOLDEN, digests


GOLDEN = {'table': 'a0d5a6815d9657fb', 'cdf': 'd21e00adf5314635', 'mixture': 'bcab7dd772a6739f',
          'mixture-adaptive': '744f56cc97d71787'}
