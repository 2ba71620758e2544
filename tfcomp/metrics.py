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


def _as_rgb(image, name):
  """An [H, W, 3] float32 array from an [H, W, 3], [H, W, 1] or [H, W] image (grayscale is
  replicated to 3 channels, as LPIPS's backbone takes RGB)."""
  x = np.asarray(image, np.float32)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[2] not in (1, 3):
    raise ValueError(f"{name} must be [H, W, 3], [H, W, 1] or [H, W], got shape {x.shape}")
  return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x


def _check_lpips_model(model):
  # Imported here: tfcomp.metrics itself stays importable without TensorFlow.
  from tfcomp import lpips as lpips_lib  # pylint: disable=import-outside-toplevel
  if not isinstance(model, lpips_lib.LPIPS):
    raise TypeError(f"model must be a tfcomp.lpips.LPIPS (see tfcomp.lpips.load), got "
                    f"{type(model).__name__}")
  return lpips_lib


def lpips(a, b, model):
  """LPIPS distance (Zhang et al., CVPR 2018) of two images, with a tfcomp.lpips.LPIPS model.

  Args:
    a: Image [H, W, 3] (or grayscale [H, W] / [H, W, 1], replicated to RGB), uint8 or float
      in 0..255.
    b: Image of the same shape.
    model: A tfcomp.lpips.LPIPS, for example tfcomp.lpips.load().

  Returns:
    The distance as a float (0 for identical images; lower is more similar), or None if the
    smaller side is below tfcomp.lpips.MIN_SIDE, where the network is not defined (as
    ms_ssim is not below min_ms_ssim_side()).
  """
  lpips_lib = _check_lpips_model(model)
  x, y = _as_rgb(a, "a"), _as_rgb(b, "b")
  if x.shape != y.shape:
    raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
  if min(x.shape[:2]) < lpips_lib.MIN_SIDE:
    return None
  return float(model(x[None], y[None])[0])


def _sqrtm_trace_eigh(sigma1, sigma2):
  """tr((sigma1 sigma2)^(1/2)) for symmetric PSD matrices, via the symmetric
  sigma1^(1/2) sigma2 sigma1^(1/2), which has the same eigenvalues as sigma1 sigma2."""
  w, v = np.linalg.eigh(sigma1)
  root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ sigma2 @ root), 0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

  |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), computed as in common FID
  code (Heusel et al., NeurIPS 2017; pytorch-fid): scipy.linalg.sqrtm of the product, real
  part. Covariances from fewer samples than dimensions are singular, and then sqrtm can
  return a finite but meaningless result (common FID code only checks for non-finite ones),
  so its own error estimate is checked too: if the square root is not finite or not accurate,
  eps is added to both diagonals (and kept in the traces, so that equal inputs still give 0).
  Should that fail as well, the trace of the square root is taken from the eigenvalues of
  sigma1^(1/2) sigma2 sigma1^(1/2) instead. A result below 0 (rounding; the true value is
  non-negative) is returned as 0.

  Args:
    mu1: Mean [D] of the first Gaussian.
    sigma1: Covariance [D, D] of the first Gaussian.
    mu2: Mean [D] of the second Gaussian.
    sigma2: Covariance [D, D] of the second Gaussian.
    eps: Diagonal offset for near-singular covariances.

  Returns:
    The distance as a float.
  """
  # Imported here like the rest of SciPy's linear algebra it pulls in: only this needs it.
  from scipy import linalg  # pylint: disable=import-outside-toplevel
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"inconsistent shapes: mu {mu1.shape}, {mu2.shape}; sigma {sigma1.shape}, "
                     f"{sigma2.shape}")
  # sqrtm's estimate of |X^2 - A|_F / |A|_F: about 1e-13 when it works, huge when it does not.
  tolerance = 1e-6
  covmean, error = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
  if not (np.all(np.isfinite(covmean)) and error < tolerance):
    offset = np.eye(sigma1.shape[0]) * eps
    sigma1, sigma2 = sigma1 + offset, sigma2 + offset
    covmean, error = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
  if np.all(np.isfinite(covmean)) and error < tolerance:
    trace_covmean = float(np.trace(covmean).real)
  else:
    trace_covmean = _sqrtm_trace_eigh(sigma1, sigma2)
  diff = mu1 - mu2
  distance = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean
  return max(float(distance), 0.0)


def _patch_corners(height, width, patch):
  """Top-left corners of non-overlapping patch x patch crops on the image grid, then on the
  grid shifted by patch // 2 in both directions (HiFiC's FID/256 protocol)."""
  corners = []
  for offset in (0, patch // 2):
    for top in range(offset, height - patch + 1, patch):
      for left in range(offset, width - patch + 1, patch):
        corners.append((top, left))
  return corners


def patch_fd(reals, fakes, model, patch=256, batch_size=8):
  """Fréchet distance on LPIPS-AlexNet features of patch x patch crops of image pairs.

  The protocol of FID/256 in Mentzer et al., "High-Fidelity Generative Image Compression"
  (HiFiC), NeurIPS 2020: every image is cut into non-overlapping patch x patch crops, and
  again with the grid shifted by patch/2 in both directions; images smaller than a patch are
  skipped. It is not FID, which needs Inception weights (not available here): each patch is
  described by the LPIPS backbone of `model` (Zhang et al., CVPR 2018) instead, as the spatial
  mean of each of its five feature maps after LPIPS's unit normalization, concatenated (64 +
  192 + 384 + 256 + 256 = 1152 dimensions for AlexNet). Gaussians are fitted to the features
  of the real and of the reconstructed patches and their Fréchet distance is returned (see
  frechet_distance). Values are only comparable for the same weights, patch size and images,
  and like FID it is biased upward for few patches (it wants many more patches than
  dimensions).

  Args:
    reals: Sequence of original images [H, W, 3] (grayscale replicated), 0..255.
    fakes: Sequence of their reconstructions, each the shape of its original.
    model: A tfcomp.lpips.LPIPS, for example tfcomp.lpips.load().
    patch: Patch side in pixels, at least tfcomp.lpips.MIN_SIDE.
    batch_size: Patches per network evaluation (memory against speed).

  Returns:
    (distance, patches): the distance as a float, and the number of patches of each set.
    (None, 0) if no image holds a patch; (None, 1) for a single patch, whose covariance is
    undefined.
  """
  lpips_lib = _check_lpips_model(model)
  if (isinstance(patch, bool) or not isinstance(patch, (int, np.integer))
      or patch < lpips_lib.MIN_SIDE):
    raise ValueError(f"patch must be an integer of at least {lpips_lib.MIN_SIDE}, got {patch!r}")
  if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
      or batch_size < 1):
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  reals, fakes = list(reals), list(fakes)
  if len(reals) != len(fakes):
    raise ValueError(f"{len(reals)} real images but {len(fakes)} reconstructions")
  patch = int(patch)

  def describe(batch):
    # Spatial mean of each unit-normalized feature map: one vector per patch and layer.
    return np.concatenate([
        lpips_lib.unit_normalize(f).numpy().mean(axis=(1, 2), dtype=np.float64)
        for f in model.features(np.stack(batch))], axis=1)

  features = ([], [])
  pending = ([], [])
  for index, (real, fake) in enumerate(zip(reals, fakes)):
    x, y = _as_rgb(real, f"reals[{index}]"), _as_rgb(fake, f"fakes[{index}]")
    if x.shape != y.shape:
      raise ValueError(f"reals[{index}] has shape {x.shape} but fakes[{index}] {y.shape}")
    for top, left in _patch_corners(x.shape[0], x.shape[1], patch):
      for image, queue in zip((x, y), pending):
        queue.append(image[top:top + patch, left:left + patch])
      if len(pending[0]) == batch_size:
        for queue, out in zip(pending, features):
          out.append(describe(queue))
          queue.clear()
  for queue, out in zip(pending, features):
    if queue:
      out.append(describe(queue))
  if not features[0]:
    return None, 0
  real_features, fake_features = (np.concatenate(f) for f in features)
  patches = len(real_features)
  if patches < 2:
    return None, patches
  distance = frechet_distance(real_features.mean(0), np.cov(real_features, rowvar=False),
                              fake_features.mean(0), np.cov(fake_features, rowvar=False))
  return distance, patches
