"""Building blocks shared by tfcomp's model families."""
import tensorflow as tf
import tensorflow_compression as tfc

from tfcomp import metrics
from tfcomp import exact as exact_


def _fixed_number(name):
  """A property of GDN: the fixed value of parameter `name` as a Python float, or
  tfc.GDN's own tensor when it is a trained parameter."""
  base = getattr(tfc.GDN, name)

  def get(self):
    parameter = getattr(self, f"{name}_parameter")
    if parameter is not None and not callable(parameter) and not isinstance(
        parameter, tf.Variable):
      return float(parameter)
    return base.fget(self)
  return property(get)


class GDN(tfc.GDN):
  """tensorflow-compression's GDN / IGDN, with fixed alpha and epsilon as Python numbers.

  tfc.GDN holds a fixed alpha or epsilon as a constant tensor, so inside tf.function
  autograph turns its `alpha == 1` / `epsilon == 1` shortcuts into tf.cond, and the
  gradients of those into nested functions: a small HiFiC training step traced 101,801
  ops in 48 s instead of 5,091 in 9 s. The arithmetic and the weights are tfc.GDN's.
  """

  alpha = _fixed_number("alpha")
  epsilon = _fixed_number("epsilon")


class Conv(tf.keras.layers.Conv2D):
  """Keras Conv2D whose dilated form also works on maps smaller than the dilation.

  Keras's 'same' dilated convolution goes through space-to-batch, which fails on maps
  smaller than the dilation (a 1x1 tile's coarsest scale); explicit zero padding and a
  'valid' convolution compute the same values on any size.

  `channel_groups` = (input groups, output groups) says how its channels are laid out:
  a convolution reading the concatenation of three feature maps has three input groups,
  one feeding depth_to_space(2) four output groups. tfcomp.training needs it to widen a
  trained convolution, which grows each group rather than the whole axis.

  With `exact`, it computes on tfcomp.exact's grids: the same result on every
  machine, as the networks whose outputs become probabilities must.
  """

  def __init__(self, *args, channel_groups=(1, 1), exact=False, **kwargs):
    super().__init__(*args, **kwargs)
    self.channel_groups = tuple(int(g) for g in channel_groups)
    self.exact = bool(exact)
    self._frozen_grids = None  # see freeze_exact_grids

  @property
  def upsampling(self):
    """The factor by which it upsamples (see UpConv); 1: none."""
    return 1

  def call(self, inputs, training=False):
    convolve = self.convolution_op if training else self._inference_convolution
    if self.exact:
      outputs = exact_.conv(inputs, self.kernel, self.bias, convolve, training=training,
                            up=self.upsampling,
                            frozen=None if training else self._frozen_grids)
    else:
      outputs = tf.nn.bias_add(convolve(inputs, self.kernel), self.bias)
    return outputs if self.activation is None else self.activation(outputs)

  def _inference_convolution(self, inputs, kernel):
    if max(self.dilation_rate) == 1:
      return self.convolution_op(inputs, kernel)
    # CPU TensorFlow has a native dilated convolution but no gradient for it; coding
    # needs no gradient, and the native one is about 1.6x faster.
    return tf.nn.conv2d(inputs, kernel, self.strides, "SAME", dilations=self.dilation_rate)

  def convolution_op(self, inputs, kernel):
    if max(self.dilation_rate) == 1:
      return super().convolution_op(inputs, kernel)
    pad = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
           for d, k in zip(self.dilation_rate, self.kernel_size)]
    padded = tf.pad(inputs, [(0, 0)] + pad + [(0, 0)])
    return tf.nn.convolution(padded, kernel, strides=self.strides, padding="VALID",
                             dilations=self.dilation_rate)


def conv(filters, kernel_size, strides=1, dilation_rate=1, name=None,
         kernel_initializer="glorot_uniform", in_groups=1, out_groups=1, exact=False):
  """'same'-padded 2-D convolution with bias, the only convolution the models use.

  in_groups / out_groups: how many feature maps of equal depth its input concatenates and
  its output holds (see Conv); they matter only for widening a trained model.
  exact: compute on tfcomp.exact's grids (networks that feed a probability).
  """
  return Conv(filters, kernel_size, strides=strides, padding="same",
              dilation_rate=dilation_rate, name=name, kernel_initializer=kernel_initializer,
              channel_groups=(in_groups, out_groups), exact=exact)


class UpConv(Conv):
  """Upsampling by `strides` followed by a 'same' convolution: tensorflow-compression's
  SignalConv2D(corr=False, strides_up=s, padding="same_zeros"), the hyperprior's h_s,
  whose output is s times its input's size. The kernel is [k, k, in, out] as in Conv2D."""

  @property
  def upsampling(self):
    return self.strides[0]

  def convolution_op(self, inputs, kernel):
    size = self.kernel_size[0]
    stride = self.strides[0]
    shape = tf.shape(inputs)
    output_shape = tf.stack([shape[0], shape[1] * stride, shape[2] * stride, self.filters])
    pad = (size // 2, (size - 1) // 2)
    return tf.nn.conv2d_transpose(inputs, tf.transpose(kernel, [0, 1, 3, 2]), output_shape,
                                  strides=stride, padding=[(0, 0), pad, pad, (0, 0)])

  def _inference_convolution(self, inputs, kernel):
    return self.convolution_op(inputs, kernel)

  def compute_output_shape(self, input_shape):
    b, h, w, _ = tf.TensorShape(input_shape).as_list()
    up = lambda n: None if n is None else n * self.strides[0]  # noqa: E731
    return tf.TensorShape([b, up(h), up(w), self.filters])


def up_conv(filters, kernel_size, strides=2, activation=None, name=None, exact=False):
  """Upsampling convolution (see UpConv), with bias."""
  return UpConv(filters, kernel_size, strides=strides, activation=activation, name=name,
                exact=exact)


def is_conv(layer):
  """Whether `layer` is one of conv()'s convolutions (whose channel_groups are known)."""
  return isinstance(layer, Conv)


def snap_exact_kernels(model):
  """Rounds the kernels of `model`'s exact convolutions to their finest grids (the grids
  the exact path finds again in the rounded kernels), as tools/freeze.py stores them: the
  rounded floats compress to less than half. Where a large bias makes the exact path use
  a coarser grid for a channel, it rounds the rounded kernel, which may differ in the last
  step from rounding the original: measure the frozen copy, which every coder uses."""
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if is_conv(layer) and layer.exact and layer.built:
      e = exact_.kernel_grids(layer.kernel, layer.upsampling)
      layer.kernel.assign(tf.round(layer.kernel * exact_.pow2(e)) * exact_.pow2(-e))


def freeze_exact_grids(model):
  """Computes the kernel grids of `model`'s exact convolutions once, for a model whose
  weights no longer change (a codec's): its coding functions then neither recompute them
  nor trace the work, which the grids' search makes large. They are what the weights
  give, so nothing coded changes; a model that trains on must not be frozen."""
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if is_conv(layer) and layer.exact and layer.built:
      layer._frozen_grids = tuple(  # pylint: disable=protected-access
          t.numpy() for t in exact_.weight_grids(layer.kernel, layer.bias, layer.upsampling))


class ResBlock(tf.keras.layers.Layer):
  """EDSR residual block (Lim et al. 2017): conv, ReLU, conv, plus the input; no batch norm."""

  def __init__(self, filters, kernel_size=3, exact=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.exact = exact
    self.conv1 = conv(filters, kernel_size, name="conv1", exact=exact)
    self.conv2 = conv(filters, kernel_size, name="conv2", exact=exact)

  def call(self, x, training=False):
    return x + self.conv2(tf.nn.relu(self.conv1(x, training=training)), training=training)

  def make_identity(self):
    """Zeroes conv2, so the block passes its input through: a block added to a trained
    body (see tfcomp.training) then leaves what the body computes unchanged, and conv1
    still starts random, so both convolutions receive gradients once conv2 moves."""
    for v in self.conv2.weights:
      v.assign(tf.zeros_like(v))

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "exact": self.exact}


class ResidualBody(tf.keras.layers.Layer):
  """`num_blocks` ResBlocks and a final convolution, around a long skip (EDSR).

  The final convolution starts at zero, so a new body is the identity: a model grown by
  adding bodies, or blocks to a body, of a trained one (see tfcomp.training) starts out
  computing what it did.
  """

  def __init__(self, filters, num_blocks, kernel_size=3, exact=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.num_blocks = num_blocks
    self.kernel_size = kernel_size
    self.exact = exact
    self.blocks = [ResBlock(filters, kernel_size, exact=exact, name=f"block{i}")
                   for i in range(num_blocks)]
    self.last = conv(filters, kernel_size, name="last", kernel_initializer="zeros",
                     exact=exact)

  def call(self, x, training=False):
    y = x
    for block in self.blocks:
      y = block(y, training=training)
    return x + self.last(y, training=training)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "num_blocks": self.num_blocks,
            "kernel_size": self.kernel_size, "exact": self.exact}


class AtrousProbabilityClassifier(tf.keras.layers.Layer):
  """L3C's probability classifier: parallel dilated convolutions, concatenated, then 1x1.

  Widens the receptive field cheaply; outputs the raw mixture parameters (see
  tfcomp.entropy.split_params).
  """

  def __init__(self, filters, outputs, rates=(1, 2, 4), kernel_size=3, initial_output=None,
               zero_kernel=True, exact=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.outputs = outputs
    self.rates = tuple(rates)
    self.kernel_size = kernel_size
    self.exact = exact
    self.branches = [conv(filters, kernel_size, dilation_rate=r, name=f"atrous{r}",
                          exact=exact) for r in self.rates]
    self.linear = conv(outputs, 1, name="linear", in_groups=len(self.rates), exact=exact)
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
    branches = [b(x, training=training) for b in self.branches]
    return self.linear(tf.concat(branches, axis=-1), training=training)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "outputs": self.outputs,
            "rates": self.rates, "kernel_size": self.kernel_size, "exact": self.exact}


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
