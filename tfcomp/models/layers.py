"""Building blocks shared by tfcomp's model families."""
import tensorflow as tf

from tfcomp import metrics


class _Conv2D(tf.keras.layers.Conv2D):
  """Keras Conv2D whose dilated form also works on maps smaller than the dilation.

  Keras's 'same' dilated convolution goes through space-to-batch, which fails on maps
  smaller than the dilation (a 1x1 tile's coarsest scale); explicit zero padding and a
  'valid' convolution compute the same values on any size.

  `channel_groups` = (input groups, output groups) says how its channels are laid out:
  a convolution reading the concatenation of three feature maps has three input groups,
  one feeding depth_to_space(2) four output groups. tfcomp.training needs it to widen a
  trained convolution, which grows each group rather than the whole axis.
  """

  def __init__(self, *args, channel_groups=(1, 1), **kwargs):
    super().__init__(*args, **kwargs)
    self.channel_groups = tuple(int(g) for g in channel_groups)

  def convolution_op(self, inputs, kernel):
    if max(self.dilation_rate) == 1:
      return super().convolution_op(inputs, kernel)
    pad = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
           for d, k in zip(self.dilation_rate, self.kernel_size)]
    padded = tf.pad(inputs, [(0, 0)] + pad + [(0, 0)])
    return tf.nn.convolution(padded, kernel, strides=self.strides, padding="VALID",
                             dilations=self.dilation_rate)


def conv(filters, kernel_size, strides=1, dilation_rate=1, name=None,
         kernel_initializer="glorot_uniform", in_groups=1, out_groups=1):
  """'same'-padded 2-D convolution with bias, the only convolution the models use.

  in_groups / out_groups: how many feature maps of equal depth its input concatenates and
  its output holds (see _Conv2D); they matter only for widening a trained model.
  """
  return _Conv2D(filters, kernel_size, strides=strides, padding="same",
                 dilation_rate=dilation_rate, name=name, kernel_initializer=kernel_initializer,
                 channel_groups=(in_groups, out_groups))


def is_conv(layer):
  """Whether `layer` is one of conv()'s convolutions (whose channel_groups are known)."""
  return isinstance(layer, _Conv2D)


class ResBlock(tf.keras.layers.Layer):
  """EDSR residual block (Lim et al. 2017): conv, ReLU, conv, plus the input; no batch norm."""

  def __init__(self, filters, kernel_size=3, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.conv1 = conv(filters, kernel_size, name="conv1")
    self.conv2 = conv(filters, kernel_size, name="conv2")

  def call(self, x):
    return x + self.conv2(tf.nn.relu(self.conv1(x)))

  def make_identity(self):
    """Zeroes conv2, so the block passes its input through: a block added to a trained
    body (see tfcomp.training) then leaves what the body computes unchanged, and conv1
    still starts random, so both convolutions receive gradients once conv2 moves."""
    for v in self.conv2.weights:
      v.assign(tf.zeros_like(v))

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


class ResidualBody(tf.keras.layers.Layer):
  """`num_blocks` ResBlocks and a final convolution, around a long skip (EDSR).

  The final convolution starts at zero, so a new body is the identity: a model grown by
  adding bodies, or blocks to a body, of a trained one (see tfcomp.training) starts out
  computing what it did.
  """

  def __init__(self, filters, num_blocks, kernel_size=3, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.num_blocks = num_blocks
    self.kernel_size = kernel_size
    self.blocks = [ResBlock(filters, kernel_size, name=f"block{i}") for i in range(num_blocks)]
    self.last = conv(filters, kernel_size, name="last", kernel_initializer="zeros")

  def call(self, x):
    y = x
    for block in self.blocks:
      y = block(y)
    return x + self.last(y)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "num_blocks": self.num_blocks,
            "kernel_size": self.kernel_size}


class AtrousProbabilityClassifier(tf.keras.layers.Layer):
  """L3C's probability classifier: parallel dilated convolutions, concatenated, then 1x1.

  Widens the receptive field cheaply; outputs the raw mixture parameters (see
  tfcomp.entropy.split_params).
  """

  def __init__(self, filters, outputs, rates=(1, 2, 4), kernel_size=3, initial_output=None,
               zero_kernel=True, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.outputs = outputs
    self.rates = tuple(rates)
    self.kernel_size = kernel_size
    self.branches = [conv(filters, kernel_size, dilation_rate=r, name=f"atrous{r}")
                     for r in self.rates]
    self.linear = conv(outputs, 1, name="linear", in_groups=len(self.rates))
    if initial_output is not None:
      # Start from a fixed, sensible output (bias = initial_output) rather than random
      # mixtures. With zero_kernel the output is exactly that everywhere, and gradients
      # reach the kernel from the first step but the layers below only after it has moved:
      # right where the output is already a good prediction (SReC's block averages), slow
      # where the features must first learn what to predict (L3C).
      if zero_kernel:
        self.linear.kernel_initializer = tf.keras.initializers.Zeros()
      self.linear.bias_initializer = tf.keras.initializers.Constant(list(initial_output))

  def call(self, x, training=False):
    if training:
      branches = [b(x) for b in self.branches]
    else:
      # CPU TensorFlow has a native dilated convolution but no gradient for it; coding
      # needs no gradient, and the native one is about 1.6x faster.
      for b in self.branches:
        if not b.built:
          b(x)  # creates the weights, under their proper names
      branches = [tf.nn.bias_add(tf.nn.conv2d(x, b.kernel, 1, "SAME", dilations=r), b.bias)
                  for b, r in zip(self.branches, self.rates)]
    return self.linear(tf.concat(branches, axis=-1))

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "outputs": self.outputs,
            "rates": self.rates, "kernel_size": self.kernel_size}


class SoftToHardQuantizer(tf.keras.layers.Layer):
  """Quantization to centers with soft-to-hard gradients (Agustsson et al. 2017).

  Forward, each value snaps to its nearest center; backward, gradients flow through the
  soft assignment sum_l softmax(-sigma * (y - c_l)^2)_l * c_l. imgcomp learns the centers;
  L3C keeps them fixed and uniform in [-1, 1].

  Returns (z_hat, symbols): z_hat float with the centers' values, symbols int32 indexes.
  """

  def __init__(self, num_centers, sigma=1.0, center_range=(-1.0, 1.0), trainable_centers=False,
               **kwargs):
    super().__init__(**kwargs)
    if num_centers < 2:
      raise ValueError(f"num_centers must be at least 2, got {num_centers}")
    if not sigma > 0:
      raise ValueError(f"sigma must be positive, got {sigma}")
    self.num_centers = int(num_centers)
    self.sigma = float(sigma)
    self.center_range = tuple(float(c) for c in center_range)
    self.trainable_centers = bool(trainable_centers)
    self.centers = self.add_weight(
        "centers", shape=(self.num_centers,), trainable=self.trainable_centers,
        initializer=tf.keras.initializers.Constant(
            tf.linspace(*self.center_range, self.num_centers).numpy()))

  def call(self, y, training=False):
    distance = tf.square(y[..., None] - self.centers)
    symbols = tf.argmin(distance, axis=-1, output_type=tf.int32)
    z_hard = tf.gather(self.centers, symbols)
    if not training:
      return z_hard, symbols
    z_soft = tf.reduce_sum(tf.nn.softmax(-self.sigma * distance, axis=-1) * self.centers, -1)
    return z_soft + tf.stop_gradient(z_hard - z_soft), symbols

  def get_config(self):
    return {**super().get_config(), "num_centers": self.num_centers, "sigma": self.sigma,
            "center_range": self.center_range, "trainable_centers": self.trainable_centers}


def ms_ssim(x, y, max_value=255.0, weights=metrics.MS_SSIM_WEIGHTS):
  """Differentiable MS-SSIM of image batches [B, H, W, C] for training losses, [B].

  The conventions of tfcomp.metrics.ms_ssim (11x11 Gaussian, sigma 1.5, valid filtering,
  2x2 average pools), with as many of `weights`' scales as the image allows. Each scale's
  contrast-structure term is floored at a small positive value: the product of powers
  has no gradient at zero or below, where early, poor reconstructions land.
  """
  x, y = tf.cast(x, tf.float32), tf.cast(y, tf.float32)
  size = metrics.FILTER_SIZE
  side = min(x.shape[1], x.shape[2])
  scales = len(weights)
  while scales > 1 and (side - 1) // 2 ** (scales - 1) < size - 1:
    scales -= 1
  if side < size:
    raise ValueError(f"MS-SSIM needs images of at least {size} pixels per side, got {side}")
  channels = x.shape[-1]
  g = tf.constant(metrics.gaussian(), tf.float32)
  rows = tf.tile(tf.reshape(g, [size, 1, 1, 1]), [1, 1, channels, 1])
  cols = tf.tile(tf.reshape(g, [1, size, 1, 1]), [1, 1, channels, 1])

  def blur(t):
    t = tf.nn.depthwise_conv2d(t, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(t, cols, [1, 1, 1, 1], "VALID")

  c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
  value = 1.0
  for scale in range(scales):
    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x ** 2
    sigma_yy = blur(y * y) - mu_y ** 2
    sigma_xy = blur(x * y) - mu_x * mu_y
    cs = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    if scale == scales - 1:
      cs *= (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    term = tf.maximum(tf.reduce_mean(cs, axis=[1, 2]), 1e-4)
    value *= term ** weights[scale]
    x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
  return tf.reduce_mean(value, axis=-1)
