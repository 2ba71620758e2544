"""Scale and mean-scale hyperprior codecs on tensorflow-compression's entropy models.

Ballé, Minnen, Singh, Hwang, Johnston, "Variational Image Compression with a Scale
Hyperprior", ICLR 2018 (variant "scale"); Minnen, Ballé, Toderici, "Joint Autoregressive
and Hierarchical Priors for Learned Image Compression", NeurIPS 2018, without the
autoregressive context (variant "mean_scale").

    x --g_a--> y --h_a--> z --Q--> z_hat            (z: deep factorized prior)
                                     |
                                    h_s --> mu (mean_scale), sigma index
    y --Q around mu--> y_hat --g_s--> x_hat         (y: Gaussian given mu, sigma)

g_a / g_s: four 5x5 stride-2 convolutions with GDN / IGDN; h_a / h_s: 3x3 then two 5x5
stride-2 (transposed) convolutions with ReLUs. The scale variant feeds |y| to h_a and
predicts scales only. Training minimizes rate + lmbda * distortion; `make_compressible()`
then freezes the range-coding tables into variables that ship with the weights.

h_s's outputs pick y's coding tables and means, so h_s computes on tfcomp.exact's grids
(in training too): a decoder on any machine recomputes them bit for bit, and y_hat, the
decoded latents, are identical everywhere. g_s only shapes the reconstruction and stays
in float: other machines may round a few pixels differently, by one level.

With `ste_decoder`, training feeds g_s what coding will: y rounded around the mean, with
straight-through gradients, while the rate is still taken on noisy y (the "mixed"
quantization of Minnen & Singh, "Channel-wise Autoregressive Entropy Models for Learned
Image Compression", ICIP 2020). Noise alone trains g_s on inputs it never sees at test.
"""
import functools

import tensorflow as tf
import tensorflow_compression as tfc

from tfcomp.models import layers

VARIANTS = ("scale", "mean_scale")
DISTORTIONS = ("mse", "ms_ssim")


def _coded_bits(cdf, cdf_offset, tables, symbols):
  """Bits tensorflow-compression's range coder spends on each of `symbols` (int32), coded
  with the tables `tables` selects from its flat `cdf` table list.

  Each table is [-precision, 0, c_1, ..., 2**precision] over the values cdf_offset + 0..n-1
  and a last interval that escapes other values, which then follow as an Elias gamma code
  and a sign bit (uniform binary decisions).
  """
  starts = tf.cast(tf.where(cdf < 0)[:, 0], tf.int32)
  ends = tf.concat([starts[1:], tf.shape(cdf)], 0)
  start = tf.gather(starts, tables)
  n = tf.gather(ends, tables) - start - 3
  value = symbols - tf.gather(cdf_offset, tables)
  escape = (value < 0) | (value >= n)
  interval = tf.where(escape, n, value)
  freq = tf.gather(cdf, start + 2 + interval) - tf.gather(cdf, start + 1 + interval)
  precision = tf.cast(-tf.gather(cdf, start), tf.float32)
  bits = precision - tf.math.log(tf.cast(freq, tf.float32)) / tf.math.log(2.0)
  gamma = tf.cast(tf.where(value < 0, -value, value - n + 1), tf.float32)
  # 2 floor(log2(gamma)) + 1 gamma-code bits and a sign bit; log2 of gamma + 1/2 keeps
  # exact powers of two from rounding below their integer logarithm.
  gamma_bits = 2.0 * tf.math.floor(tf.math.log(gamma + 0.5) / tf.math.log(2.0)) + 2.0
  return bits + tf.where(escape, gamma_bits, 0.0)


KERNEL_PARAMETERS = ("rdft", "variable")


def _conv(filters, kernel, down=1, up=1, activation=None, bias=True, name=None,
          kernel_parameter="rdft"):
  return tfc.SignalConv2D(filters, (kernel, kernel), corr=up == 1, strides_down=down,
                          strides_up=up, padding="same_zeros", use_bias=bias,
                          activation=activation, name=name, kernel_parameter=kernel_parameter)


class Hyperprior(tf.keras.Model):
  """Scale / mean-scale hyperprior image codec (see the module docstring).

  Args:
    num_filters: N, channels of g_a / g_s.
    latent_channels: M, channels of y.
    hyper_filters: channels of h_a / h_s and of z.
    variant: "scale" (Ballé 2018) or "mean_scale" (Minnen 2018, no autoregression).
    distortion: "mse" or "ms_ssim" (1 - MS-SSIM, for the loss only).
    lmbda: rate-distortion weight: loss = bpp + lmbda * distortion, with MSE on 0..255
      values or 1 - MS-SSIM.
    num_scales, scale_min, scale_max: the table of Gaussian scales y's coder uses.
    ste_decoder: train g_s on rounded y (straight-through) instead of noisy y; the rate
      term is unchanged. It only changes training, so weights load either way.
    kernel_parameter: how g_a, g_s and h_a hold their kernels: "rdft" (tensorflow-
      compression's reparameterization, which trains better) or "variable" (the kernels
      themselves, as `coding_copy` stores them: smaller, and faster to run).
    compression: hold range-coding tables. The tables start as empty placeholders that
      `tfcomp.models.load` fills from the stored weights; `make_compressible()` computes
      them from a trained prior instead.
  """

  lossless = False  # which codec (tfcomp.codecs.lossless / lossy) carries it
  stream_names = ("y", "z")  # the strings of `compress`, as the file's sections
  analysis_channels = 3  # g_a's input channels

  def __init__(self, num_filters=128, latent_channels=192, hyper_filters=128,
               variant="mean_scale", distortion="mse", lmbda=0.01, num_scales=64,
               scale_min=0.11, scale_max=256.0, ste_decoder=False, kernel_parameter="rdft",
               compression=False, **kwargs):
    super().__init__(**kwargs)
    if variant not in VARIANTS:
      raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if distortion not in DISTORTIONS:
      raise ValueError(f"distortion must be one of {DISTORTIONS}, got {distortion!r}")
    for arg, value in (("num_filters", num_filters), ("latent_channels", latent_channels),
                       ("hyper_filters", hyper_filters), ("num_scales", num_scales - 1)):
      if value < 1:
        raise ValueError(f"{arg} is too small: {value}")
    if not 0 < scale_min < scale_max:
      raise ValueError(f"need 0 < scale_min < scale_max, got {scale_min}, {scale_max}")
    if not lmbda > 0:
      raise ValueError(f"lmbda must be positive, got {lmbda}")
    if kernel_parameter not in KERNEL_PARAMETERS:
      raise ValueError(f"kernel_parameter must be one of {KERNEL_PARAMETERS}, got "
                       f"{kernel_parameter!r}")
    self.num_filters = int(num_filters)
    self.latent_channels = int(latent_channels)
    self.hyper_filters = int(hyper_filters)
    self.variant = variant
    self.distortion = distortion
    self.lmbda = float(lmbda)
    self.num_scales = int(num_scales)
    self.scale_min = float(scale_min)
    self.scale_max = float(scale_max)
    self.ste_decoder = bool(ste_decoder)
    self.kernel_parameter = kernel_parameter
    self.compression = False

    m, h = self.latent_channels, self.hyper_filters
    conv = functools.partial(_conv, kernel_parameter=kernel_parameter)
    self.g_a, self.g_s = self._image_transforms()
    self.h_a = tf.keras.Sequential([
        conv(h, 3, activation=tf.nn.relu, name="layer_0"),
        conv(h, 5, down=2, activation=tf.nn.relu, name="layer_1"),
        conv(h, 5, down=2, bias=False, name="layer_2")], name="h_a")
    outputs = m if variant == "scale" else 2 * m
    self.h_s = tf.keras.Sequential([
        layers.up_conv(h, 5, activation=tf.nn.relu, name="layer_0", exact=True),
        layers.up_conv(h * 3 // 2 if variant == "mean_scale" else h, 5,
                       activation=tf.nn.relu, name="layer_1", exact=True),
        layers.conv(outputs, 3, name="layer_2", exact=True)], name="h_s")
    self.hyperprior = tfc.NoisyDeepFactorized(batch_shape=(h,))
    # Building the transforms directly: Keras' build would trace `call`, where the
    # untrained side model estimates its quantization offsets (tens of seconds).
    for net, channels in ((self.g_a, self.analysis_channels), (self.g_s, m), (self.h_a, m),
                          (self.h_s, h)):
      net.build((None, None, None, channels))
    self.built = True
    if compression:
      self.side_entropy_model, self.entropy_model = self._entropy_models(compression=True)
      self.compression = True

  def _image_transforms(self):
    """(g_a, g_s): Ballé's four 5x5 stride-2 convolutions with GDN / IGDN."""
    n, m = self.num_filters, self.latent_channels
    conv = functools.partial(_conv, kernel_parameter=self.kernel_parameter)
    g_a = tf.keras.Sequential(
        [conv(n, 5, down=2, activation=layers.GDN(name=f"gdn_{i}"), name=f"layer_{i}")
         for i in range(3)] + [conv(m, 5, down=2, name="layer_3")], name="g_a")
    g_s = tf.keras.Sequential(
        [conv(n, 5, up=2, activation=layers.GDN(inverse=True, name=f"igdn_{i}"),
              name=f"layer_{i}") for i in range(3)] + [conv(3, 5, up=2, name="layer_3")],
        name="g_s")
    return g_a, g_s

  def get_config(self):
    return {"num_filters": self.num_filters, "latent_channels": self.latent_channels,
            "hyper_filters": self.hyper_filters, "variant": self.variant,
            "distortion": self.distortion, "lmbda": self.lmbda, "num_scales": self.num_scales,
            "scale_min": self.scale_min, "scale_max": self.scale_max,
            "ste_decoder": self.ste_decoder, "kernel_parameter": self.kernel_parameter,
            "compression": self.compression}

  @property
  def block_size(self):
    """Image sides are padded to multiples of this (g_a and h_a downsample 64x)."""
    return 64

  def latent_shapes(self, height, width):
    """Spatial shapes of y and z (int32 [2] each) for a padded image of height x width."""
    size = tf.stack([height, width])
    return size // 16, size // 64

  def scale_fn(self, i):
    """Scale of table index i: geometric from scale_min to scale_max."""
    log_min = tf.math.log(self.scale_min)
    step = (tf.math.log(self.scale_max) - log_min) / (self.num_scales - 1.0)
    return tf.math.exp(log_min + step * i)

  def _entropy_models(self, compression, side_tables=None):
    """(side, main) entropy models. With compression, z's model holds `side_tables`
    (cdf, cdf_offset, quantization_offset), or empty placeholders that loading fills."""
    if not compression:
      side = tfc.ContinuousBatchedEntropyModel(self.hyperprior, coding_rank=3,
                                               compression=False)
    else:
      if side_tables is None:
        tables = {"cdf_shapes": (0, 0), "quantization_offset": True}
      else:
        tables = dict(zip(("cdf", "cdf_offset", "quantization_offset"), side_tables))
      side = tfc.ContinuousBatchedEntropyModel(
          prior_shape=(self.hyperprior.batch_shape), coding_rank=3, compression=True,
          bottleneck_dtype=tf.float32, **tables)
    main = tfc.LocationScaleIndexedEntropyModel(tfc.NoisyNormal, self.num_scales,
                                                self.scale_fn, coding_rank=3,
                                                compression=compression)
    return side, main

  @tf.function
  def _side_tables(self):
    # Traced: tfc finds the prior's tails and offsets by an iterative search that takes
    # a minute when run eagerly. The result is computed once and stored with the weights.
    side = tfc.ContinuousBatchedEntropyModel(self.hyperprior, coding_rank=3,
                                             compression=True, stateless=True)
    return side.cdf, side.cdf_offset, side.quantization_offset

  def make_compressible(self):
    """Freezes the range-coding tables (from the trained prior) into variables."""
    self.side_entropy_model, self.entropy_model = self._entropy_models(
        compression=True, side_tables=self._side_tables())
    self.compression = True

  def coding_copy(self):
    """A copy with frozen range-coding tables (`make_compressible`) and its kernels held
    as plain variables (kernel_parameter "variable"), as the zoo ships lossy models."""
    if not self.compression:
      self.make_compressible()
    copy = type(self)(**{**self.get_config(), "kernel_parameter": "variable"})
    def besides_kernel(layer):  # biases, GDN parameters
      return [v for v in layer.weights if not v.name.split("/")[-1].startswith("kernel")]

    for net in ("g_a", "g_s", "h_a"):
      for source, target in zip(getattr(self, net).layers, getattr(copy, net).layers,
                                strict=True):
        if isinstance(source, tfc.SignalConv2D):
          target.kernel_parameter.assign(source.kernel)
          for s, t in zip(besides_kernel(source), besides_kernel(target), strict=True):
            t.assign(s)
        else:  # a Keras layer holds its kernels as they are (HiFiC's transforms)
          for s, t in zip(source.weights, target.weights, strict=True):
            t.assign(s)
    for source, target in ((self.h_s, copy.h_s), (self.hyperprior, copy.hyperprior),
                           (self.side_entropy_model, copy.side_entropy_model),
                           (self.entropy_model, copy.entropy_model)):
      for s, t in zip(source.variables, target.variables, strict=True):
        t.assign(s)
    return copy

  def _mean_and_index(self, z_hat, y_shape, training=False):
    # training: straight-through gradients through h_s's grids (tfcomp.exact)
    params = self.h_s(z_hat, training=training)[:, :y_shape[0], :y_shape[1], :]
    if self.variant == "scale":
      return None, params
    mean, index = tf.split(params, 2, axis=-1)
    return mean, index

  def call(self, x, training=False, latents=None):
    """Rate and reconstruction of images x [B, H, W, 3] (0..255, sides multiples of 64).

    latents: (y, z) to take instead of `analysis(x)`, e.g. from `refine_latents`.

    Returns {"x_hat", "y_hat" (g_s's input), "bits": [B] (y and z), "bits_y", "bits_z",
    "bpp", "mse", "scales"}.
    Without training, y and z are rounded (z to the prior's grid) exactly as when coding.
    """
    x = tf.cast(x, tf.float32)
    coding = self.compression and not training
    side, main = ((self.side_entropy_model, self.entropy_model) if coding
                  else self._entropy_models(compression=False))
    y, z = self.analysis(x) if latents is None else latents
    if coding:
      # The bits the range coder spends with its frozen tables, which floor small
      # probabilities and escape the tails (the prior's likelihood overstates them).
      z_hat = side.quantize(z)
      channels = tf.broadcast_to(tf.range(self.hyper_filters), tf.shape(z_hat))
      symbols = tf.cast(tf.round(z_hat - side.quantization_offset), tf.int32)
      bits_z = tf.reduce_sum(_coded_bits(side.cdf, side.cdf_offset, channels, symbols),
                             axis=(1, 2, 3))
    else:
      z_hat, bits_z = side(z, training=training)
    mean, index = self._mean_and_index(z_hat, tf.shape(y)[1:3], training)
    if coding:  # the coder's table: the index clipped and truncated, as tfc's compress does
      y_hat = main.quantize(y, loc=mean)
      index = tf.clip_by_value(index, 0.0, self.num_scales - 1.0)
      symbols = tf.cast(tf.round(y if mean is None else y - mean), tf.int32)
      bits_y = tf.reduce_sum(_coded_bits(main.cdf, main.cdf_offset,
                                         tf.cast(index, tf.int32), symbols), axis=(1, 2, 3))
      index = tf.floor(index)
    else:
      y_hat, bits_y = main(y, index, loc=mean, training=training)
      if training and self.ste_decoder:  # coding's quantizer, straight-through
        y_hat = main.quantize(y, loc=mean)
    x_hat = self.reconstruct(y_hat, x)
    pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
    bits = bits_y + bits_z
    return {"x_hat": x_hat, "y_hat": y_hat, "bits": bits, "bits_y": bits_y, "bits_z": bits_z,
            "bpp": tf.reduce_sum(bits) / pixels,
            "mse": tf.reduce_mean(tf.math.squared_difference(x[..., :3], x_hat)),
            "scales": self.scale_fn(tf.clip_by_value(index, 0, self.num_scales - 1))}

  def loss_and_scalars(self, x, out, step=None):  # step: unused, a constant loss
    """bpp + lmbda * distortion, and rate, distortion and PSNR to log."""
    x = tf.cast(x, tf.float32)
    x_hat = tf.clip_by_value(out["x_hat"], 0, 255)
    psnr = tf.reduce_mean(tf.image.psnr(x, x_hat, 255.0))
    scalars = {"bpp": out["bpp"], "mse": out["mse"], "psnr": psnr}
    if self.distortion == "mse":
      distortion = out["mse"]
    else:
      ms_ssim = tf.reduce_mean(layers.ms_ssim(x, x_hat))
      scalars["ms_ssim"] = ms_ssim
      distortion = 1.0 - ms_ssim
    loss = out["bpp"] + self.lmbda * distortion
    scalars["loss"] = loss
    return loss, scalars

  def summary_images(self, x, out):
    """Inputs, reconstructions and the predicted scales (mean over channels, log)."""
    scales = tf.reduce_mean(tf.math.log(out["scales"]), axis=-1, keepdims=True)
    lo, hi = tf.math.log(self.scale_min), tf.math.log(self.scale_max)
    return {"x": tf.cast(x, tf.uint8), "x_hat": tf.saturate_cast(tf.round(out["x_hat"]),
                                                                  tf.uint8),
            "scales": (scales - lo) / (hi - lo)}

  # -- real bitstreams ----------------------------------------------------------------------

  def _check_compressible(self):
    if not self.compression:
      raise ValueError("call make_compressible() before coding: the range-coding tables "
                       "are frozen after training")
    if tf.executing_eagerly() and tf.size(self.side_entropy_model.cdf) == 0:
      raise ValueError("the range-coding tables are empty placeholders: load the model "
                       "with tfcomp.models.load, or call make_compressible()")

  def analysis(self, x):
    """Latents (y, z) of images x [B, Hp, Wp, 3] (0..255): g_a, then h_a."""
    y = self.g_a(tf.cast(x, tf.float32) / 255.0)
    return y, self.h_a(tf.abs(y) if self.variant == "scale" else y)

  def refine_latents(self, x, steps, learning_rate=0.005):
    """Latents (y, z) of one padded image x [1, Hp, Wp, 3], fitted to it by `steps` Adam
    steps on the rate-distortion loss, starting from `analysis(x)`.

    g_a amortizes the encoding over all images; optimizing the latents of this one image
    closes part of that gap (Campos, Meierhans, Djelouah, Schroers, "Content Adaptive
    Optimization for Neural Image Compression", CVPR Workshops 2019). The gradient is
    training's: bits of y and z under uniform noise, plus lmbda times the distortion
    (`loss_and_scalars`) of g_s's output for y rounded around the mean, straight-through.
    Noise and rounding disagree, so each step also measures the cost of the rounded
    latents, and the cheapest latents seen are returned: never worse than g_a's. Only the
    encoder changes; every decoder of the model reads the result. A step costs about one
    training step on the image. The noise is seeded by the step number, so the same image
    gives the same latents.
    """
    steps = int(steps)
    if steps < 0:
      raise ValueError(f"steps must be >= 0, got {steps}")
    if not learning_rate > 0:
      raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    self._check_compressible()  # the rounded cost needs z's quantization offsets
    x = tf.cast(x, tf.float32)
    latents = list(self.analysis(x))
    moments = [tf.zeros_like(t) for t in latents for _ in "mv"]  # Adam's, per latent
    best, best_cost = latents, float("inf")
    for t in range(1, steps + 2):
      cost, update = self._refine_step(x, latents, moments, tf.constant(t),
                                       tf.constant(learning_rate, tf.float32))
      if float(cost) < best_cost:
        best, best_cost = latents, float(cost)
      if t <= steps:  # the last call only measures the last update
        latents, moments = update
    return tuple(best)

  @tf.function(reduce_retracing=True)
  def _refine_step(self, x, latents, moments, t, learning_rate):
    """(coded cost of `latents`, (latents, moments) after one Adam step)."""
    with tf.GradientTape() as tape:
      tape.watch(latents)
      loss, cost = self._refine_losses(x, *latents, seed=t)
    grads = tape.gradient(loss, latents)
    beta_1, beta_2 = 0.9, 0.999
    step = tf.cast(t, tf.float32)
    correction = tf.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
    new_latents, new_moments = [], moments[:]
    for i, (latent, grad) in enumerate(zip(latents, grads)):
      m = beta_1 * moments[2 * i] + (1 - beta_1) * grad
      v = beta_2 * moments[2 * i + 1] + (1 - beta_2) * tf.square(grad)
      new_moments[2 * i], new_moments[2 * i + 1] = m, v
      new_latents.append(latent - learning_rate * correction * m / (tf.sqrt(v) + 1e-7))
    return cost, (new_latents, new_moments)

  def _refine_losses(self, x, y, z, seed):
    """(loss to differentiate, the loss of the rounded latents as coding rounds them)."""
    def noise(like, stream):
      return tf.random.stateless_uniform(tf.shape(like), tf.stack([seed, stream]), -0.5, 0.5)
    z_hat = self.side_entropy_model.quantize(z)
    mean, index = self._mean_and_index(z + tf.stop_gradient(z_hat - z), tf.shape(y)[1:3],
                                       training=True)
    index = tf.clip_by_value(index, 0.0, self.num_scales - 1.0)
    prior_y = tfc.NoisyNormal(loc=0.0, scale=self.scale_fn(index))
    coded_y = tfc.NoisyNormal(loc=0.0, scale=self.scale_fn(tf.floor(index)))  # compress's
    centered = y if mean is None else y - mean
    y_hat = y + tf.stop_gradient(tf.round(centered) - centered)
    x_hat = self.g_s(y_hat) * 255.0
    pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)

    def loss(bits):
      out = {"x_hat": x_hat, "bpp": bits / (pixels * tf.math.log(2.0)),
             "mse": tf.reduce_mean(tf.math.squared_difference(x, x_hat))}
      return self.loss_and_scalars(x, out)[0]
    noisy = -(tf.reduce_sum(self.hyperprior.log_prob(z + noise(z, 0))) +
              tf.reduce_sum(prior_y.log_prob(centered + noise(y, 1))))
    rounded = -(tf.reduce_sum(self.hyperprior.log_prob(z_hat)) +
                tf.reduce_sum(coded_y.log_prob(tf.round(centered))))
    return loss(noisy), tf.stop_gradient(loss(rounded))

  def compress(self, x):
    """[string_y, string_z] (scalar strings) for one padded image x [1, Hp, Wp, 3]."""
    return self.compress_latents(*self.analysis(x))

  def compress_latents(self, y, z):
    """[string_y, string_z] for the latents of one image (`analysis` or
    `refine_latents`)."""
    self._check_compressible()
    z_hat = self.side_entropy_model.quantize(z)
    mean, index = self._mean_and_index(z_hat, tf.shape(y)[1:3])
    return [self.entropy_model.compress(y, index, loc=mean)[0],
            self.side_entropy_model.compress(z)[0]]

  def decompress_latents(self, strings, height, width):
    """y_hat [1, height / 16, width / 16, M] from `compress`'s strings (the padded size):
    what the entropy decoder recovers, the same on every machine."""
    self._check_compressible()
    string_y, string_z = strings
    y_shape, z_shape = self.latent_shapes(height, width)
    z_hat = self.side_entropy_model.decompress(string_z[None], z_shape)
    mean, index = self._mean_and_index(z_hat, y_shape)
    return self.entropy_model.decompress(string_y[None], index, loc=mean)

  def synthesis(self, y_hat):
    """x_hat float [1, H, W, 3] (0..255, unrounded) of decoded latents."""
    return self.g_s(y_hat) * 255.0

  def reconstruct(self, y_hat, x):  # x: the input, which models on a base layer read
    """call()'s x_hat of y_hat for the input x: `synthesis(y_hat)`."""
    del x
    return self.synthesis(y_hat)

  def decompress(self, strings, height, width):
    """x_hat float [1, height, width, 3] (the padded size; 0..255, unrounded) from
    `compress`'s strings."""
    return self.synthesis(self.decompress_latents(strings, height, width))
