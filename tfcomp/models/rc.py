"""RC: lossless coding as a lossy base layer plus a learned residual model.

Mentzer, Van Gool, Tschannen, "Learning Better Lossless Compression Using Lossy
Compression", CVPR 2020.

    x --HEVC intra at QP (tfcomp.base_layer)--> base bytes --decode--> x_l
                                                                       |
    x_l --[space_to_depth u]--head--residual body--atrous classifier--[depth_to_space u]
        --> p(x | x_l): a discretized logistic mixture per pixel, RGB channel-autoregressive,
            means offset from x_l, log-scales shifted per channel by tau
    x --mixture coder (tfcomp.ops)--> residual stream

The residual r = x - x_l is coded as x under a mixture centred on x_l, which is the same
distribution over the values r can take given the base. The paper's network works at
full resolution (u = 1); the small configs see x_l folded into u x u blocks, so most of
their work is at 1/u^2 of the pixels. Decoding is one network pass: no pixel waits for
another, only each pixel's channels (G given R, B given R and G) follow one another,
inside the coder.

tau (the paper's per-image scale factors, fitted at encode time): per channel, the
log-scales of every component move by tau_c = k_c / TAU_STEPS, k_c an integer in
[-TAU_MAX, TAU_MAX] chosen to minimize the estimated bits and stored in the residual
stream's first bytes (tfcomp.rc_streams). It is fitted where the coder does not adapt
(effort 1): there it saves 0.4% (4 Kodak images, rc-small at step 1,750), while on top of
the coder's online adaptation (effort 2, whose scale correction works per context rather
than per channel) it saved 0.015%, for 0.35 s of encoding; so at effort 2, tau = 0.
"""
import numpy as np
import tensorflow as tf

from tfcomp import base_layer
from tfcomp.entropy import (DiscretizedLogisticMixture, first_channels, initial_params,
                            num_params, split_params)
from tfcomp.models import layers
from tfcomp.rc_streams import TAU_MAX, TAU_STEPS, pack_residual, unpack_residual

RGB_LEVELS = 256
# About one level of logistic scale: the residual of a base at QP 12..14 has a standard
# deviation of 1.5 to 3 levels.
INITIAL_LOG_SCALE = -4.5
_TAU_SEARCH = (8, 4, 2, 1)  # coarse-to-fine steps of the search over k
# tau is fitted on every 4th row: three numbers need no more, and the nine evaluations of
# the whole tile's bits would cost more than its network (1.4 s against 1.3 s, kodim01).
_TAU_ROWS = 4


# The statistics the QP classifier reads (qp_features), in its weights' row order.
QP_FEATURES = ("gradient Y", "gradient Cb", "gradient Cr", "laplacian Y", "gradient Y/2",
               "std Y", "flat Y")


def qp_features(image):
  """log2 statistics of uint8 `image` [h, w, 3] that say how much detail HEVC must keep:
  mean absolute gradients of Y, Cb, Cr (forward_ycbcr), of Y's Laplacian and of Y at half
  resolution, Y's standard deviation, and the share of pixels with no gradient."""
  ycc = base_layer.forward_ycbcr(np.asarray(image, np.uint8)).astype(np.float64)

  def gradient(plane):
    dx = np.abs(np.diff(plane, axis=1)).mean() if plane.shape[1] > 1 else 0.0
    dy = np.abs(np.diff(plane, axis=0)).mean() if plane.shape[0] > 1 else 0.0
    return (dx + dy) / 2

  y = ycc[..., 0]
  padded = np.pad(y, 1, mode="edge")
  laplacian = np.abs(4 * y - padded[:-2, 1:-1] - padded[2:, 1:-1] - padded[1:-1, :-2] -
                     padded[1:-1, 2:]).mean()
  h2, w2 = max(1, y.shape[0] // 2), max(1, y.shape[1] // 2)
  half = y[:2 * h2, :2 * w2].reshape(h2, min(2, y.shape[0]), w2, min(2, y.shape[1]))
  flat = np.mean((np.abs(np.diff(y, axis=1)) == 0)) if y.shape[1] > 1 else 1.0
  stats = [gradient(ycc[..., c]) for c in range(3)] + [
      laplacian, gradient(half.mean(axis=(1, 3))), y.std()]
  return np.array([np.log2(1 + v) for v in stats] + [flat])


class RC(tf.keras.Model):
  """RC's residual model around a lossy base layer (see the module docstring).

  Args:
    num_features: channels of every feature map (the paper: 128).
    num_blocks: residual blocks of the body (the paper: 16).
    num_components: K, logistics per mixture (the paper: 5).
    kernel_size: of the residual blocks and the classifier.
    atrous_rates: dilations of the classifier's parallel convolutions.
    unshuffle: u, the block side x_l is folded into before the network (1: full
      resolution, as the paper); images are padded to multiples of u.
    base_codec: the base layer's codec (tfcomp.base_layer.BASE_CODECS).
    qp: the base layer's quantizer when none is asked for and no classifier is fitted.
    train_qps: the quantizers of the training bases, one drawn per crop (the paper:
      12, 13, 14).
    qp_choices: the quantizers the QP classifier picks from (the paper: 11 to 17).
    qp_classifier: None (code at `qp`), or the classifier's fitted weights
      [len(QP_FEATURES) + 1][len(qp_choices)]: a linear rule on image statistics
      (`qp_features`), fitted by tools/fit_qp.py to the QPs that code each training image
      smallest. It decides only what the encoder tries, never a probability, and the file
      records the QP, so it needs no exact arithmetic; it is small enough to be plain data.
  """

  lossless = True  # which codec (tfcomp.codecs.lossless / lossy) carries it
  adaptive_coding = True  # compress/decompress take the coder's `adaptation` flags
  # Its base layer codes through libheif in Python, which no tf.function can hold: it
  # codes in-process only, with no SavedModel (tools/export.py).
  graph_coding = False
  num_streams = 2  # the base layer, then the residual
  stream_names = ("base", "residual")  # their names in tools/bench.py's split

  def __init__(self, num_features=128, num_blocks=16, num_components=5, kernel_size=3,
               atrous_rates=(1, 2, 4), unshuffle=1, base_codec=base_layer.HEVC, qp=13,
               train_qps=(12, 13, 14), qp_choices=tuple(range(11, 18)), qp_classifier=None,
               **kwargs):
    super().__init__(**kwargs)
    for arg, value in (("num_features", num_features), ("num_blocks", num_blocks + 1),
                       ("num_components", num_components), ("unshuffle", unshuffle)):
      if value < 1:
        raise ValueError(f"{arg} must be positive, got {value}")
    if base_codec not in base_layer.BASE_CODECS:
      raise ValueError(f"base_codec must be one of {base_layer.BASE_CODECS}, got "
                       f"{base_codec!r}")
    train_qps = tuple(int(q) for q in train_qps)
    qp_choices = tuple(int(q) for q in qp_choices)
    for q in (qp, *train_qps, *qp_choices):
      if not base_layer.QP_MIN <= int(q) <= base_layer.QP_MAX:
        raise ValueError(f"QPs must be in [{base_layer.QP_MIN}, {base_layer.QP_MAX}], "
                         f"got {q}")
    if not train_qps or not qp_choices:
      raise ValueError(f"train_qps and qp_choices must name QPs, got {train_qps} and "
                       f"{qp_choices}")
    if qp_classifier is not None:
      qp_classifier = np.asarray(qp_classifier, np.float64)
      expected = (len(QP_FEATURES) + 1, len(qp_choices))
      if qp_classifier.shape != expected or not np.all(np.isfinite(qp_classifier)):
        raise ValueError(f"qp_classifier must be finite weights of shape {expected}, got "
                         f"shape {qp_classifier.shape}")
    self.num_features = int(num_features)
    self.num_blocks = int(num_blocks)
    self.num_components = int(num_components)
    self.kernel_size = int(kernel_size)
    self.atrous_rates = tuple(int(r) for r in atrous_rates)
    self.unshuffle = int(unshuffle)
    self.base_codec = base_codec
    self.qp = int(qp)
    self.train_qps = train_qps
    self.qp_choices = qp_choices
    self.qp_classifier = qp_classifier

    self.mixture = DiscretizedLogisticMixture(RGB_LEVELS, -1.0, 1.0)
    u2 = self.unshuffle ** 2
    self.head = layers.conv(num_features, kernel_size, name="head", exact=True)
    self.body = layers.ResidualBody(num_features, num_blocks, kernel_size, exact=True,
                                    name="body")
    # Starts as the base itself (means offset 0) with one broad mixture everywhere: the
    # zero kernel keeps that prediction until the features have learnt better (SReC's
    # start, for a prediction that is already good).
    self.classifier = layers.AtrousProbabilityClassifier(
        num_features, u2 * num_params(3, num_components), self.atrous_rates, kernel_size,
        initial_output=initial_params(3, num_components, INITIAL_LOG_SCALE) * u2,
        exact=True, name="classifier")
    # No AutoGraph: no data-dependent Python control flow (see SReC).
    self._step = tf.function(self._step_impl, autograph=False, reduce_retracing=True)
    # XLA fuses the mixture's elementwise ops (see L3C).
    self._bits = tf.function(self._bits_impl, jit_compile=True, reduce_retracing=True)

  def get_config(self):
    return {"num_features": self.num_features, "num_blocks": self.num_blocks,
            "num_components": self.num_components, "kernel_size": self.kernel_size,
            "atrous_rates": self.atrous_rates, "unshuffle": self.unshuffle,
            "base_codec": self.base_codec, "qp": self.qp, "train_qps": self.train_qps,
            "qp_choices": self.qp_choices,
            "qp_classifier": (None if self.qp_classifier is None else
                              self.qp_classifier.tolist())}

  @property
  def block_size(self):
    """Image sides must be multiples of this (the codec pads)."""
    return self.unshuffle

  # -- the network ------------------------------------------------------------------------

  def _step_impl(self, base_levels, training=False):
    """Raw mixture parameters [B, H, W, num_params] of x given x_l (levels [B, H, W, 3]).

    The one function the encoder and the decoder both run, so their parameters agree.
    """
    values = self.mixture.values(base_levels)
    f = tf.nn.space_to_depth(values, self.unshuffle) if self.unshuffle > 1 else values
    raw = self.classifier(self.body(self.head(f, training=training), training=training),
                          training=training)
    return tf.nn.depth_to_space(raw, self.unshuffle) if self.unshuffle > 1 else raw

  def mixture_params(self, raw, base_levels, tau=None):
    """(logit_weights, means, log_scales, coeffs) of x: means offset from x_l, log-scales
    moved by `tau` ([3] float, per channel) when given."""
    logit_weights, means, log_scales, coeffs = split_params(
        raw, 3, self.num_components, base_means=self.mixture.values(base_levels))
    if tau is not None:
      log_scales += tf.cast(tau, tf.float32)[:, None]
    return logit_weights, means, log_scales, coeffs

  def _bits_impl(self, levels, raw, base_levels, tau=None):
    """Estimated bits [B, H, W, 3] of each subpixel."""
    params = self.mixture_params(raw, base_levels, tau)
    return self.mixture.bits(levels, *params)

  def split_input(self, x):
    """(x, x_l, base bits [B] or None, QPs [B] or None) of a batch: [B, H, W, 6] holds x
    and its base reconstruction (the training pipeline's cached pairs, whose base size is
    unknown); [B, H, W, 3] gets its base coded here, at the QP choose_qp picks."""
    x = tf.convert_to_tensor(x)
    if x.shape[-1] == 6:
      return x[..., :3], x[..., 3:], None, None
    if x.shape[-1] != 3:
      raise ValueError(f"RC takes images [B, H, W, 3] or image and base [B, H, W, 6], got "
                       f"shape {x.shape}")
    base, base_bits, qps = tf.numpy_function(self._code_bases, [x],
                                             [tf.uint8, tf.float32, tf.float32],
                                             stateful=False)
    return (x, tf.ensure_shape(base, x.shape), tf.ensure_shape(base_bits, x.shape[:1]),
            tf.ensure_shape(qps, x.shape[:1]))

  def _code_bases(self, x):
    qps = [self.choose_qp(image) for image in np.asarray(x, np.uint8)]
    return (*base_layer.reconstruct_batch(x, qps), np.asarray(qps, np.float32))

  def call(self, x, training=False, valid=None):
    """Bits of images x (levels 0..255, sides multiples of `block_size`): [B, H, W, 3],
    whose base layers it codes at `qp`, or [B, H, W, 6], images and base reconstructions.

    `valid` = (height, width, channels) counts only that part (the codec's padded tile).

    Returns:
      {"x_hat": x (lossless), "bits": [B] residual bits plus the base's real bits where
       known, "bits_residual": [B], "bits_base": [B] (0 where unknown), "bpsp": scalar
       mean bits per subpixel, "x_l": the base reconstructions, "qp": [B] their QPs
       (where coded here)}.
    """
    x, base, base_bits, qps = self.split_input(x)
    raw = self._step_impl(base, training)
    b = self._bits(x, raw, base)
    if valid is not None:
      height, width, channels = valid
      b = b[:, :height, :width, :channels]
    residual = tf.reduce_sum(tf.reshape(b, [tf.shape(b)[0], -1]), axis=1)
    base_bits = tf.zeros_like(residual) if base_bits is None else base_bits
    total = residual + base_bits
    subpixels = tf.cast(tf.size(b), tf.float32)
    out = {"x_hat": x, "bits": total, "bits_residual": residual, "bits_base": base_bits,
           "bpsp": tf.reduce_sum(total) / subpixels, "x_l": base}
    if qps is not None:
      out["qp"] = qps
    return out

  def loss_and_scalars(self, x, out, step=None):  # step: unused, a constant loss
    """Loss: the residual's bits per subpixel (the base layer is fixed); scalars: bpsp of
    the residual, the base (where the input had it coded here) and both, and the mean QP
    chosen (there too)."""
    subpixels = tf.cast(tf.size(out["x_l"]), tf.float32)
    residual = tf.reduce_sum(out["bits_residual"]) / subpixels
    base = tf.reduce_sum(out["bits_base"]) / subpixels
    scalars = {"loss": residual, "bpsp": residual + base, "bpsp/residual": residual,
               "bpsp/base": base}
    if "qp" in out:
      scalars["qp"] = tf.reduce_mean(out["qp"])
    return residual, scalars

  def summary_images(self, x, out):
    """Input crops, their base reconstructions and the residual (x3, around grey)."""
    image = tf.cast(out["x_hat"], tf.float32)
    base = tf.cast(out["x_l"], tf.float32)
    return {"x": image / 255, "x_l": base / 255,
            "residual": tf.clip_by_value(0.5 + 3 * (image - base) / 255, 0, 1)}

  def training_companions(self, files, cache_dir, log=None):
    """{training image: [its base reconstruction at each of train_qps]} (see
    tfcomp.training), coded once into `cache_dir`."""
    return base_layer.cached_reconstructions(files, self.train_qps, cache_dir, log=log)

  # -- the base layer's quantizer --------------------------------------------------------

  def choose_qp(self, image):
    """The QP to code uint8 `image` [h, w, 3] at: the classifier's pick, else `qp`."""
    if self.qp_classifier is None:
      return self.qp
    scores = np.append(qp_features(image), 1.0) @ self.qp_classifier
    return self.qp_choices[int(np.argmax(scores))]

  def qp_costs(self, image, qps=None):
    """{qp: (real base bits, estimated residual bits)} of uint8 `image` [h, w, 3] (sides
    multiples of block_size) at each of `qps` (default qp_choices): what tools/fit_qp.py
    fits the classifier to and tools/val.py compares its pick with."""
    self._ensure_built()
    costs = {}
    for qp in self.qp_choices if qps is None else qps:
      data, base = base_layer.reconstruct(image, qp)
      out = self(tf.constant(np.concatenate([image, base], -1)[None]))
      costs[qp] = (8.0 * len(data), float(out["bits_residual"][0]))
    return costs

  # -- real bitstreams --------------------------------------------------------------------

  def _predict(self, base_stream, padded_shape, height, width):
    """(raw parameters, x_l) of a tile's first height x width pixels from its base layer:
    the network runs on the padded tile, x_l padded by repeating its last row and column.
    The one prediction both compress and decompress make."""
    hp, wp = padded_shape
    base = base_layer.decode(base_stream, height, width)
    padded = np.pad(base, ((0, hp - height), (0, wp - width), (0, 0)), mode="edge")[None]
    return self._step(tf.constant(padded))[:, :height, :width], base[None]

  def _coding_params(self, raw, base, k, channels):
    """The coder's mixture parameters of the first `channels` channels at tau steps k."""
    return first_channels(self.mixture_params(raw, base, k / TAU_STEPS), channels)

  def fit_tau(self, levels, raw, base_levels, channels=3):
    """Integers k [3] (tau = k / TAU_STEPS) minimizing the estimated bits of `levels`;
    each channel's bits depend on its own tau alone, so every channel is searched at
    once, coarse to fine."""
    k = np.zeros(3, np.int64)
    best = self._channel_bits(levels, raw, base_levels, k, channels)
    for step in _TAU_SEARCH:
      for sign in (-1, 1):
        trial = np.clip(k + sign * step, -TAU_MAX, TAU_MAX)
        bits = self._channel_bits(levels, raw, base_levels, trial, channels)
        better = bits < best
        k, best = np.where(better, trial, k), np.where(better, bits, best)
    return k

  def _channel_bits(self, levels, raw, base_levels, k, channels):
    b = self._bits(levels, raw, base_levels, tf.constant(k / TAU_STEPS, tf.float32))
    bits = tf.reduce_sum(b[..., :channels], axis=[0, 1, 2]).numpy()
    return np.concatenate([bits, np.zeros(3 - channels)])

  def compress(self, x, height=None, width=None, channels=3, adaptation=0, qp=None):
    """[base stream, residual stream] (scalar string tensors) of one padded image
    x [1, Hp, Wp, 3] (uint8 levels); the base layer codes x[:, :height, :width] at `qp`
    (default: the classifier's pick, see choose_qp), the residual
    x[:, :height, :width, :channels]; `adaptation`: the coder's online adaptation
    (tfcomp.ops.MIXTURE_ADAPT_*).
    """
    x = np.asarray(x, np.uint8)
    hp, wp = x.shape[1:3]
    height = hp if height is None else int(height)
    width = wp if width is None else int(width)
    self._check_tile((hp, wp), height, width, channels)
    self._ensure_built()
    tile = x[0, :height, :width]
    base_stream = base_layer.encode(tile, self.choose_qp(tile) if qp is None else qp)
    raw, base = self._predict(base_stream, (hp, wp), height, width)
    rows = slice(None, None, _TAU_ROWS)
    k = (self.fit_tau(tf.constant(x[:, :height:_TAU_ROWS, :width]), raw[:, rows],
                      base[:, rows], channels)
         if not adaptation else np.zeros(3, np.int64))
    residual = self.mixture.compress(x[:, :height, :width, :channels],
                                     *self._coding_params(raw, base, k, channels),
                                     adaptation=adaptation).numpy()
    return [tf.constant(base_stream), tf.constant(pack_residual(k, residual))]

  def decompress(self, streams, padded_shape, height, width, channels=3, adaptation=0):
    """Levels uint8 [1, height, width, channels] from `compress`'s streams (made with
    the same `adaptation`)."""
    if len(streams) != self.num_streams:
      raise ValueError(f"expected {self.num_streams} streams, got {len(streams)}")
    self._check_tile(padded_shape, height, width, channels)
    self._ensure_built()
    base_stream, residual = (s.numpy() if isinstance(s, tf.Tensor) else bytes(s)
                             for s in streams)
    k, residual = unpack_residual(residual)
    raw, base = self._predict(base_stream, padded_shape, height, width)
    return self.mixture.decompress(residual, *self._coding_params(raw, base, k, channels),
                                   adaptation=adaptation)

  def _check_tile(self, padded_shape, height, width, channels):
    hp, wp = (int(s) for s in padded_shape)
    if hp % self.block_size or wp % self.block_size or not hp or not wp:
      raise ValueError(f"padded size {hp}x{wp} is not a positive multiple of "
                       f"{self.block_size}")
    if not (0 < height <= hp and 0 < width <= wp and channels in (1, 3)):
      raise ValueError(f"tile {height}x{width}x{channels} does not fit padded {hp}x{wp} "
                       "with 1 or 3 channels")

  def _ensure_built(self):
    if not self.built:
      self(tf.zeros((1, self.block_size, self.block_size, 6), tf.uint8))
