"""LPIPS v0.1 with the AlexNet backbone, in TensorFlow.

LPIPS is the learned perceptual distance of Zhang, Isola, Efros, Shechtman and Wang, "The
Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018: both images go
through the convolutions of an ImageNet-trained AlexNet; at each of five ReLU outputs every
pixel's feature vector is scaled to unit length, the squared difference is weighted per channel
by a learned non-negative linear head, summed over channels and averaged over pixels; the five
layers' values are summed.

tfcomp does not ship the weights. They are read from an .npz file (layout in `KEYS` and in
`MANIFEST.md` of `../shared/weights`, next to the repository), found by `weights_path`: a path
given by the caller (the tools' `--lpips_weights`), else the environment variable
`TFCOMP_LPIPS_WEIGHTS`, else `DEFAULT_PATH`. `standin_arrays` makes a small random network of
the same layout for tests that must run without them.

The network only exists for images of at least `MIN_SIDE` pixels per side: smaller inputs
leave no output pixel after the strided first convolution and the two max-pools.
"""
import os
import threading

import numpy as np
import tensorflow as tf

WEIGHTS_ENV = "TFCOMP_LPIPS_WEIGHTS"
# <repository root>/../shared/weights/...: where the development machines keep weights that
# are not part of tfcomp (see MANIFEST.md there).
DEFAULT_PATH = os.path.normpath(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared",
    "weights", "lpips-alexnet-v0.1.npz"))

# The input normalization of the reference implementation (its "ScalingLayer"), applied to
# RGB already scaled to [-1, 1]: these are ImageNet's channel mean and standard deviation
# expressed in that range.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# Added to the feature norm before dividing, as in the reference, so that an all-zero
# feature vector maps to zero instead of NaN.
EPS = 1e-10

# torchvision's AlexNet up to its fifth ReLU, as (kind, kernel, stride, zero padding). Each
# "conv" is followed by a ReLU whose output is one of the five LPIPS features. Explicit
# padding followed by VALID filtering reproduces PyTorch's symmetric padding (TensorFlow's
# SAME would pad the strided conv1 asymmetrically).
ARCHITECTURE = (
    ("conv", 11, 4, 2),
    ("pool", 3, 2, 0),
    ("conv", 5, 1, 2),
    ("pool", 3, 2, 0),
    ("conv", 3, 1, 1),
    ("conv", 3, 1, 1),
    ("conv", 3, 1, 1),
)
NUM_LAYERS = sum(kind == "conv" for kind, *_ in ARCHITECTURE)
CONV_SIZES = tuple(k for kind, k, _, _ in ARCHITECTURE if kind == "conv")
KEYS = tuple([f"conv{i + 1}_{part}" for i in range(NUM_LAYERS) for part in ("kernel", "bias")]
             + [f"lin{i}" for i in range(NUM_LAYERS)])
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
STANDIN_CHANNELS = (8, 16, 16, 16, 16)


def output_sides(side):
  """Spatial side of each layer of ARCHITECTURE for an input side (<= 0: undefined)."""
  sides = []
  for _, kernel, stride, pad in ARCHITECTURE:
    side = (side + 2 * pad - kernel) // stride + 1
    sides.append(side)
  return sides


def _min_side():
  side = 1
  while min(output_sides(side)) < 1:
    side += 1
  return side


# The smallest image height/width for which every layer has at least one output pixel: 31
# for AlexNet (conv1 must give 7 pixels so that two 3x3/2 max-pools leave one).
MIN_SIDE = _min_side()


def weights_path(path=None):
  """Resolves where the LPIPS weights are read from.

  Args:
    path: The .npz file to use. If None, the environment variable TFCOMP_LPIPS_WEIGHTS is
      used if set (and not empty), else DEFAULT_PATH.

  Returns:
    The path (as given, not made absolute).

  Raises:
    FileNotFoundError: If the file does not exist; the message names the path tried and how
      to give another.
  """
  if path is not None:
    source = "the path given"
  elif os.environ.get(WEIGHTS_ENV):
    path, source = os.environ[WEIGHTS_ENV], f"${WEIGHTS_ENV}"
  else:
    path, source = DEFAULT_PATH, "the default location"
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"LPIPS weights not found at {path!r} ({source}). Give the .npz file with the tools' "
        f"--lpips_weights flag or the environment variable {WEIGHTS_ENV}. tfcomp does not ship "
        "these weights: see MANIFEST.md of ../shared/weights (next to the repository) for the "
        "file lpips-alexnet-v0.1.npz and its layout.")
  return path


_CACHE = {}
_CACHE_LOCK = threading.Lock()


def load(path=None):
  """The LPIPS network of the weights at weights_path(path), loaded once per absolute path.

  Args:
    path: As for weights_path.

  Returns:
    An LPIPS instance, shared between calls with the same resolved file.
  """
  resolved = os.path.realpath(weights_path(path))
  with _CACHE_LOCK:
    if resolved not in _CACHE:
      _CACHE[resolved] = LPIPS.from_file(resolved)
    return _CACHE[resolved]


def unit_normalize(features, eps=EPS):
  """Scales each pixel's feature vector (last axis) to unit length, as LPIPS does.

  Computes f / (|f| + eps) like the reference. The norm's square root is taken of a value
  clamped away from zero so that its gradient stays finite where a whole feature vector is
  zero (ReLU off everywhere); the clamp (1e-30, i.e. 1e-15 on the norm) is far below eps, so
  values are unchanged.
  """
  sum_squares = tf.reduce_sum(tf.square(features), axis=-1, keepdims=True)
  return features / (tf.sqrt(tf.maximum(sum_squares, 1e-30)) + eps)


class LPIPS(tf.Module):
  """LPIPS v0.1 distance (Zhang et al., CVPR 2018) with an AlexNet-layout backbone.

  The weights are held as tf.constant, not tf.Variable: nothing here is trainable or becomes
  a weight of a Keras model that keeps a reference to the instance (as a training loss does).

  Attributes:
    channels: The channels of the five feature layers (64, 192, 384, 256, 256 for AlexNet).
  """

  def __init__(self, arrays, name="lpips"):
    """Builds the network from arrays.

    Args:
      arrays: A mapping with the keys of KEYS (an .npz file's contents): convN_kernel in HWIO
        layout with the spatial sizes of ARCHITECTURE and input channels chaining from 3,
        convN_bias of the output channels, and linN (non-negative) of layer N+1's channels.
      name: The tf.Module name.

    Raises:
      ValueError: If a key is missing or unexpected, or an array has the wrong shape, is not
        finite, or a linear head has a negative weight; the message names the key.
    """
    super().__init__(name=name)
    keys = set(arrays.keys())
    missing, extra = [k for k in KEYS if k not in keys], sorted(keys - set(KEYS))
    if missing or extra:
      raise ValueError(f"LPIPS weights: missing keys {missing}, unexpected keys {extra}; "
                       f"expected {list(KEYS)}")
    values = {}
    for key in KEYS:
      try:
        value = np.asarray(arrays[key], np.float32)
      except (TypeError, ValueError) as e:
        raise ValueError(f"LPIPS weights: {key} is not numeric: {e}") from e
      if not np.all(np.isfinite(value)):
        raise ValueError(f"LPIPS weights: {key} has non-finite values")
      values[key] = value
    channels, previous = [], 3
    for i, size in enumerate(CONV_SIZES):
      kernel, bias, lin = (values[f"conv{i + 1}_kernel"], values[f"conv{i + 1}_bias"],
                           values[f"lin{i}"])
      if kernel.ndim != 4 or kernel.shape[:3] != (size, size, previous):
        raise ValueError(f"LPIPS weights: conv{i + 1}_kernel has shape {kernel.shape}, expected "
                         f"({size}, {size}, {previous}, channels) (HWIO)")
      previous = kernel.shape[3]
      for key, array in ((f"conv{i + 1}_bias", bias), (f"lin{i}", lin)):
        if array.shape != (previous,):
          raise ValueError(f"LPIPS weights: {key} has shape {array.shape}, expected "
                           f"({previous},) to match conv{i + 1}_kernel")
      # LPIPS heads are non-negative by construction (clamped in training), which makes the
      # distance non-negative; a negative weight means a wrong or corrupted file.
      if np.any(lin < 0):
        raise ValueError(f"LPIPS weights: lin{i} has negative weights (min {lin.min()})")
      channels.append(previous)
    self.channels = tuple(channels)
    # init_scope: eager constants even if the first load() happens while a tf.function is
    # being traced, so that the (cached) instance never holds a graph tensor.
    with tf.init_scope():
      self._kernels = [tf.constant(values[f"conv{i + 1}_kernel"]) for i in range(NUM_LAYERS)]
      self._biases = [tf.constant(values[f"conv{i + 1}_bias"]) for i in range(NUM_LAYERS)]
      self._lins = [tf.constant(values[f"lin{i}"]) for i in range(NUM_LAYERS)]
      self._shift = tf.constant(SHIFT, tf.float32)
      self._scale = tf.constant(SCALE, tf.float32)

  @classmethod
  def from_file(cls, path):
    """Reads the network from an .npz file with the keys of KEYS."""
    with np.load(os.fspath(path)) as npz:
      return cls({key: npz[key] for key in npz.files})

  @staticmethod
  def _check_images(x, name):
    """Static checks (all that can fail eagerly); returns x as float32."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank is not None and x.shape.rank != 4:
      raise ValueError(f"{name} must be [batch, height, width, 3], got shape {x.shape}")
    if x.shape.rank == 4:
      if x.shape[3] is not None and x.shape[3] != 3:
        raise ValueError(f"{name} must have 3 (RGB) channels, got shape {x.shape}")
      for side in x.shape[1:3]:
        if side is not None and side < MIN_SIDE:
          raise ValueError(f"LPIPS needs images of at least {MIN_SIDE} pixels per side, "
                           f"{name} has shape {x.shape}")
    return tf.cast(x, tf.float32)

  def features(self, x):
    """The five ReLU feature maps of the backbone (before unit normalization).

    Args:
      x: Float tensor [B, H, W, 3], RGB in 0..255, H and W at least MIN_SIDE.

    Returns:
      A list of five float32 tensors [B, h_i, w_i, channels[i]].
    """
    x = self._check_images(x, "x")
    # The reference takes RGB in [-1, 1], then normalizes with its ScalingLayer.
    x = (x / 127.5 - 1.0 - self._shift) / self._scale
    features, layer = [], 0
    for kind, kernel, stride, pad in ARCHITECTURE:
      if kind == "pool":
        x = tf.nn.max_pool2d(x, kernel, stride, "VALID")
        continue
      if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
      x = tf.nn.conv2d(x, self._kernels[layer], stride, "VALID")
      x = tf.nn.relu(tf.nn.bias_add(x, self._biases[layer]))
      features.append(x)
      layer += 1
    return features

  def __call__(self, x, y):
    """LPIPS distances between corresponding images of x and y.

    Differentiable, and usable in tf.function with unknown height and width.

    Args:
      x: Float tensor [B, H, W, 3], RGB in 0..255.
      y: Float tensor of the same shape.

    Returns:
      Float32 tensor [B]: the distances (0 for identical images).

    Raises:
      ValueError: If a shape is wrong, or a side is below MIN_SIDE, when known statically
        (always, when executing eagerly). With sizes only known at run time, the same
        conditions fail as tf.errors.InvalidArgumentError instead.
    """
    x, y = self._check_images(x, "x"), self._check_images(y, "y")
    if not x.shape.is_compatible_with(y.shape):
      raise ValueError(f"x and y shapes differ: {x.shape} vs {y.shape}")
    if not (x.shape.is_fully_defined() and y.shape.is_fully_defined()):
      # Dynamic shapes (inside tf.function): the static checks above could not see them.
      # Auto control dependencies make these asserts run before the result is used.
      shape_x = tf.shape(x)
      tf.debugging.assert_equal(shape_x, tf.shape(y), message="LPIPS: x and y shapes differ")
      tf.debugging.assert_greater_equal(
          tf.reduce_min(shape_x[1:3]), MIN_SIDE,
          message=f"LPIPS needs images of at least {MIN_SIDE} pixels per side")
    batch = tf.shape(x)[0]
    # One pass over both images: larger convolutions make better use of the CPU.
    features = self.features(tf.concat([x, y], 0))
    distance = tf.zeros([batch], tf.float32)
    for f, lin in zip(features, self._lins):
      f = unit_normalize(f)
      difference = tf.square(f[:batch] - f[batch:])
      # Channel weighting by the linear head, then the spatial mean (the reference's
      # spatial_average of its 1x1 "lin" convolution).
      distance += tf.reduce_mean(tf.reduce_sum(difference * lin, axis=-1), axis=[1, 2])
    return distance


def standin_arrays(seed=0, channels=STANDIN_CHANNELS):
  """Weights of a small random network with the layout of the real ones, for tests.

  Args:
    seed: Seed of the NumPy generator.
    channels: The five layers' channel counts.

  Returns:
    A dict with the keys of KEYS: He-scaled normal kernels, small biases, and uniform
    non-negative linear heads (as LPIPS's are).
  """
  if len(channels) != NUM_LAYERS or any(int(c) < 1 for c in channels):
    raise ValueError(f"channels must be {NUM_LAYERS} positive counts, got {channels}")
  rng = np.random.default_rng(seed)
  arrays, previous = {}, 3
  for i, (size, out) in enumerate(zip(CONV_SIZES, channels)):
    std = np.sqrt(2.0 / (size * size * previous))
    arrays[f"conv{i + 1}_kernel"] = rng.normal(0, std, (size, size, previous, out))
    arrays[f"conv{i + 1}_bias"] = rng.normal(0, 0.05, (out,))
    arrays[f"lin{i}"] = rng.uniform(0, 1, (out,)) / out
    previous = out
  return {key: arrays[key].astype(np.float32) for key in KEYS}


def save_standin(path, seed=0):
  """Writes standin_arrays(seed) to path as an .npz file.

  Returns:
    The path written: like np.savez, ".npz" is appended to a file name without it.
  """
  if isinstance(path, (str, os.PathLike)):
    path = os.fspath(path)
    if not path.endswith(".npz"):
      path += ".npz"
  np.savez(path, **standin_arrays(seed))
  return path
