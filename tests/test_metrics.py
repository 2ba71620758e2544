"""PSNR, MS-SSIM (against TensorFlow's) and BD-rate (against hand-computed cases)."""
import numpy as np
import pytest
import tensorflow as tf

from tfcomp import metrics, testing


def test_psnr():
  a = np.zeros((4, 4, 3), np.uint8)
  b = a.copy()
  b[0, 0, 0] = 10  # MSE = 100 / 48
  assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 * 48 / 100))
  assert metrics.psnr(a, a) == float("inf")
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.psnr(a, b[:2])


@pytest.mark.parametrize("shape,noise", [((256, 256, 3), 2), ((256, 384, 3), 10),
                                         ((200, 333, 3), 25), ((170, 171, 1), 5)])
def test_ms_ssim_matches_tensorflow(shape, noise):
  rng = np.random.default_rng(noise)
  a = testing.smooth_image(*shape, seed=noise).astype(np.float64)
  b = np.clip(a + rng.normal(0, noise, shape), 0, 255)
  # TensorFlow converts to float32 inside, which costs it about 1e-6 (more near 1.0 with
  # light noise, where its variances cancel); ours runs in float64.
  theirs = float(tf.image.ssim_multiscale(a[None], b[None], 255.0)[0])
  assert metrics.ms_ssim(a, b) == pytest.approx(theirs, abs=1e-5)
  assert metrics.ms_ssim(a, a) == pytest.approx(1.0)


def test_ms_ssim_refuses_small_images():
  with pytest.raises(ValueError, match="at least 161"):
    metrics.ms_ssim(np.zeros((100, 300, 3)), np.zeros((100, 300, 3)))


def test_bd_rate_constant_rate_ratio():
  """Every test point needs 0.8x the anchor's rate at equal quality: BD-rate -20%."""
  anchor = [(1.0, 30.0), (2.0, 33.0), (4.0, 36.0), (8.0, 39.0)]
  test = [(0.8 * r, q) for r, q in anchor]
  assert metrics.bd_rate(anchor, test) == pytest.approx(-20.0, abs=1e-9)
  assert metrics.bd_rate(test, anchor) == pytest.approx(25.0, abs=1e-9)


def test_bd_rate_hand_computed_partial_overlap():
  """log(rate) linear in quality: anchor ln r = q/10, test ln r = q/10 - 0.1 + (q-30)/50
  on different quality ranges. Over the overlap [32, 36] the mean log-rate difference is
  -0.1 + (34 - 30)/50 = -0.02, so BD-rate = exp(-0.02) - 1."""
  anchor = [(np.exp(q / 10), q) for q in (28.0, 31.0, 34.0, 36.0)]
  test = [(np.exp(q / 10 - 0.1 + (q - 30) / 50), q) for q in (32.0, 35.0, 38.0, 40.0)]
  assert metrics.bd_rate(anchor, test) == pytest.approx((np.exp(-0.02) - 1) * 100, abs=1e-9)


def test_bd_rate_rejects_bad_curves():
  curve = [(1, 30), (2, 32), (3, 34), (4, 36)]
  with pytest.raises(ValueError, match="at least 4"):
    metrics.bd_rate(curve[:3], curve)
  with pytest.raises(ValueError, match="overlap"):
    metrics.bd_rate(curve, [(r, q + 20) for r, q in curve])


def test_mean_of_defined_skips_undefined_values():
  assert metrics.mean_of_defined([0.5, None, 1.0]) == pytest.approx(0.75)
  assert metrics.mean_of_defined(iter([None, None])) is None
  assert metrics.mean_of_defined([]) is None
