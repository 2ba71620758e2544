"""SReC: lossless image compression through super-resolution.

Cao, Wu, Krähenbühl, "Lossless Image Compression through Super-Resolution", 2020.

An average-pooled pyramid: y_0 is the image, s_{l+1} the sum of each 2x2 block of y_l
(odd sides repeat their last row / column), y_{l+1} = round(s_{l+1} / 4) (halves round
down) and delta_{l+1} = s_{l+1} - 4 y_{l+1} in {-1, 0, 1, 2}.

    y_S                                    a fixed model: uniform over 256 levels, or
                                           tfcomp.entropy.gradient (top_coder)
    for l = S-1 .. 0:
      delta_{l+1}                          uniform over 4 levels -> s_{l+1} exactly
      TL  <- net_l,0(s_{l+1})               each a discretized logistic mixture over RGB
      TR  <- net_l,1(s_{l+1}, TL)           (channel-autoregressive), at the resolution
      BL  <- net_l,2(s_{l+1}, TL, TR)       of s_{l+1}
      BR  =  s_{l+1} - TL - TR - BL         (no bits)

Each net is an EDSR decoder fed the normalized average and the block's pixels coded so far,
plus the features of the previous sub-step (upsampled between levels), with L3C's atrous
classifier on top; the mixture means are offsets from the block's average (see
`quarter_params`). One decoding step per sub-step: 3 S network passes per image.
"""
import functools

import tensorflow as tf

from tfcomp.entropy import (DiscretizedLogisticMixture, UniformCoder, first_channels,
                            gradient, initial_params, num_params, split_params)
from tfcomp.models import layers

LEVELS = 256
DELTAS = 4  # delta + 1 in {0, 1, 2, 3}
INITIAL_LOG_SCALE = -3.0


def pad_even(y):
  """Repeats the last row / column of y [B, h, w, C] where h / w is odd."""
  shape = tf.shape(y)
  return tf.pad(y, [[0, 0], [0, shape[1] % 2], [0, shape[2] % 2], [0, 0]], mode="SYMMETRIC")


def block_sum(y):
  """s: the sum of every 2x2 block of pad_even(y)."""
  p = pad_even(y)
  return p[:, 0::2, 0::2] + p[:, 0::2, 1::2] + p[:, 1::2, 0::2] + p[:, 1::2, 1::2]


def round_average(s):
  """round(s / 4) with halves rounded down, as int32."""
  return (s + 1) // 4


def quarters(y):
  """The four pixels of each 2x2 block of pad_even(y): TL, TR, BL, BR."""
  p = pad_even(y)
  return [p[:, 0::2, 0::2], p[:, 0::2, 1::2], p[:, 1::2, 0::2], p[:, 1::2, 1::2]]


class _UniformTop:
  """y_S at 8 bits per subpixel: one stream."""

  num_streams = 1

  def __init__(self):
    self._coder = UniformCoder(LEVELS)

  def bits(self, y_top):
    """[B] bits of y_top [B, h, w, C]."""
    count = tf.cast(tf.reduce_prod(tf.shape(y_top)[1:]), tf.float32)
    return tf.fill(tf.shape(y_top)[:1], self._coder.bits(count))

  def encode(self, y_top):
    return [self._coder.encode(y_top)]

  def decode(self, streams, height, width, channels):
    return self._coder.decode(streams[0], (1, height, width, channels))


class _GradientTop(tf.keras.layers.Layer):
  """y_S under tfcomp.entropy.gradient's fixed model: two streams (block classes, then
  residuals). Its integer tables are non-trainable weights, so they are stored with the
  model and a decoder codes with exactly the encoder's tables."""

  num_streams = 2

  def __init__(self, name="top", **kwargs):
    super().__init__(name=name, **kwargs)
    self._tables = {key: self.add_weight(
        name=key, shape=value.shape, dtype=tf.as_dtype(value.dtype), trainable=False,
        initializer=tf.keras.initializers.Constant(value))
        for key, value in gradient.build_tables(8).items()}
    self._coder = gradient.GradientCoder(8, self._tables)

  def bits(self, y_top):
    return tf.map_fn(lambda y: tf.cast(self._coder.bits(y), tf.float32), y_top,
                     fn_output_signature=tf.float32)

  def encode(self, y_top):
    residuals, classes = self._coder.analyze(y_top[0])
    return [self._coder.encode_classes(classes),
            self._coder.encode_residuals(residuals, classes)]

  def decode(self, streams, height, width, channels):
    classes = self._coder.decode_classes(streams[0], channels, height, width)
    image = self._coder.reconstruct(self._coder.decode_residuals(streams[1], classes, height,
                                                                 width))
    return tf.cast(image, tf.int32)[None]


TOP_CODERS = {"uniform": _UniformTop, "gradient": _GradientTop}


def real_sizes(height, width, num_levels):
  """[(h_l, w_l)] for l = 0..num_levels: the side lengths of each pyramid level."""
  sizes = [(height, width)]
  for _ in range(num_levels):
    h, w = sizes[-1]
    sizes.append(((h + 1) // 2, (w + 1) // 2))
  return sizes


class _SubstepNet(tf.keras.layers.Layer):
  """EDSR decoder (1x1 head, residual body, 1x1 tail) with fused context features."""

  def __init__(self, filters, num_blocks, kernel_size, context_out=True, **kwargs):
    super().__init__(**kwargs)
    self.head = layers.conv(filters, 1, name="head", exact=True)
    self.body = layers.ResidualBody(filters, num_blocks, kernel_size, exact=True, name="body")
    self.tail = layers.conv(filters, 1, name="tail", exact=True)
    # The image's last sub-step passes no context on.
    self.to_context = (layers.conv(filters, kernel_size, name="to_context", exact=True)
                       if context_out else None)

  def call(self, x, context=None):
    h = self.head(x)
    if context is not None:
      h = h + context
    features = self.tail(self.body(h))
    return features, self.to_context(features) if self.to_context else None


class SReC(tf.keras.Model):
  """SReC (see the module docstring).

  Args:
    num_levels: S, pyramid levels above the image.
    num_features: channels of every feature map.
    num_blocks: residual blocks per sub-step network.
    num_components: K, logistics per mixture.
    kernel_size: of the residual blocks and classifiers.
    atrous_rates: dilations of the classifiers' parallel convolutions.
    top_coder: the fixed model of y_S: "uniform" (8 bits per subpixel) or "gradient"
      (tfcomp.entropy.gradient's predictor: a third to a half fewer bits there on photos).
  """

  lossless = True  # which codec (tfcomp.codecs.lossless / lossy) carries it
  adaptive_coding = True  # compress/decompress take the coder's `adaptation` flags

  def __init__(self, num_levels=3, num_features=64, num_blocks=3, num_components=10,
               kernel_size=3, atrous_rates=(1, 2, 4), top_coder="uniform", **kwargs):
    super().__init__(**kwargs)
    if top_coder not in TOP_CODERS:
      raise ValueError(f"top_coder must be one of {sorted(TOP_CODERS)}, got {top_coder!r}")
    if not 1 <= num_levels <= 8:
      raise ValueError(f"num_levels must be in [1, 8], got {num_levels}")
    for arg, value in (("num_features", num_features), ("num_blocks", num_blocks + 1),
                       ("num_components", num_components)):
      if value < 1:
        raise ValueError(f"{arg} must be positive, got {value}")
    self.num_levels = int(num_levels)
    self.num_features = int(num_features)
    self.num_blocks = int(num_blocks)
    self.num_components = int(num_components)
    self.kernel_size = int(kernel_size)
    self.atrous_rates = tuple(int(r) for r in atrous_rates)
    self.top_coder = top_coder
    self.mixture = DiscretizedLogisticMixture(LEVELS, -1.0, 1.0)
    # Level l (0 = finest) has three sub-step networks and classifiers; levels below the
    # coarsest decoded one upsample the context they receive.
    self.nets = [[_SubstepNet(num_features, num_blocks, kernel_size,
                              context_out=(l, i) != (0, 2), name=f"net{l}_{i}")
                  for i in range(3)] for l in range(num_levels)]
    # Classifiers start out predicting each pixel as its block's average with a scale of
    # about 3 levels (log-scale -3 in units of the [-1, 1] range): far better than random
    # mixtures, which saves CPU training time.
    start = initial_params(3, num_components, INITIAL_LOG_SCALE)
    self.classifiers = [[layers.AtrousProbabilityClassifier(
        num_features, num_params(3, num_components), self.atrous_rates, kernel_size,
        initial_output=start, exact=True, name=f"P{l}_{i}") for i in range(3)]
        for l in range(num_levels)]
    self.upsamplers = [layers.conv(4 * num_features, 3, name=f"up{l}", out_groups=4, exact=True)
                       for l in range(num_levels - 1)]
    # One traced function per sub-step: their inputs differ in depth, so a single function
    # would retrace nine times per image size (and warn about it).
    # No AutoGraph: the steps have no data-dependent Python control flow, and converting
    # every layer's code made tracing them (once per image shape) ten times slower.
    self._steps = [[tf.function(functools.partial(self._step_impl, l, i), autograph=False,
                                reduce_retracing=True) for i in range(3)]
                   for l in range(num_levels)]
    self._slice_bits = tf.function(self._slice_bits_impl, jit_compile=True,
                                   reduce_retracing=True)
    self._top = TOP_CODERS[top_coder]()
    self._delta_coder = UniformCoder(DELTAS)

  def get_config(self):
    return {"num_levels": self.num_levels, "num_features": self.num_features,
            "num_blocks": self.num_blocks, "num_components": self.num_components,
            "kernel_size": self.kernel_size, "atrous_rates": self.atrous_rates,
            "top_coder": self.top_coder}

  @property
  def block_size(self):
    """SReC's pyramid handles any size itself: no padding."""
    return 1

  @property
  def num_streams(self):
    """The top level's, then per level its deltas and three quarters."""
    return self._top.num_streams + 4 * self.num_levels

  # -- the network ------------------------------------------------------------------------

  def _step_impl(self, level, i, inputs, context, training=False):
    """Sub-step i of level l: (normalized average, earlier quarters) -> (raw params, context)."""
    features, context = self.nets[level][i](inputs, context)
    return self.classifiers[level][i](features, training=training), context

  def _level_context(self, level, context, size):
    """The context entering level `level` from the coarser level's last sub-step."""
    if context is None:
      return None
    up = tf.nn.depth_to_space(self.upsamplers[level](context), 2)
    return up[:, :size[0], :size[1]]

  @staticmethod
  def _normalized(levels, top=LEVELS - 1):
    """Levels in [0, top] as float32 in [-1, 1]: levels / (top / 2) - 1.

    Divided with tf.math.divide_no_nan, which graph optimizers leave alone: Grappler turns a
    division by a constant into a multiplication by its reciprocal, which rounds
    differently, and coding must compute the same values eagerly (files) as traced
    (SavedModels).
    """
    return tf.math.divide_no_nan(tf.cast(levels, tf.float32), top / 2) - 1.0

  def quarter_params(self, raw, average, size, channels):
    """Mixture params of a quarter's real region `size` from the classifier output `raw`.

    The means are offsets from the block's average (`average`, normalized like the
    pixels): the prediction starts from the obvious one, which the network then refines.
    This reparameterization is tfcomp's, for short CPU training; the network's inputs
    already contain the average, so it changes no expressiveness.
    """
    params = split_params(raw[:, :size[0], :size[1]], 3, self.num_components,
                          base_means=average[:, :size[0], :size[1]])
    return first_channels(params, channels)

  def _slice_bits_impl(self, target, raw, average, size, channels):
    """[B] bits of quarter `target` [B, h, w, 3] in its real region `size`."""
    params = self.quarter_params(raw, average, size, channels)
    values = self.mixture.values(target[:, :size[0], :size[1], :channels])
    b = self.mixture.bits_of_values(values, *params)
    return tf.reduce_sum(tf.reshape(b, [tf.shape(b)[0], -1]), axis=1)

  @staticmethod
  def quarter_sizes(h, w):
    """Real sizes of TL, TR, BL within a level of real size (h, w)."""
    hh, ww = (h + 1) // 2, (w + 1) // 2
    return [(hh, ww), (hh, w // 2), (h // 2, ww)]

  def pyramid(self, x):
    """Image levels [B, H, W, 3] -> ([y_0..y_S], [None, s_1..s_S])."""
    ys, ss = [tf.cast(x, tf.int32)], [None]
    for _ in range(self.num_levels):
      s = block_sum(ys[-1])
      ss.append(s)
      ys.append(round_average(s))
    return ys, ss

  def call(self, x, training=False, valid=None):
    """Bits of images x [B, H, W, 3] (levels 0..255, any size).

    `valid` = (height, width, channels) is accepted for the lossless codec contract; only
    its channel count matters, as SReC codes exactly the image's own pixels.

    Returns {"x_hat": x, "bits": [B], "bits_per_level": {name: [B]}, "bpsp": scalar}.
    """
    x = tf.convert_to_tensor(x)
    channels = valid[2] if valid is not None else 3
    ys, ss = self.pyramid(x)
    batch = tf.shape(x)[0]
    shape = tf.shape(x)
    per_image = lambda t: tf.cast(tf.reduce_prod(tf.shape(t)[1:3]) * channels, tf.float32)  # noqa: E731
    bits = {f"y{self.num_levels}": self._top.bits(ys[-1][..., :channels])}
    context = None
    for level in range(self.num_levels - 1, -1, -1):
      s = ss[level + 1]
      bits[f"delta{level + 1}"] = tf.fill([batch], self._delta_coder.bits(per_image(s)))
      h, w = tf.shape(ys[level])[1], tf.shape(ys[level])[2]
      context = self._level_context(level, context, tf.shape(s)[1:3])
      quarters_ = quarters(ys[level])
      inputs = [self._normalized(s, 4 * (LEVELS - 1))]
      for i, size in enumerate(self.quarter_sizes(h, w)):
        raw, context = self._step_impl(level, i, tf.concat(inputs, -1), context, training)
        bits[f"y{level}_{i}"] = self._slice_bits(quarters_[i], raw, inputs[0], size,
                                                 channels)
        inputs.append(self._normalized(quarters_[i]))
    total = tf.add_n(list(bits.values()))
    subpixels = tf.cast(shape[0] * shape[1] * shape[2] * channels, tf.float32)
    return {"x_hat": x, "bits": total, "bits_per_level": bits,
            "bpsp": tf.reduce_sum(total) / subpixels}

  def loss_and_scalars(self, x, out, step=None):  # step: unused, a constant loss
    """The training loss (bits per subpixel) and the bpsp of every part."""
    subpixels = tf.cast(tf.size(x), tf.float32)
    scalars = {"loss": out["bpsp"], "bpsp": out["bpsp"]}
    for name, b in out["bits_per_level"].items():
      scalars[f"bpsp/{name}"] = tf.reduce_sum(b) / subpixels
    return out["bpsp"], scalars

  def summary_images(self, x, out):
    del out
    ys, _ = self.pyramid(x)
    return {"x": tf.cast(x, tf.uint8),
            **{f"y{l}": tf.cast(ys[l], tf.uint8) for l in range(1, self.num_levels + 1)}}

  # -- real bitstreams --------------------------------------------------------------------

  def _ensure_built(self):
    if not self.built:
      self(tf.zeros((1, 2 ** self.num_levels, 2 ** self.num_levels, 3), tf.uint8))

  def _code(self, x_or_streams, height, width, channels, encode, adaptation=0):
    """The coding loop; encode=True codes image x's levels, else decodes the streams;
    `adaptation`: the mixture coder's online adaptation flags for every quarter.

    TF ops only, with Python control flow over the pyramid's levels: it runs eagerly for
    the codec and traces into a tf.function (tfcomp.codecs.lossless_serving.Serving, which
    tools/export.py saves), with `height` and `width` Python ints or scalar tensors.
    """
    self._ensure_built()
    sizes = real_sizes(height, width, self.num_levels)
    expand = lambda t: tf.tile(t, [1, 1, 1, 3]) if channels == 1 else t  # noqa: E731
    if encode:
      ys, ss = self.pyramid(x_or_streams)
      streams = self._top.encode(ys[-1][..., :channels])
    else:
      streams = list(x_or_streams)
      y = expand(self._top.decode(streams, *sizes[-1], channels))
    context = None
    for level in range(self.num_levels - 1, -1, -1):
      k = self._top.num_streams + 4 * (self.num_levels - 1 - level)  # its first stream
      if encode:
        s = ss[level + 1]
        delta = s - 4 * ys[level + 1]
        streams.append(self._delta_coder.encode(delta[..., :channels] + 1))
        quarters_ = quarters(ys[level])
      else:
        shape = (1,) + sizes[level + 1] + (channels,)
        s = 4 * y + expand(self._delta_coder.decode(streams[k], shape) - 1)
        quarters_ = []
      context = self._level_context(level, context, tf.shape(s)[1:3])
      inputs = [self._normalized(s, 4 * (LEVELS - 1))]
      for i, size in enumerate(self.quarter_sizes(*sizes[level])):
        raw, context = self._steps[level][i](tf.concat(inputs, -1), context)
        params = self.quarter_params(raw, inputs[0], size, channels)
        if encode:
          target = quarters_[i][:, :size[0], :size[1], :channels]
          streams.append(self.mixture.compress(target, *params, adaptation=adaptation))
        else:
          q = expand(self.mixture.decompress(streams[k + 1 + i], *params,
                                             adaptation=adaptation))
          if i:  # TR and BL: positions past the image repeat the block's TL (pad_even)
            q = tf.pad(q, [[0, 0], [0, tf.shape(s)[1] - size[0]],
                           [0, tf.shape(s)[2] - size[1]], [0, 0]])
            q = _fill_from(q, quarters_[0], size)
          quarters_.append(q)
        inputs.append(self._normalized(quarters_[i]))
      if not encode:
        br = s - quarters_[0] - quarters_[1] - quarters_[2]
        full = tf.nn.depth_to_space(tf.concat(quarters_ + [br], axis=-1), 2)
        y = full[:, :sizes[level][0], :sizes[level][1]]
    return streams if encode else y[..., :channels]

  def compress(self, x, height=None, width=None, channels=3, adaptation=0):
    """Streams (scalar string tensors) of one image x [1, H, W, 3] (uint8 levels), coarse
    to fine; `adaptation`: the coder's online adaptation (tfcomp.ops.MIXTURE_ADAPT_*)."""
    del height, width  # SReC codes the image as it is
    x = tf.convert_to_tensor(x)
    shape = tf.shape(x)
    return self._code(x, shape[1], shape[2], channels, encode=True, adaptation=adaptation)

  def decompress(self, streams, padded_shape, height, width, channels=3, adaptation=0):
    """Levels int32 [1, height, width, channels] from `compress`'s streams (made with
    the same `adaptation`)."""
    del padded_shape  # SReC codes the image as it is
    if len(streams) != self.num_streams:
      raise ValueError(f"expected {self.num_streams} streams, got {len(streams)}")
    return self._code(streams, height, width, channels, encode=False, adaptation=adaptation)


def _fill_from(q, tl, size):
  """q with the positions outside its real `size` taken from TL (pad_even's repeats)."""
  h, w = tf.shape(q)[1], tf.shape(q)[2]
  rows = tf.range(h)[:, None] < size[0]
  cols = tf.range(w)[None, :] < size[1]
  return tf.where((rows & cols)[None, :, :, None], q, tl)
