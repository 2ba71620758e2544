"""HiFiC: generative image compression with a conditional GAN.

Mentzer, Toderici, Tschannen, Agustsson, "High-Fidelity Generative Image Compression",
NeurIPS 2020. The codec is the mean-scale hyperprior of tfcomp.models.hyperprior (same
entropy models, same exact h_s, same bitstreams) with the paper's transforms, trained
against a discriminator that sees the quantized latent:

    x --g_a--> y --h_a--> z --Q--> z_hat --h_s--> mu, sigma index     (as Hyperprior)
    y --Q around mu--> y_hat --g_s--> x_hat
    D(x or x_hat, stop_gradient(y_hat)) -> per-patch logits          (training only)

    g_a: conv 7x7 (F), four stride-2 conv 3x3 (2F, 4F, 8F, 16F), conv 3x3 to M;
         ChannelNorm and ReLU after every conv but the last
    g_s: ChannelNorm, conv 3x3 (16F), ChannelNorm, residual blocks with a global skip,
         four stride-2 transposed conv 3x3 (8F ... F) with ChannelNorm and ReLU,
         conv 7x7 to 3
    D:   y_hat -> conv 3x3 (12), LeakyReLU 0.2, nearest upsampling x16, concatenated
         with the image; spectrally normalized 4x4 convs (D, 2D, 4D stride 2; 8D), then
         a 4x4 conv to one logit per patch

ChannelNorm normalizes each pixel's vector across channels with a learned per-channel
affine (Keras' LayerNormalization over the last axis): unlike batch or instance
normalization it does not depend on the image size or the batch, so a model trained on
crops decodes full images as it trained.

The generator (g_a, g_s, hyperprior) minimizes

    lambda(bpp) * bpp * w(step) + k_M * MSE + k_P * LPIPS + beta * -log D(x_hat)

where lambda = lambda_a while the batch's rate is above target_bpp and lambda_b below it
(rate-target control), and w(step) = warmup_factor during the first warmup_steps (the rate
term weighted more early on), 1 after. MSE is on 0..255 values, LPIPS is LPIPS v0.1 with
the AlexNet backbone (tfcomp.lpips; its weights are read from a path, not shipped). D
minimizes the non-saturating GAN loss; each training step updates both from one forward
pass (`loss_groups`), HiFiC's one D step per G step. With beta = 0 there is no
discriminator: the paper's first stage (rate + MSE + LPIPS), which the GAN stage is then
warm-started from. A frozen (compression) model never holds D: decoding does not need it.

As in the paper, g_s is trained on y rounded around the mean (straight-through), the
values it decodes from.
"""
import tensorflow as tf

from tfcomp import lpips
from tfcomp.models import hyperprior


def _channel_norm(name):
  return tf.keras.layers.LayerNormalization(axis=-1, epsilon=1e-3, name=name)


class _ResidualBlock(tf.keras.layers.Layer):
  """conv, ChannelNorm, ReLU, conv, ChannelNorm, plus the input (HiFiC's generator)."""

  def __init__(self, filters, **kwargs):
    super().__init__(**kwargs)
    self.body = tf.keras.Sequential([
        tf.keras.layers.Conv2D(filters, 3, padding="same", name="conv_0"),
        _channel_norm("norm_0"), tf.keras.layers.ReLU(),
        tf.keras.layers.Conv2D(filters, 3, padding="same", name="conv_1"),
        _channel_norm("norm_1")], name="body")

  def build(self, input_shape):
    self.body.build(input_shape)
    super().build(input_shape)

  def call(self, x):
    return x + self.body(x)


class _Generator(tf.keras.layers.Layer):
  """g_s: head, residual blocks around a global skip, four 2x upsamplings, 7x7 conv."""

  def __init__(self, num_filters, num_residual_blocks, **kwargs):
    super().__init__(**kwargs)
    wide = 16 * num_filters
    self.head = tf.keras.Sequential([
        _channel_norm("norm_in"),
        tf.keras.layers.Conv2D(wide, 3, padding="same", name="conv"),
        _channel_norm("norm_out")], name="head")
    self.blocks = tf.keras.Sequential(
        [_ResidualBlock(wide, name=f"block_{i}") for i in range(num_residual_blocks)],
        name="blocks")
    tail = []
    for i, scale in enumerate((8, 4, 2, 1)):
      tail += [tf.keras.layers.Conv2DTranspose(scale * num_filters, 3, strides=2,
                                               padding="same", name=f"up_{i}"),
               _channel_norm(f"norm_{i}"), tf.keras.layers.ReLU()]
    tail.append(tf.keras.layers.Conv2D(3, 7, padding="same", name="conv_out"))
    self.tail = tf.keras.Sequential(tail, name="tail")

  def build(self, input_shape):
    self.head.build(input_shape)
    wide = input_shape[:-1] + (self.head.layers[1].filters,)
    self.blocks.build(wide)
    self.tail.build(wide)
    super().build(input_shape)

  def call(self, y_hat):
    h = self.head(y_hat)
    return self.tail(h + self.blocks(h))


class SpectralConv(tf.keras.layers.Conv2D):
  """Conv2D with a spectrally normalized kernel W / sigma(W) (Miyato, Kataoka, Koyama,
  Yoshida, "Spectral Normalization for Generative Adversarial Networks", ICLR 2018).

  sigma is estimated by one power iteration per training call from a persistent vector
  u, and the convolution differentiates through W / sigma with u and v held fixed, as in
  the paper and compare_gan (HiFiC's). Written here because Keras's
  SpectralNormalization instead overwrites the kernel with W / sigma, so its gradient
  ignores the normalization, and it branches in Python on a tensor, which fails when
  traced.
  """

  def build(self, input_shape):
    super().build(input_shape)
    self.u = self.add_weight(name="u", shape=(1, self.filters), trainable=False,
                             initializer=tf.keras.initializers.TruncatedNormal(stddev=1.0))

  def normalized_kernel(self, training=False):
    w = tf.reshape(self.kernel, [-1, self.filters])
    u = self.u
    if training:
      v = tf.math.l2_normalize(tf.matmul(u, w, transpose_b=True))
      u = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(v, w)))
      self.u.assign(u)
    v = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(u, w, transpose_b=True)))
    sigma = tf.reduce_sum(tf.matmul(v, w) * u)
    return self.kernel / sigma

  def call(self, inputs, training=False):
    outputs = self.convolution_op(inputs, self.normalized_kernel(training))
    return tf.nn.bias_add(outputs, self.bias)


class Discriminator(tf.keras.layers.Layer):
  """HiFiC's patch discriminator, conditioned on the quantized latent.

  Called on (images [B, H, W, 3] in 0..255, y_hat [B, H/16, W/16, M]); returns logits
  [B, H/8, W/8] (one per patch). Spectral normalization (SpectralConv) bounds each
  convolution's Lipschitz constant.
  """

  def __init__(self, filters=64, **kwargs):
    super().__init__(**kwargs)
    if filters < 1:
      raise ValueError(f"discriminator filters must be positive, got {filters}")
    self.latent_conv = SpectralConv(12, 3, padding="same", name="latent")
    self.convs = [SpectralConv(f, 4, strides=s, padding="same", name=f"conv_{i}")
                  for i, (f, s) in enumerate(((filters, 2), (2 * filters, 2),
                                              (4 * filters, 2), (8 * filters, 1)))]
    self.out = SpectralConv(1, 4, padding="same", name="out")

  def build(self, input_shape):
    # Spatial sides left open: Keras would otherwise pin the wrappers' input specs to
    # the first call's sizes.
    (*_, image_channels), (*_, latent_channels) = input_shape
    self.latent_conv.build((None, None, None, latent_channels))
    channels = image_channels + self.latent_conv.filters
    for conv in self.convs + [self.out]:
      conv.build((None, None, None, channels))
      channels = conv.filters
    super().build(input_shape)

  def call(self, inputs, training=False):
    x, y_hat = inputs
    latent = tf.nn.leaky_relu(self.latent_conv(y_hat, training=training), 0.2)
    # Nearest-neighbour upsampling to the image (g_a downsamples 16x).
    latent = tf.repeat(tf.repeat(latent, 16, axis=1), 16, axis=2)
    h = tf.concat([tf.cast(x, tf.float32) / 255.0, latent], axis=-1)
    for conv in self.convs:
      h = tf.nn.leaky_relu(conv(h, training=training), 0.2)
    return self.out(h, training=training)[..., 0]


TRANSFORMS = ("hific", "hyperprior")


class HiFiC(hyperprior.Hyperprior):
  """HiFiC (see the module docstring): a mean-scale hyperprior codec with the paper's
  transforms, trained on rate, MSE, LPIPS and a conditional GAN.

  The paper's transforms learn slowly: its ChannelNorms discard each pixel's magnitude,
  which g_s must learn to carry in the direction of its features, and the paper trains
  2M steps. With transforms="hyperprior" the codec is a Hyperprior of the same sizes in
  every weight, so training can start from a trained one (`tools/train.py --restore
  hyperprior.npz`) and spend its steps on the GAN objective: the CPU-sized configs.

  Args:
    num_filters: F, g_a's first width (60 in the paper); g_a and g_s reach 16F. With
      transforms "hyperprior": N, the width of Ballé's transforms.
    latent_channels: M, channels of y (220).
    hyper_filters: channels of h_a / h_s and of z (320).
    transforms: "hific", the paper's g_a and g_s, or "hyperprior", the GDN transforms of
      tfcomp.models.hyperprior, whose weights a trained hyperprior provides (see below).
    num_residual_blocks: g_s's residual blocks (9; "hific" transforms only).
    discriminator_filters: D's first width (64).
    k_m, k_p: weights of MSE (on 0..255 values) and of LPIPS.
    beta: weight of the generator's GAN loss; 0 trains without a discriminator (the
      paper's first stage).
    target_bpp: r_t, the rate the rate-target control steers to.
    lambda_a, lambda_b: the rate weight while the batch's rate is above / below r_t.
    warmup_steps, warmup_factor: the rate weight is multiplied by warmup_factor during
      the first warmup_steps training steps.
    num_scales, scale_min, scale_max, kernel_parameter, compression: as Hyperprior's.
  """

  def __init__(self, num_filters=60, latent_channels=220, hyper_filters=320,
               transforms="hific", num_residual_blocks=9, discriminator_filters=64,
               k_m=0.075 * 2 ** -5,
               k_p=1.0, beta=0.15, target_bpp=0.14, lambda_a=2.0, lambda_b=2 ** -4,
               warmup_steps=50000, warmup_factor=2.0, num_scales=64, scale_min=0.11,
               scale_max=256.0, kernel_parameter="rdft", compression=False, **kwargs):
    for arg, value in (("num_residual_blocks", num_residual_blocks),
                       ("warmup_steps", warmup_steps + 1)):
      if value < 1:
        raise ValueError(f"{arg} is too small: {value}")
    for arg, value in (("k_m", k_m), ("k_p", k_p), ("beta", beta), ("lambda_a", lambda_a),
                       ("lambda_b", lambda_b), ("warmup_factor", warmup_factor)):
      if not value >= 0:
        raise ValueError(f"{arg} must be >= 0, got {value}")
    if not target_bpp > 0:
      raise ValueError(f"target_bpp must be positive, got {target_bpp}")
    if transforms not in TRANSFORMS:
      raise ValueError(f"transforms must be one of {TRANSFORMS}, got {transforms!r}")
    # Read by _image_transforms, which Hyperprior's constructor calls.
    self.transforms = transforms
    self._generator_config = (int(num_filters), int(num_residual_blocks))
    super().__init__(num_filters=num_filters, latent_channels=latent_channels,
                     hyper_filters=hyper_filters, variant="mean_scale", distortion="mse",
                     num_scales=num_scales, scale_min=scale_min, scale_max=scale_max,
                     ste_decoder=True, kernel_parameter=kernel_parameter,
                     compression=compression, **kwargs)
    self.num_residual_blocks = int(num_residual_blocks)
    self.discriminator_filters = int(discriminator_filters)
    self.k_m, self.k_p, self.beta = float(k_m), float(k_p), float(beta)
    self.target_bpp = float(target_bpp)
    self.lambda_a, self.lambda_b = float(lambda_a), float(lambda_b)
    self.warmup_steps, self.warmup_factor = int(warmup_steps), float(warmup_factor)
    self.discriminator = None
    if self.beta > 0 and not compression:
      self.discriminator = Discriminator(self.discriminator_filters, name="discriminator")
      self.discriminator.build(((None, None, None, 3),
                                (None, None, None, self.latent_channels)))

  def _image_transforms(self):
    if self.transforms == "hyperprior":
      return super()._image_transforms()
    num_filters, blocks = self._generator_config
    layers = [tf.keras.layers.Conv2D(num_filters, 7, padding="same", name="conv_0"),
              _channel_norm("norm_0"), tf.keras.layers.ReLU()]
    for i in range(1, 5):
      layers += [tf.keras.layers.Conv2D(num_filters * 2 ** i, 3, strides=2, padding="same",
                                        name=f"conv_{i}"),
                 _channel_norm(f"norm_{i}"), tf.keras.layers.ReLU()]
    layers.append(tf.keras.layers.Conv2D(self.latent_channels, 3, padding="same",
                                         name="conv_5"))
    g_a = tf.keras.Sequential(layers, name="g_a")
    g_s = tf.keras.Sequential([_Generator(num_filters, blocks, name="generator")],
                              name="g_s")
    return g_a, g_s

  def get_config(self):
    return {"num_filters": self.num_filters, "latent_channels": self.latent_channels,
            "hyper_filters": self.hyper_filters, "transforms": self.transforms,
            "num_residual_blocks": self.num_residual_blocks,
            "discriminator_filters": self.discriminator_filters, "k_m": self.k_m,
            "k_p": self.k_p, "beta": self.beta, "target_bpp": self.target_bpp,
            "lambda_a": self.lambda_a, "lambda_b": self.lambda_b,
            "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor,
            "num_scales": self.num_scales, "scale_min": self.scale_min,
            "scale_max": self.scale_max, "kernel_parameter": self.kernel_parameter,
            "compression": self.compression}

  def loss_groups(self):
    """[(scalar, variables)]: the generator side minimizes "loss", D "d_loss"."""
    if self.discriminator is None:
      return [("loss", self.trainable_variables)]
    critic = {id(v) for v in self.discriminator.trainable_variables}
    return [("loss", [v for v in self.trainable_variables if id(v) not in critic]),
            ("d_loss", self.discriminator.trainable_variables)]

  def call(self, x, training=False, latents=None):
    """Hyperprior's outputs; in training with a discriminator also "d_real" and "d_fake",
    D's logits on x and on x_hat, both conditioned on stop_gradient(y_hat)."""
    out = super().call(x, training=training, latents=latents)
    if training and self.discriminator is not None:
      x = tf.cast(x, tf.float32)
      y_hat = tf.stop_gradient(out["y_hat"])
      # One pass over real and fake: D's gradient through x_hat reaches only the
      # generator's loss, and each loss group differentiates its own variables.
      logits = self.discriminator((tf.concat([x, out["x_hat"]], 0),
                                   tf.concat([y_hat, y_hat], 0)), training=True)
      out["d_real"], out["d_fake"] = tf.split(logits, 2)
    return out

  def rate_weight(self, bpp, step=None):
    """lambda_a above target_bpp, lambda_b at or below, times the warm-up factor while
    step < warmup_steps (no warm-up when step is None: evaluation)."""
    weight = tf.where(bpp > self.target_bpp, self.lambda_a, self.lambda_b)
    if step is not None:
      weight *= tf.where(tf.cast(step, tf.int64) < self.warmup_steps, self.warmup_factor,
                         1.0)
    return weight

  def loss_and_scalars(self, x, out, step=None):
    """The generator's loss and, with a discriminator in training, D's ("d_loss")."""
    x = tf.cast(x, tf.float32)
    x_hat = out["x_hat"]
    perceptual = tf.reduce_mean(lpips.load()(x_hat, x))
    weight = self.rate_weight(out["bpp"], step)
    loss = (tf.stop_gradient(weight) * out["bpp"] + self.k_m * out["mse"] +
            self.k_p * perceptual)
    psnr = tf.reduce_mean(tf.image.psnr(x, tf.clip_by_value(x_hat, 0, 255), 255.0))
    scalars = {"bpp": out["bpp"], "mse": out["mse"], "psnr": psnr, "lpips": perceptual,
               "rate_weight": weight}
    if "d_fake" in out:
      # Non-saturating GAN losses, on logits: -log D(x_hat) for G,
      # -log D(x) - log(1 - D(x_hat)) for D.
      g_loss = tf.reduce_mean(tf.nn.softplus(-out["d_fake"]))
      d_loss = (tf.reduce_mean(tf.nn.softplus(-out["d_real"])) +
                tf.reduce_mean(tf.nn.softplus(out["d_fake"])))
      loss += self.beta * g_loss
      scalars.update(g_loss=g_loss, d_loss=d_loss,
                     d_real=tf.reduce_mean(tf.sigmoid(out["d_real"])),
                     d_fake=tf.reduce_mean(tf.sigmoid(out["d_fake"])))
    scalars["loss"] = loss
    return loss, scalars
