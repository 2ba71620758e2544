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

With transforms="layered" the codec leans on a lossy base layer, as RC (Mentzer et al.,
CVPR 2020) does for lossless coding: HEVC intra (tfcomp.base_layer, exactly decoded
everywhere) codes the image at a QP, and the learned codec adds what the base lacks:

    x --HEVC at QP--> base bytes --decode--> x_b
    (x - x_b, x_b) --g_a--> y --(hyperprior as above)--> y_hat
    y_hat --3 transposed convs--> features at 1/2 resolution --+
    x_b --space_to_depth 2---------------------------------------+--fusion (residual
         blocks)--> depth_to_space 2 --> + x_b = x_hat

The fusion's last convolution starts at zero, so an untrained model reconstructs x_b
itself; training (the same losses, D conditioned on y_hat) then moves x_hat where LPIPS
and D prefer, spending latent bits (in y, or in z through h_s's means) where the base alone
cannot get there. The rate terms
count y and z only: the base's bits do not depend on the weights. One set of weights
serves every QP it trained on (`train_qps`); a config's `qp` picks the rate. Its coding
runs libheif in Python, outside TensorFlow's graph, so it has no SavedModel.
"""
import numpy as np
import tensorflow as tf

from tfcomp import base_layer, lpips
from tfcomp.models import hyperprior, layers


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


class _LayeredGenerator(tf.keras.layers.Layer):
  """g_s on a base layer: called on (y_hat, x_b in 0..1), returns x_hat in 0..1 (see the
  module docstring). y_hat reaches half resolution through three 2x transposed
  convolutions; the fusion works on x_b folded 2x2 and those features, so its cost per
  pixel is a quarter of a full-resolution network's."""

  def __init__(self, num_filters, fusion_filters, fusion_blocks, **kwargs):
    super().__init__(**kwargs)
    self.upsample = tf.keras.Sequential(
        [tf.keras.layers.Conv2DTranspose(num_filters, 5, strides=2, padding="same",
                                         activation="relu", name=f"up_{i}")
         for i in range(3)], name="upsample")
    self.fusion = tf.keras.Sequential([
        tf.keras.layers.Conv2D(fusion_filters, 3, padding="same", name="head"),
        layers.ResidualBody(fusion_filters, fusion_blocks, name="body"),
        # Zero at the start: x_hat = x_b until training has learnt better.
        tf.keras.layers.Conv2D(12, 3, padding="same", kernel_initializer="zeros",
                               name="out")], name="fusion")

  @property
  def layers(self):  # what Hyperprior.coding_copy copies weight by weight
    return [self.upsample, self.fusion]

  def build(self, input_shape):
    self.upsample.build(input_shape)
    self.fusion.build((None, None, None, self.upsample.layers[-1].filters + 12))
    super().build(input_shape)

  def call(self, inputs):
    y_hat, base = inputs
    h = tf.concat([self.upsample(y_hat), tf.nn.space_to_depth(base - 0.5, 2)], -1)
    return base + tf.nn.depth_to_space(self.fusion(h), 2)


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


TRANSFORMS = ("hific", "hyperprior", "layered")


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
    transforms: "hific", the paper's g_a and g_s, "hyperprior", the GDN transforms of
      tfcomp.models.hyperprior, whose weights a trained hyperprior provides (see below),
      or "layered": coding on a base layer (the module docstring), g_a four stride-2 5x5
      convolutions of width F with ReLUs.
    num_residual_blocks: g_s's residual blocks (9; "hific" transforms only).
    discriminator_filters: D's first width (64).
    k_m, k_p: weights of MSE (on 0..255 values) and of LPIPS.
    beta: weight of the generator's GAN loss; 0 trains without a discriminator (the
      paper's first stage).
    target_bpp: r_t, the rate the rate-target control steers to.
    lambda_a, lambda_b: the rate weight while the batch's rate is above / below r_t.
    warmup_steps, warmup_factor: the rate weight is multiplied by warmup_factor during
      the first warmup_steps training steps.
    base_codec: the base layer's codec (tfcomp.base_layer.BASE_CODECS); "layered" only.
    qp: the base layer's quantizer when coding ("layered").
    train_qps: the quantizers of the training bases, one drawn per crop ("layered").
    fusion_filters, fusion_blocks: width and residual blocks of the layered generator's
      fusion network.
    num_scales, scale_min, scale_max, kernel_parameter, compression: as Hyperprior's.
  """

  def __init__(self, num_filters=60, latent_channels=220, hyper_filters=320,
               transforms="hific", num_residual_blocks=9, discriminator_filters=64,
               k_m=0.075 * 2 ** -5,
               k_p=1.0, beta=0.15, target_bpp=0.14, lambda_a=2.0, lambda_b=2 ** -4,
               warmup_steps=50000, warmup_factor=2.0, base_codec=None, qp=None,
               train_qps=(), fusion_filters=48, fusion_blocks=3, num_scales=64,
               scale_min=0.11, scale_max=256.0, kernel_parameter="rdft", compression=False,
               **kwargs):
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
    self.layered = transforms == "layered"
    train_qps = tuple(int(q) for q in train_qps)
    if self.layered:
      if base_codec not in base_layer.BASE_CODECS:
        raise ValueError(f"layered transforms need base_codec in {base_layer.BASE_CODECS}, "
                         f"got {base_codec!r}")
      for q in (qp, *train_qps):
        base_layer.check_qp(q)
      if not train_qps:
        raise ValueError("layered transforms need train_qps, the training bases' QPs")
      for arg, value in (("fusion_filters", fusion_filters),
                         ("fusion_blocks", fusion_blocks + 1)):
        if value < 1:
          raise ValueError(f"{arg} is too small: {value}")
    elif base_codec is not None or qp is not None or train_qps:
      raise ValueError(f"base_codec, qp and train_qps belong to layered transforms, not "
                       f"{transforms!r}")
    self.base_codec, self.qp = base_codec, qp
    self.fusion_filters, self.fusion_blocks = int(fusion_filters), int(fusion_blocks)
    # Read by _image_transforms, which Hyperprior's constructor calls.
    self.transforms = transforms
    self.analysis_channels = 6 if self.layered else 3  # x - x_b, x_b
    self._generator_config = (int(num_filters), int(num_residual_blocks))
    super().__init__(num_filters=num_filters, latent_channels=latent_channels,
                     hyper_filters=hyper_filters, variant="mean_scale", distortion="mse",
                     num_scales=num_scales, scale_min=scale_min, scale_max=scale_max,
                     ste_decoder=True, kernel_parameter=kernel_parameter,
                     compression=compression, **kwargs)
    self.num_residual_blocks = int(num_residual_blocks)
    self.train_qps = train_qps  # after Model's constructor, which may see it empty
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

  @property
  def graph_coding(self):
    """Whether compress / decompress trace into a SavedModel: not on a base layer, which
    codes through libheif in Python."""
    return not self.layered

  @property
  def stream_names(self):  # the strings of `compress`, as the file's sections
    return ("base", "y", "z") if self.layered else ("y", "z")

  @property
  def refines(self):
    """Whether the encoder can fit latents to an image (`refine_latents`): not on a base
    layer, whose reconstruction that fit does not model."""
    return not self.layered

  def _image_transforms(self):
    if self.transforms == "hyperprior":
      return super()._image_transforms()
    num_filters, blocks = self._generator_config
    if self.layered:
      g_a = tf.keras.Sequential(
          [tf.keras.layers.Conv2D(num_filters, 5, strides=2, padding="same",
                                  activation="relu", name=f"conv_{i}") for i in range(3)] +
          [tf.keras.layers.Conv2D(self.latent_channels, 5, strides=2, padding="same",
                                  name="conv_3")], name="g_a")
      return g_a, _LayeredGenerator(num_filters, self.fusion_filters, self.fusion_blocks,
                                    name="g_s")
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
            **({"base_codec": self.base_codec, "qp": self.qp,
                "train_qps": list(self.train_qps), "fusion_filters": self.fusion_filters,
                "fusion_blocks": self.fusion_blocks} if self.layered else {}),
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

  # -- the base layer ("layered") ----------------------------------------------------------

  def with_base(self, x):
    """(x [B, H, W, 6]: images beside their base reconstructions, base bits [B] or None):
    an input of [B, H, W, 6] (the training pipeline's cached pairs, whose base size is
    unknown) as it is; of [B, H, W, 3] with its bases coded here, at `qp`."""
    x = tf.convert_to_tensor(x)
    if x.shape[-1] == 6:
      return x, None
    if x.shape[-1] != 3:
      raise ValueError(f"layered HiFiC takes images [B, H, W, 3] or image and base "
                       f"[B, H, W, 6], got shape {x.shape}")
    base, bits = tf.numpy_function(
        lambda images: base_layer.reconstruct_batch(images, [self.qp] * len(images)), [x],
        [tf.uint8, tf.float32], stateful=False)
    return (tf.concat([x, tf.ensure_shape(base, x.shape)], -1),
            tf.ensure_shape(bits, x.shape[:1]))

  def analysis(self, x):
    if not self.layered:
      return super().analysis(x)
    x = tf.cast(x, tf.float32)
    y = self.g_a(tf.concat([x[..., :3] - x[..., 3:], x[..., 3:]], -1) / 255.0)
    return y, self.h_a(y)

  def reconstruct(self, y_hat, x):
    if not self.layered:
      return super().reconstruct(y_hat, x)
    return self.synthesis_on_base(y_hat, x[..., 3:])

  def synthesis_on_base(self, y_hat, base):
    """x_hat float [B, H, W, 3] (0..255, unrounded) of decoded latents and the base
    reconstruction (0..255) they refine ("layered")."""
    return self.g_s((y_hat, tf.cast(base, tf.float32) / 255.0)) * 255.0

  def training_companions(self, files, cache_dir, log=None):
    """{training image: [its base reconstruction at each of train_qps]} (see
    tfcomp.training), coded once into `cache_dir`; None unless layered."""
    if not self.layered:
      return None
    return base_layer.cached_reconstructions(files, self.train_qps, cache_dir, log=log)

  def call(self, x, training=False, latents=None):
    """Hyperprior's outputs; in training with a discriminator also "d_real" and "d_fake",
    D's logits on x and on x_hat, both conditioned on stop_gradient(y_hat).

    Layered: x is [B, H, W, 3] (its base layers coded here) or [B, H, W, 6] (images and
    base reconstructions); "bits" and "bpp" then include the base's bits where known
    ("bits_base", 0 where not), and "x_b" is the base reconstruction.
    """
    if not self.layered:
      return self._call(x, training, latents)
    x, base_bits = self.with_base(x)
    out = self._call(x, training, latents)
    base_bits = tf.zeros_like(out["bits"]) if base_bits is None else base_bits
    pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
    out.update(bits=out["bits"] + base_bits, bits_base=base_bits,
               bpp=out["bpp"] + tf.reduce_sum(base_bits) / pixels,
               bpp_base=tf.reduce_sum(base_bits) / pixels, x_b=x[..., 3:])
    return out

  def _call(self, x, training, latents):
    out = super().call(x, training=training, latents=latents)
    if training and self.discriminator is not None:
      x = tf.cast(x, tf.float32)[..., :3]
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
    """The generator's loss and, with a discriminator in training, D's ("d_loss").

    The rate terms take the learned latents' bits: a base layer's do not depend on the
    weights, and its rate is fixed by the QP."""
    x = tf.cast(x, tf.float32)[..., :3]
    x_hat = out["x_hat"]
    perceptual = tf.reduce_mean(lpips.load()(x_hat, x))
    learned_bpp = out["bpp"] - out.get("bpp_base", 0.0)
    weight = self.rate_weight(learned_bpp, step)
    loss = (tf.stop_gradient(weight) * learned_bpp + self.k_m * out["mse"] +
            self.k_p * perceptual)
    psnr = tf.reduce_mean(tf.image.psnr(x, tf.clip_by_value(x_hat, 0, 255), 255.0))
    scalars = {"bpp": out["bpp"], "mse": out["mse"], "psnr": psnr, "lpips": perceptual,
               "rate_weight": weight}
    if self.layered:
      scalars.update({"bpp/base": out["bpp_base"], "bpp/latents": learned_bpp})
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

  def summary_images(self, x, out):
    images = super().summary_images(tf.cast(x, tf.float32)[..., :3], out)
    if self.layered:
      images["x_b"] = tf.cast(out["x_b"], tf.uint8)
    return images

  # -- real bitstreams on a base layer ---------------------------------------------------

  def compress(self, x):
    """Hyperprior's [string_y, string_z]; layered, [base bytes, string_y, string_z] for one
    padded image x [1, Hp, Wp, 3] (uint8), the base coded at `qp` (in Python: libheif)."""
    if not self.layered:
      return super().compress(x)
    image = np.asarray(x, np.uint8)[0]
    data, base = base_layer.reconstruct(image, self.qp)
    return [data] + list(self._compress_latents_traced(
        tf.constant(np.concatenate([image, base], -1)[None])).numpy())

  @tf.function(reduce_retracing=True)
  def _compress_latents_traced(self, x):
    return tf.stack(hyperprior.Hyperprior.compress(self, x))

  def decompress_latents(self, strings, height, width):
    """y_hat of `compress`'s strings (a layered model's base stream is not read)."""
    return super().decompress_latents(list(strings)[-2:], height, width)

  def decompress(self, strings, height, width):
    """x_hat float [1, height, width, 3] (the padded size; 0..255, unrounded) of `compress`'s
    strings; layered, the base decoded first (FormatError when it does not decode to
    height x width)."""
    if not self.layered:
      return super().decompress(strings, height, width)
    data = strings[0].numpy() if isinstance(strings[0], tf.Tensor) else strings[0]
    base = base_layer.decode(bytes(data), height, width)
    return self._decompress_traced(tf.stack(list(strings)[1:]), tf.constant(base[None]),
                                   tf.constant(height), tf.constant(width))

  @tf.function(reduce_retracing=True)
  def _decompress_traced(self, strings, base, height, width):
    return self.synthesis_on_base(self.decompress_latents([strings[0], strings[1]], height,
                                                          width), base)
