"""fixedpred-v1: its shipped tables match their generator; decoding uses the shipped ones."""
import os

import numpy as np

from tfcomp import codecs, testing, zoo
from tfcomp.codecs import fixedpred


def test_shipped_tables_match_the_generator():
  shipped = np.load(os.path.join(zoo.WEIGHTS_DIR, "fixedpred-v1.npz"))
  built = fixedpred.build_tables()
  assert set(shipped.files) == set(built)
  for name, value in built.items():
    if name.startswith(("cdf", "class_cdf")):
      # Another libm may round exp() differently in the last bit: allow one count.
      assert np.abs(shipped[name].astype(np.int64) - value).max() <= 1, name
    elif name.startswith("scales"):
      # numpy's SIMD pow() differs between CPUs in the last bit; only the encoder reads
      # the scales (to pick block classes), so this changes no decoded file.
      np.testing.assert_allclose(shipped[name], value, rtol=1e-13, err_msg=name)
    else:
      np.testing.assert_array_equal(shipped[name], value, err_msg=name)


def test_weights_hash_is_the_shipped_file():
  codec = zoo.load("fixedpred-v1")
  other = fixedpred.FixedPredCodec("fixedpred-v1", os.path.join(zoo.WEIGHTS_DIR,
                                                                "fixedpred-v1.npz"))
  assert codec.weights_hash == other.weights_hash and len(codec.weights_hash) == 16


def test_adapts_to_local_statistics():
  """A flat half and a noisy half: block classes keep the flat half nearly free."""
  image = testing.smooth_image(64, 128, 3, seed=4)
  image[:, 64:] = np.random.default_rng(0).integers(0, 256, (64, 64, 3))
  flat = image.copy()
  flat[:, :64] = 128
  size_noisy = len(codecs.compress(image, zoo.load("fixedpred-v1")))
  size_flat = len(codecs.compress(flat, zoo.load("fixedpred-v1")))
  assert size_flat < size_noisy
  # The noisy half costs about 8 bits per subpixel; the flat half almost nothing.
  assert size_flat < 64 * 64 * 3 * 1.05 + 2000
