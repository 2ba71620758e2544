"""Image quality and rate-distortion metrics: PSNR, MS-SSIM and Bjøntegaard delta rate.

MS-SSIM follows Wang, Simoncelli and Bovik (2003), with the conventions of
`tf.image.ssim_multiscale` (11x11 Gaussian, sigma 1.5, valid filtering, five scales with
the standard weights, symmetric padding before each 2x2 average pool, per-channel values
averaged), in NumPy/SciPy so that it runs anywhere and on any batch shape. A test checks
it against TensorFlow's.
"""
import numpy as np
from scipy import ndimage

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5


def psnr(a, b, max_value=255.0):
  """PSNR in dB over all samples of two images of one shape (inf if identical)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  mse = np.mean((a - b) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(max_value ** 2 / mse))


def gaussian():
  """The normalized 1-D Gaussian filter of FILTER_SIZE taps, sigma FILTER_SIGMA."""
  x = np.arange(FILTER_SIZE) - (FILTER_SIZE - 1) / 2
  g = np.exp(-x ** 2 / (2 * FILTER_SIGMA ** 2))
  return g / g.sum()


def _filter(x):
  """Separable Gaussian over axes 0 and 1, keeping only fully covered ('valid') outputs."""
  g, r = gaussian(), FILTER_SIZE // 2
  x = ndimage.correlate1d(x, g, axis=0, mode="constant")
  x = ndimage.correlate1d(x, g, axis=1, mode="constant")
  return x[r:x.shape[0] - r, r:x.shape[1] - r]


def _ssim_and_cs(x, y, max_value):
  c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
  mu_x, mu_y = _filter(x), _filter(y)
  sigma_xx = _filter(x * x) - mu_x ** 2
  sigma_yy = _filter(y * y) - mu_y ** 2
  sigma_xy = _filter(x * y) - mu_x * mu_y
  luminance = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
  cs = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
  return (luminance * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _downsample(x):
  h, w = x.shape[:2]
  x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="symmetric")
  return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def min_ms_ssim_side():
  """Smallest height/width MS-SSIM accepts: the filter must fit at the coarsest scale."""
  return (FILTER_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def mean_of_defined(values):
  """Mean of the values that are not None (a measure undefined for some images, such as
  MS-SSIM below min_ms_ssim_side()); None if none is defined."""
  defined = [v for v in values if v is not None]
  return float(np.mean(defined)) if defined else None


def ms_ssim(a, b, max_value=255.0):
  """MS-SSIM of two [H, W, C] (or [H, W]) images, averaged over channels."""
  x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if x.shape != y.shape:
    raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
  if x.ndim == 2:
    x, y = x[..., None], y[..., None]
  if min(x.shape[:2]) < min_ms_ssim_side():
    raise ValueError(f"MS-SSIM needs images of at least {min_ms_ssim_side()} pixels per "
                     f"side, got {x.shape[0]}x{x.shape[1]}")
  values = []
  for scale in range(len(MS_SSIM_WEIGHTS)):
    ssim, cs = _ssim_and_cs(x, y, max_value)
    values.append(np.maximum(cs if scale < len(MS_SSIM_WEIGHTS) - 1 else ssim, 0))
    x, y = _downsample(x), _downsample(y)
  per_channel = np.prod([v ** w for v, w in zip(values, MS_SSIM_WEIGHTS)], axis=0)
  return float(per_channel.mean())


def bd_rate(anchor, test):
  """Bjøntegaard delta rate (%) of `test` against `anchor`: negative means fewer bits.

  Each curve is a sequence of (rate, quality) points, for example (bpp, PSNR). As in
  VCEG-M33: log-rate is fitted as a cubic polynomial of quality, and the mean difference
  is taken over the overlapping quality interval. Raises ValueError if the curves have
  fewer than 4 points or do not overlap.
  """
  curves = []
  for name, points in (("anchor", anchor), ("test", test)):
    points = sorted((float(q), float(r)) for r, q in points)
    if len(points) < 4:
      raise ValueError(f"{name} curve needs at least 4 points, got {len(points)}")
    q, r = np.array(points).T
    if np.any(r <= 0):
      raise ValueError(f"{name} curve has a non-positive rate")
    curves.append((q, np.log(r)))
  (q_a, log_a), (q_t, log_t) = curves
  lo, hi = max(q_a.min(), q_t.min()), min(q_a.max(), q_t.max())
  if lo >= hi:
    raise ValueError("curves do not overlap in quality")
  integrals = []
  for q, log_r in curves:
    poly = np.polyint(np.polyfit(q, log_r, 3))
    integrals.append((np.polyval(poly, hi) - np.polyval(poly, lo)) / (hi - lo))
  return float((np.exp(integrals[1] - integrals[0]) - 1) * 100)
