"""L3C: practical full-resolution learned lossless image compression.

Mentzer, Agustsson, Tschannen, Timofte, Van Gool, "Practical Full Resolution Learned
Lossless Image Compression", CVPR 2019.

    x ---E1---> z1 ---E2---> z2 ---E3---> z3          (encoders, learned and quantized)
                                          |  uniform
            p(z2 | z3)  <---P3---D3-------+
            p(z1 | z2)  <---P2---D2--(F3)-+ z2
            p(x  | z1)  <---P1---D1--(F2)-+ z1

Each D_s turns the scale s symbols (and the features F_{s+1} of the coarser decoder) into
features at twice the resolution; the atrous classifier P_s maps them to a discretized
logistic mixture over scale s-1: RGB with the channel-autoregressive coefficients for x,
independent channels for the latents. All scales of one step are coded in parallel, so
decoding costs one network pass per scale.

The paper's two baselines replace the learned encoders by bicubic 2x downsampling of the
RGB image (`scale_input="bicubic"`): "RGB" has one decoder per scale with the features
fused across scales; "RGB Shared" (`shared=True`) applies one decoder at every scale.
"""
import functools

import tensorflow as tf

from tfcomp.entropy import (DiscretizedLogisticMixture, UniformCoder, first_channels,
                            initial_params, num_params, split_params)
from tfcomp.models import layers

RGB_LEVELS = 256
# The RGB classifiers' first log-scale (in units of the [-1, 1] range: about 47 levels):
# with no base mean to offset from, a broad start keeps early bits finite everywhere.
INITIAL_RGB_LOG_SCALE = -1.0
SCALE_INPUTS = ("learned", "bicubic")


class _Encoder(tf.keras.layers.Layer):
  """E_s: features of the finer scale -> (features at half resolution, quantized z_s)."""

  def __init__(self, filters, num_blocks, kernel_size, latent_channels, quantizer, **kwargs):
    super().__init__(**kwargs)
    self.head = layers.conv(filters, kernel_size, name="head")
    self.down = layers.conv(filters, 5, strides=2, name="down")
    self.body = layers.ResidualBody(filters, num_blocks, kernel_size, name="body")
    self.to_latent = layers.conv(latent_channels, 1, name="to_latent")
    self.quantizer = quantizer

  def call(self, x, training=False):
    features = self.body(self.down(self.head(x)))
    z_hat, symbols = self.quantizer(self.to_latent(features), training=training)
    return features, z_hat, symbols


class _Decoder(tf.keras.layers.Layer):
  """D_s: z_s (plus the coarser decoder's features) -> features at twice the resolution."""

  def __init__(self, filters, num_blocks, kernel_size, **kwargs):
    super().__init__(**kwargs)
    self.head = layers.conv(filters, 1, name="head", exact=True)
    self.body = layers.ResidualBody(filters, num_blocks, kernel_size, exact=True, name="body")
    self.tail = layers.conv(4 * filters, 3, name="tail", out_groups=4, exact=True)

  def call(self, z, fused=None):
    x = self.head(z)
    if fused is not None:
      x = x + fused
    return tf.nn.depth_to_space(self.tail(self.body(x)), 2)


class L3C(tf.keras.Model):
  """L3C and its RGB baselines (see the module docstring).

  Args:
    num_scales: S, the number of auxiliary scales; images are padded to multiples of 2^S.
    num_features: C_f, channels of every feature map.
    num_blocks: residual blocks in each encoder and decoder.
    latent_channels: C, channels of each z_s.
    num_centers: L, quantization levels of z_s, uniform in [-1, 1].
    num_components: K, logistics per mixture.
    kernel_size: of the residual blocks and classifiers.
    atrous_rates: dilations of the classifier's parallel convolutions.
    quantizer_sigma: softness of the quantizer's backward pass.
    scale_input: "learned" (L3C) or "bicubic" (the RGB baselines).
    shared: one decoder and classifier for every scale (RGB Shared); needs "bicubic".
    fuse_features: add the coarser decoder's features to each decoder's input.
  """

  lossless = True  # which codec (tfcomp.codecs.lossless / lossy) carries it
  adaptive_coding = True  # compress/decompress take the coder's `adaptation` flags

  def __init__(self, num_scales=3, num_features=64, num_blocks=8, latent_channels=5,
               num_centers=25, num_components=10, kernel_size=3, atrous_rates=(1, 2, 4),
               quantizer_sigma=2.0, scale_input="learned", shared=False, fuse_features=True,
               **kwargs):
    super().__init__(**kwargs)
    if not 1 <= num_scales <= 6:
      raise ValueError(f"num_scales must be in [1, 6], got {num_scales}")
    for arg, value in (("num_features", num_features), ("num_blocks", num_blocks + 1),
                       ("latent_channels", latent_channels), ("num_components", num_components)):
      if value < 1:
        raise ValueError(f"{arg} must be positive, got {value}")
    if not 2 <= num_centers <= 4096:
      raise ValueError(f"num_centers must be in [2, 4096], got {num_centers}")
    if scale_input not in SCALE_INPUTS:
      raise ValueError(f"scale_input must be one of {SCALE_INPUTS}, got {scale_input!r}")
    if shared and (scale_input != "bicubic" or fuse_features):
      raise ValueError("shared=True needs scale_input='bicubic' and fuse_features=False: "
                       "only RGB scales can share one decoder")
    self.num_scales = int(num_scales)
    self.num_features = int(num_features)
    self.num_blocks = int(num_blocks)
    self.latent_channels = int(latent_channels)
    self.num_centers = int(num_centers)
    self.num_components = int(num_components)
    self.kernel_size = int(kernel_size)
    self.atrous_rates = tuple(int(r) for r in atrous_rates)
    self.quantizer_sigma = float(quantizer_sigma)
    self.scale_input = scale_input
    self.shared = bool(shared)
    self.fuse_features = bool(fuse_features)

    learned = scale_input == "learned"
    # Scale t = 0 is the image; t = 1..S are the z_t (or the downsampled RGB images).
    self.scale_channels = [3] + [latent_channels if learned else 3] * num_scales
    self.scale_levels = [RGB_LEVELS] + [num_centers if learned else RGB_LEVELS] * num_scales
    self.mixtures = [DiscretizedLogisticMixture(n, -1.0, 1.0) for n in self.scale_levels]

    if learned:
      quantizer = layers.SoftToHardQuantizer(num_centers, quantizer_sigma, name="quantizer")
      self.encoders = [_Encoder(num_features, num_blocks, kernel_size, latent_channels,
                                quantizer, name=f"E{s}") for s in range(1, num_scales + 1)]
    else:
      self.encoders = []
    nets = 1 if shared else num_scales
    self.decoders = [_Decoder(num_features, num_blocks, kernel_size, name=f"D{s + 1}")
                     for s in range(nets)]
    # RGB classifiers start from initial_params' mixture (random kernel, that bias): its
    # coefficient of 0.9 on the previous channel codes G and B largely from R from the
    # first step. Measured here on the same crops: training-batch bpsp of x 5.67 after 450
    # steps of the small config, 6.28 from the random start (which reached 5.69 at step
    # 750). Latents start at random.
    self.classifiers = [
        layers.AtrousProbabilityClassifier(
            num_features, self._num_params(s), self.atrous_rates, kernel_size,
            initial_output=(initial_params(3, num_components, INITIAL_RGB_LOG_SCALE)
                            if self._channel_ar(s) else None),
            zero_kernel=False, exact=True, name=f"P{s + 1}")
        for s in range(nets)]
    # No AutoGraph: the step has no data-dependent Python control flow (see SReC).
    self._step = tf.function(self._step_impl, autograph=False, reduce_retracing=True)
    # XLA fuses the mixture's many elementwise ops (3x faster on CPU); the convolutions
    # stay with oneDNN, which beats XLA's CPU convolutions. One function per scale: their
    # depths differ, so a shared one would retrace (and recompile) at every scale.
    self._scale_bits = [tf.function(functools.partial(self._scale_bits_impl, t),
                                    jit_compile=True, reduce_retracing=True)
                        for t in range(num_scales)]
    self._top_coder = UniformCoder(self.scale_levels[-1])

  def get_config(self):
    return {"num_scales": self.num_scales, "num_features": self.num_features,
            "num_blocks": self.num_blocks, "latent_channels": self.latent_channels,
            "num_centers": self.num_centers, "num_components": self.num_components,
            "kernel_size": self.kernel_size, "atrous_rates": self.atrous_rates,
            "quantizer_sigma": self.quantizer_sigma, "scale_input": self.scale_input,
            "shared": self.shared, "fuse_features": self.fuse_features}

  @property
  def block_size(self):
    """Image sides must be multiples of this (the codec pads)."""
    return 2 ** self.num_scales

  @property
  def num_streams(self):
    """Streams per coded image: the uniform top scale, then one per mixture scale."""
    return self.num_scales + 1

  # -- the mixture over each scale --------------------------------------------------------

  def _channel_ar(self, t):
    return self.scale_channels[t] == 3 and self.scale_levels[t] == RGB_LEVELS

  def _num_params(self, t):
    if self._channel_ar(t):
      return num_params(3, self.num_components)
    return self.scale_channels[t] * num_params(1, self.num_components)

  def mixture_params(self, t, raw):
    """(logit_weights, means, log_scales, coeffs) of scale t from classifier output `raw`.

    RGB scales are one 3-channel mixture per pixel; latent channels are independent, so
    each becomes its own 1-channel mixture: params [..., C, 1, K] for values [..., C, 1].
    """
    if self._channel_ar(t):
      return split_params(raw, 3, self.num_components)
    grouped = tf.reshape(raw, tf.concat(
        [tf.shape(raw)[:-1], [self.scale_channels[t], num_params(1, self.num_components)]], 0))
    return split_params(grouped, 1, self.num_components)

  def _mixture_shape(self, t, values):
    return values if self._channel_ar(t) else values[..., None]

  # -- the network ------------------------------------------------------------------------

  def _step_impl(self, s, z_values, fused, training=False):
    """Decoder step s (S..1): z_s values and F_{s+1} -> (raw params of scale s-1, F_s).

    The one function both the encoder and the decoder run, so their parameters agree.
    """
    i = 0 if self.shared else s - 1
    features = self.decoders[i](z_values, fused if self.fuse_features else None)
    return self.classifiers[i](features, training=training), features

  @staticmethod
  def _coded_part(params, values, valid):
    """The image's coded part: params and values inside `valid` (height, width, channels)."""
    height, width, channels = valid
    params = first_channels([p[:, :height, :width] for p in params], channels)
    return params, None if values is None else values[:, :height, :width, :channels]

  def _scale_bits_impl(self, t, values, raw, valid=None):
    """[B] estimated bits of scale t's values under the mixture from `raw`."""
    params = self.mixture_params(t, raw)
    if valid is not None:
      params, values = self._coded_part(params, values, valid)
    b = self.mixtures[t].bits_of_values(self._mixture_shape(t, values), *params)
    return tf.reduce_sum(tf.reshape(b, [tf.shape(b)[0], -1]), axis=1)

  def analyze(self, x, training=False):
    """Image levels [B, H, W, 3] -> [(values, levels) of scale t] for t = 0..S."""
    levels = tf.cast(x, tf.int32)
    values = self.mixtures[0].values(levels)
    scales = [(values, levels)]
    if self.scale_input == "learned":
      features = values
      for encoder in self.encoders:
        features, z_hat, symbols = encoder(features, training=training)
        scales.append((z_hat, symbols))
    else:
      for _ in range(self.num_scales):
        values = scales[-1][0]
        size = tf.shape(values)[1:3] // 2
        down = tf.image.resize(values, size, method="bicubic", antialias=True)
        levels = tf.cast(tf.clip_by_value(tf.round((down + 1) * (RGB_LEVELS - 1) / 2), 0,
                                          RGB_LEVELS - 1), tf.int32)
        scales.append((self.mixtures[1].values(levels), levels))
    return scales

  def call(self, x, training=False, valid=None):
    """Bits of images x [B, H, W, 3] (levels 0..255, sides multiples of `block_size`).

    `valid` = (height, width, channels) counts only that part of the image itself, as the
    codec codes a padded tile (the padding still shapes the auxiliary scales).

    Returns:
      {"x_hat": x (lossless), "bits": [B] total bits, "bits_per_scale": [[B] for t = 0..S]
       (scale S under the uniform prior), "bpsp": scalar mean bits per subpixel,
       "z": values of the scales t = 1..S}.
    """
    x = tf.convert_to_tensor(x)
    scales = self.analyze(x, training=training)
    top_levels = scales[-1][1]
    top_count = tf.cast(tf.reduce_prod(tf.shape(top_levels)[1:]), tf.float32)
    bits = [tf.fill(tf.shape(x)[:1], self._top_coder.bits(top_count))]
    fused = None
    for s in range(self.num_scales, 0, -1):
      raw, fused = self._step_impl(s, scales[s][0], fused, training)
      t = s - 1
      bits.insert(0, self._scale_bits[t](scales[t][0], raw, valid if t == 0 else None))
    total = tf.add_n(bits)
    subpixels = tf.cast(tf.size(x) if valid is None else
                        tf.shape(x)[0] * valid[0] * valid[1] * valid[2], tf.float32)
    return {"x_hat": x, "bits": total, "bits_per_scale": bits,
            "bpsp": tf.reduce_sum(total) / subpixels, "z": [v for v, _ in scales[1:]]}

  def loss_and_scalars(self, x, out, step=None):  # step: unused, a constant loss
    """The training loss (bits per subpixel) and the scalars to log: bpsp per scale."""
    subpixels = tf.cast(tf.reduce_prod(tf.shape(x)), tf.float32)
    scalars = {"loss": out["bpsp"], "bpsp": out["bpsp"]}
    for t, b in enumerate(out["bits_per_scale"]):
      scalars[f"bpsp/{'x' if t == 0 else f'z{t}'}"] = tf.reduce_sum(b) / subpixels
    return out["bpsp"], scalars

  def summary_images(self, x, out):
    """Input crops and the first three channels of each z_t, mapped to [0, 1]."""
    images = {"x": tf.cast(x, tf.uint8)}
    for t, z in enumerate(out["z"], 1):
      images[f"z{t}"] = (z[..., :3] + 1) / 2
    return images

  def sample(self, x, from_scale, seed=(0, 0)):
    """The paper's samples: keep x's scales >= from_scale, draw every finer one.

    Returns uint8 [B, H, W, 3]; from_scale=1 draws only the image given z_1.
    """
    if not 1 <= from_scale <= self.num_scales:
      raise ValueError(f"from_scale must be in [1, {self.num_scales}], got {from_scale}")
    self._ensure_built()
    scales = self.analyze(tf.convert_to_tensor(x))
    levels = scales[-1][1]
    fused = None
    for s in range(self.num_scales, 0, -1):
      raw, fused = self._step(s, self.mixtures[s].values(levels), fused)
      t = s - 1
      if t >= from_scale:
        levels = scales[t][1]
        continue
      drawn = self.mixtures[t].sample(*self.mixture_params(t, raw), seed=(seed[0], seed[1] + s))
      levels = drawn if self._channel_ar(t) else drawn[..., 0]
    return tf.cast(levels, tf.uint8)

  # -- real bitstreams --------------------------------------------------------------------

  def _code(self, scales_or_streams, padded_shape, height, width, channels, encode,
            adaptation=0):
    """Runs the coding loop; encode=True codes `scales` levels, else decodes streams;
    `adaptation`: the mixture coder's online adaptation flags for every scale.

    Scale 0 is coded only inside [:height, :width] and for its first `channels` channels
    (1 for grayscale images, coded as R=G=B). TF ops only, with Python control flow over
    the scales: it runs eagerly for the codec and traces into a tf.function
    (tfcomp.codecs.lossless_serving.Serving, which tools/export.py saves), with the sizes
    Python ints or scalar tensors.
    """
    self._ensure_built()
    hp, wp = padded_shape
    top = self.num_scales
    top_shape = (1, hp // 2**top, wp // 2**top, self.scale_channels[top])
    streams = [] if encode else list(scales_or_streams)
    if encode:
      streams.append(self._top_coder.encode(scales_or_streams[top][1]))
    else:
      top_levels = self._top_coder.decode(streams[0], top_shape)
    levels = scales_or_streams[top][1] if encode else top_levels
    fused = None
    for s in range(top, 0, -1):
      raw, fused = self._step(s, self.mixtures[s].values(levels), fused)
      t = s - 1
      params = self.mixture_params(t, raw)
      target = scales_or_streams[t][1] if encode else None
      if t == 0:
        params, target = self._coded_part(params, target, (height, width, channels))
      stream_index = top - t
      # Adaptation's neighbours are pixels of rows: only the image scale's mixtures are laid
      # out [1, h, w] (a latent scale's are [1, h, w, C], one channel per mixture).
      adapt = adaptation if t == 0 else 0
      if encode:
        target = self._mixture_shape(t, target)
        streams.append(self.mixtures[t].compress(target, *params, adaptation=adapt))
        levels = scales_or_streams[t][1]
      else:
        decoded = self.mixtures[t].decompress(streams[stream_index], *params,
                                              adaptation=adapt)
        levels = decoded if self._channel_ar(t) or t == 0 else decoded[..., 0]
    return streams if encode else levels

  def compress(self, x, height=None, width=None, channels=3, adaptation=0):
    """Streams (scalar string tensors) of one padded image x [1, Hp, Wp, 3] (uint8
    levels), coarse to fine; `adaptation`: the coder's online adaptation
    (tfcomp.ops.MIXTURE_ADAPT_*).

    Only x[:, :height, :width, :channels] is coded at full resolution; the rest is padding
    that shapes the auxiliary scales.
    """
    x = tf.convert_to_tensor(x)
    hp, wp = tf.shape(x)[1], tf.shape(x)[2]
    self._check_padded(hp, wp)
    scales = self.analyze(x)
    return self._code(scales, (hp, wp), hp if height is None else height,
                      wp if width is None else width, channels, encode=True,
                      adaptation=adaptation)

  def decompress(self, streams, padded_shape, height, width, channels=3, adaptation=0):
    """Levels int32 [1, height, width, channels] from `compress`'s streams (made with
    the same `adaptation`)."""
    self._check_padded(*padded_shape)
    if len(streams) != self.num_streams:
      raise ValueError(f"expected {self.num_streams} streams, got {len(streams)}")
    return self._code(streams, padded_shape, height, width, channels, encode=False,
                      adaptation=adaptation)

  def _ensure_built(self):
    # The coding step is a tf.function, which must not create the variables itself.
    if not self.built:
      self(tf.zeros((1, self.block_size, self.block_size, 3), tf.uint8))

  def _check_padded(self, hp, wp):
    # Sides unknown while tracing come from the caller's own padding (Serving's).
    hp, wp = tf.get_static_value(hp), tf.get_static_value(wp)
    if hp is None or wp is None:
      return
    if hp % self.block_size or wp % self.block_size or not hp or not wp:
      raise ValueError(f"padded size {hp}x{wp} is not a positive multiple of "
                       f"{self.block_size}")
