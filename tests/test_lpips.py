"""LPIPS (Zhang et al., CVPR 2018) and the patch Fréchet distance on its features.

The reference values need the real weights in ../shared/weights (not part of tfcomp) and are
skipped without them; everything else runs on the small random stand-in network.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import linalg, ndimage

from tfcomp import lpips, metrics, testing

CHECK_DIR = os.path.join(os.path.dirname(lpips.DEFAULT_PATH), "lpips-check")
needs_weights = pytest.mark.skipif(
    not os.path.isfile(lpips.DEFAULT_PATH),
    reason=f"LPIPS weights not at {lpips.DEFAULT_PATH} (../shared of the repository); tfcomp "
    "does not ship them")


@pytest.fixture(scope="module")
def standin():
  return lpips.LPIPS(lpips.standin_arrays(seed=0))


def _pair(shape=(2, 64, 80, 3), seed=0, noise=20.0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 255, shape).astype(np.float32)
  return x, np.clip(x + rng.normal(0, noise, shape), 0, 255).astype(np.float32)


def _load_check(name):
  return np.asarray(Image.open(os.path.join(CHECK_DIR, name + ".png")).convert("RGB"))


@needs_weights
def test_reference_values():
  """The values of MANIFEST.md, computed by the reference implementation."""
  model = lpips.load()
  assert model.channels == lpips.ALEXNET_CHANNELS
  ref = _load_check("ex_ref")
  assert metrics.lpips(ref, _load_check("ex_p0"), model) == pytest.approx(0.7796, abs=1e-3)
  assert metrics.lpips(ref, _load_check("ex_p1"), model) == pytest.approx(0.0913, abs=1e-3)
  assert metrics.lpips(ref, ref, model) == 0.0
  assert lpips.load(lpips.DEFAULT_PATH) is model  # cached per resolved path


def test_identical_and_symmetric(standin):
  x, y = _pair()
  np.testing.assert_array_equal(standin(x, x).numpy(), [0.0, 0.0])
  d_xy, d_yx = standin(x, y).numpy(), standin(y, x).numpy()
  assert d_xy.shape == (2,) and d_xy.dtype == np.float32 and np.all(d_xy > 0)
  np.testing.assert_allclose(d_xy, d_yx, rtol=1e-5)
  # Each batch element is independent of the others.
  np.testing.assert_allclose(standin(x[1:], y[1:]).numpy(), d_xy[1:], rtol=1e-5)


def test_gradient_finite_and_nonzero(standin):
  x, y = _pair(shape=(1, 48, 48, 3))
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    distance = tf.reduce_sum(standin(x, y))
  grad = tape.gradient(distance, x).numpy()
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_tf_function_with_unknown_sizes(standin):
  spec = tf.TensorSpec([None, None, None, 3], tf.float32)
  graph = tf.function(standin, input_signature=[spec, spec])
  for shape in ((1, lpips.MIN_SIDE, 40, 3), (2, 64, 48, 3)):
    x, y = _pair(shape)
    np.testing.assert_allclose(graph(x, y).numpy(), standin(x, y).numpy(), rtol=1e-4)
  # Sizes unknown at tracing fail at run time instead of with ValueError.
  x, y = _pair((1, lpips.MIN_SIDE - 1, 40, 3))
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least"):
    graph(x, y)


def test_min_side(standin):
  assert min(lpips.output_sides(lpips.MIN_SIDE)) == 1
  assert min(lpips.output_sides(lpips.MIN_SIDE - 1)) < 1
  x, y = _pair((1, lpips.MIN_SIDE, lpips.MIN_SIDE, 3))
  assert [f.shape[1] for f in standin.features(x)] == [7, 3, 1, 1, 1]
  assert np.isfinite(standin(x, y).numpy()).all()
  for shape in ((1, lpips.MIN_SIDE - 1, 50, 3), (1, 50, lpips.MIN_SIDE - 1, 3)):
    x, y = _pair(shape)
    with pytest.raises(ValueError, match=f"at least {lpips.MIN_SIDE} pixels"):
      standin(x, y)
  with pytest.raises(ValueError, match="shapes differ"):
    standin(np.zeros((1, 40, 40, 3)), np.zeros((1, 40, 41, 3)))
  with pytest.raises(ValueError, match="3 .RGB. channels"):
    standin(np.zeros((1, 40, 40, 1)), np.zeros((1, 40, 40, 1)))


def test_holds_no_variables(standin):
  """A Keras model that keeps the loss network gains no weights from it."""
  class Holder(tf.keras.Model):

    def __init__(self, loss_network):
      super().__init__()
      self.loss_network = loss_network
      self.dense = tf.keras.layers.Dense(1)

  holder = Holder(standin)
  holder.dense.build((None, 2))
  assert not standin.variables
  assert len(holder.weights) == 2


def test_weights_path_missing(monkeypatch, tmp_path):
  missing = str(tmp_path / "missing.npz")
  monkeypatch.setenv(lpips.WEIGHTS_ENV, missing)
  with pytest.raises(FileNotFoundError) as info:
    lpips.weights_path()
  message = str(info.value)
  for part in (missing, "--lpips_weights", lpips.WEIGHTS_ENV, "does not ship", "MANIFEST"):
    assert part in message
  with pytest.raises(FileNotFoundError, match="path given"):
    lpips.load(str(tmp_path / "other.npz"))


def test_load_standin_from_env(monkeypatch, tmp_path):
  path = lpips.save_standin(str(tmp_path / "standin"), seed=3)
  assert path.endswith(".npz") and os.path.isfile(path)
  monkeypatch.setenv(lpips.WEIGHTS_ENV, path)
  assert lpips.weights_path() == path
  model = lpips.load()
  assert model.channels == lpips.STANDIN_CHANNELS
  assert lpips.load(path) is model
  x, y = _pair((1, 40, 40, 3))
  expected = lpips.LPIPS(lpips.standin_arrays(seed=3))(x, y).numpy()
  np.testing.assert_allclose(model(x, y).numpy(), expected, rtol=1e-6)


def test_validates_arrays():
  arrays = lpips.standin_arrays()
  with pytest.raises(ValueError, match="missing keys \\['lin4'\\]"):
    lpips.LPIPS({k: v for k, v in arrays.items() if k != "lin4"})
  with pytest.raises(ValueError, match="conv3_kernel has shape"):
    lpips.LPIPS(dict(arrays, conv3_kernel=arrays["conv3_kernel"][:, :, :5]))
  with pytest.raises(ValueError, match="conv2_bias has shape"):
    lpips.LPIPS(dict(arrays, conv2_bias=arrays["conv2_bias"][:3]))
  with pytest.raises(ValueError, match="lin1 has negative"):
    lpips.LPIPS(dict(arrays, lin1=-arrays["lin1"]))


def test_metrics_lpips(standin):
  a = testing.smooth_image(48, 64, seed=1)
  b = testing.smooth_image(48, 64, seed=2)
  value = metrics.lpips(a, b, standin)
  assert isinstance(value, float) and value > 0
  assert metrics.lpips(a, a, standin) == 0.0
  assert metrics.lpips(a[:lpips.MIN_SIDE - 1], b[:lpips.MIN_SIDE - 1], standin) is None
  gray = testing.smooth_image(48, 64, channels=1, seed=1)
  assert metrics.lpips(gray, gray[..., 0] // 2, standin) == pytest.approx(
      metrics.lpips(np.repeat(gray, 3, 2), np.repeat(gray // 2, 3, 2), standin), rel=1e-6)
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.lpips(a, b[:40], standin)
  with pytest.raises(TypeError, match="tfcomp.lpips.LPIPS"):
    metrics.lpips(a, b, None)


def test_patch_fd(standin):
  reals = [testing.smooth_image(96, 128, seed=s) for s in range(6)]
  rng = np.random.default_rng(0)
  noised = [np.clip(r + rng.normal(0, 2, r.shape), 0, 255) for r in reals]
  blurred = [ndimage.gaussian_filter(r.astype(np.float32), (2.5, 2.5, 0)) for r in reals]
  same, patches = metrics.patch_fd(reals, reals, standin, patch=32)
  # 3x4 crops on the grid, 2x3 on the grid shifted by 16, for each image.
  assert patches == 6 * (12 + 6)
  assert same == pytest.approx(0.0, abs=1e-6)
  d_noise, _ = metrics.patch_fd(reals, noised, standin, patch=32)
  d_blur, _ = metrics.patch_fd(reals, blurred, standin, patch=32, batch_size=5)
  assert 0 < d_noise < d_blur
  # Images smaller than a patch are skipped; with none left there is no distance.
  assert metrics.patch_fd(reals, reals, standin) == (None, 0)
  assert metrics.patch_fd([], [], standin) == (None, 0)
  with pytest.raises(ValueError, match="patch must be an integer of at least"):
    metrics.patch_fd(reals, reals, standin, patch=16)
  with pytest.raises(ValueError, match="6 real images but 5"):
    metrics.patch_fd(reals, reals[:5], standin, patch=32)


def test_frechet_distance():
  rng = np.random.default_rng(0)
  # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
  # Fewer samples than dimensions (as 192 patches of Kodak against 1152 features): singular
  # covariances, on which sqrtm alone returns finite nonsense.
  rng = np.random.default_rng(0)
  basis = rng.normal(0, 0.02, (400, 30))
  x, y = (rng.normal(size=(30, 30)) @ basis.T for _ in range(2))
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  assert linalg.sqrtm(s1 @ s2, disp=False)[1] > 1  # the case this is about
  assert metrics.frechet_distance(x.mean(0), s1, x.mean(0), s1) == pytest.approx(0, abs=1e-6)
  distance = metrics.frechet_distance(x.mean(0), s1, y.mean(0), s2)
  exact = (np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2)
           - 2 * metrics._sqrtm_trace_eigh(s1, s2))  # pylint: disable=protected-access
  assert distance == pytest.approx(exact, rel=1e-3)


@needs_weights
def test_patch_features_dimension():
  """1152 = 64 + 192 + 384 + 256 + 256 features per patch for AlexNet."""
  model = lpips.load()
  assert sum(model.channels) == 1152
  features = model.features(np.zeros((1, 256, 256, 3), np.float32))
  assert [f.shape[1:] for f in features] == [(63, 63, 64), (31, 31, 192), (15, 15, 384),
                                            (15, 15, 256), (15, 15, 256)]
