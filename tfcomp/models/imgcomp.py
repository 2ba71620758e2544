"""imgcomp: an importance-map autoencoder with learned centers and a 3D context model.

Mentzer, Agustsson, Tschannen, Timofte, Van Gool, "Conditional Probability Models for
Deep Image Compression", CVPR 2018.

    x --g_a--> [heatmap | z] (C + 1 channels, 1/8 resolution)
    heatmap --sigmoid * C--> importance map y --> mask m (channels k >= ceil(y) zeroed)
    z * m --nearest of L learned centers--> q_hat (symbols: center indices)
    q_hat --g_s--> x_hat
    q_hat as a (C, h, w) volume --P (3D masked CNN, causal over channel, row, column)-->
        an L-way distribution per symbol --> rate H (bits per symbol)

Training: the autoencoder and the centers minimize
`distortion_weight * d + mse_weight * MSE + beta * max(H_soft - H_target, 0)` (d = 1 -
MS-SSIM or MSE; mse_weight = 0 in the paper; H_soft the mean of H and of the mask-weighted
bits, through which the rate reaches the importance map), the
context model P minimizes H, each with its own optimizer (`loss_groups`).

The context model is an integer network: weights, biases and activations are snapped to
fixed grids (straight-through in training) and every product and sum stays an integer
below 2**24, so float32 convolutions and matrix products compute it exactly in any order.
The encoder's one parallel pass and the decoder's wavefront steps therefore build
identical CDFs. Both go through one step function, `ContextModel.step`, which evaluates
the network at a set of volume positions from windows of every layer's activations.
"""
import numpy as np
import tensorflow as tf

from tfcomp import ops
from tfcomp.models import layers

DISTORTIONS = ("ms_ssim", "mse")

# Fixed-point grids of the context model (see the module docstring). Weights in units of
# 1/128 with |w| <= 255, activations in units of 1/8 within [-64, 63]: with at most
# 14 taps x 24 channels per output, every partial sum stays below 2**24.
W_SCALE = 128.0
W_MAX = 255.0
A_SCALE = 8.0
A_MIN, A_MAX = -64.0, 63.0
ACC_SCALE = W_SCALE * A_SCALE  # accumulator units per 1.0
LOGIT_STEP = 64.0  # accumulator units per logit grid step (1/16 nat)
MAX_LOGIT_GAP = 255  # logits further below the maximum are clipped to this gap
MAX_FAN_IN = 14 * 32  # taps x channels bound that keeps sums exact (checked)

# Taps of the 2x3x3 masked kernels as (depth, row, column) offsets. Depth -1 is the
# previous channel, fully known; in the current channel, rows above and the left
# neighbour. Mask "B" also sees the position itself (its earlier layers' activation).
_TAPS_A = [(-1, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] + [
    (0, -1, -1), (0, -1, 0), (0, -1, 1), (0, 0, -1)]
_TAPS_B = _TAPS_A + [(0, 0, 0)]
# Wavefront: with four 3x3 layers the previous channel is seen up to 4 rows and columns
# away, so symbols with equal 13 * channel + 2 * row + column never depend on each other.
WAVE = (13, 2, 1)
# Wavefronts a decoding step reads: its own and those up to the farthest tap's behind.
RING = 1 + max(-sum(w * o for w, o in zip(WAVE, tap)) for tap in _TAPS_B)


def _bordered(taps):
  """Tap offsets as indexes into a volume behind a border of one channel in front and one
  row and column around (where every tap of every position lands inside)."""
  return [[dz + 1, dy + 1, dx + 1] for dz, dy, dx in taps]


def _round_ste(x):
  return x + tf.stop_gradient(tf.round(x) - x)


def importance_mask(heatmap, channels):
  """The paper's mask from importance logits [..., 1]: y = sigmoid(heatmap) * channels
  keeps channel k fully if k + 1 <= y, by y - k if k < y < k + 1, and zeroes it if k >= y.

  So the channels zeroed are exactly those with k >= ceil(y); the one partial channel is
  what lets the gradient move y (the reference implementation uses this mask in both
  passes: a hard ceil forward leaves y without a useful gradient and it collapses).
  """
  y = tf.sigmoid(heatmap) * channels
  k = tf.range(channels, dtype=y.dtype)
  return tf.clip_by_value(y - k, 0.0, 1.0)


class MaskedConv3D(tf.keras.layers.Layer):
  """One layer of the context model: a masked 2x3x3 convolution on fixed-point grids."""

  def __init__(self, filters, mask, **kwargs):
    super().__init__(**kwargs)
    if mask not in ("A", "B"):
      raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
    self.filters = int(filters)
    self.mask = mask
    self.taps = _TAPS_A if mask == "A" else _TAPS_B

  def build(self, input_shape):
    channels = int(input_shape[-1])
    if len(self.taps) * channels > MAX_FAN_IN:
      raise ValueError(f"{len(self.taps)} taps x {channels} channels exceed the exact "
                       f"fan-in bound {MAX_FAN_IN}")
    self.kernel = self.add_weight("kernel", (len(self.taps), channels, self.filters),
                                  initializer="glorot_uniform")
    self.bias = self.add_weight("bias", (self.filters,), initializer="zeros")
    super().build(input_shape)

  def quantized(self):
    """(kernel [taps, in, out], bias [out]) as integers in accumulator units."""
    kernel = tf.clip_by_value(_round_ste(self.kernel * W_SCALE), -W_MAX, W_MAX)
    bias = tf.clip_by_value(_round_ste(self.bias * ACC_SCALE), -2.0**13, 2.0**13)
    return kernel, bias

  def convolve(self, volume):
    """Accumulators [B, D, H, W, out] over a whole volume [B, D, H, W, in]."""
    kernel, bias = self.quantized()
    dense = tf.scatter_nd(_bordered(self.taps), kernel,
                          [2, 3, 3, kernel.shape[1], kernel.shape[2]])
    padded = tf.pad(volume, [(0, 0), (1, 0), (1, 1), (1, 1), (0, 0)])
    return tf.nn.conv3d(padded, dense, [1] * 5, "VALID") + bias

  def at(self, window, rows):
    """Accumulators [n, out] of n positions from an int8 window [M, in] of activations
    and `rows` [n, taps]: the window row of each tap (a border tap reads a zero row)."""
    kernel, bias = self.quantized()
    patches = tf.cast(tf.gather(window, rows[:, :len(self.taps)]), tf.float32)
    n = tf.shape(rows)[0]
    return tf.matmul(tf.reshape(patches, [n, -1]),
                     tf.reshape(kernel, [-1, self.filters])) + bias

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "mask": self.mask}


def _requantize(acc, low):
  """Next layer's activations (integers in [low, A_MAX]) from accumulators."""
  return tf.clip_by_value(_round_ste(acc / W_SCALE), low, A_MAX)


class ContextModel(tf.keras.layers.Layer):
  """P: the 3D masked CNN over the (channel, row, column) symbol volume.

      input (center values on the 1/8 grid) --conv0 (mask A), ReLU--> a1
      a1 --conv1 (B), ReLU--> a2 --conv2 (B)--> + a1 --> a3 --conv3 (B)--> L logits

  `logits` runs it over whole volumes (training, estimates); `step` at chosen positions
  from windows of every layer's activations (coding).
  """

  def __init__(self, filters, num_centers, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.num_centers = int(num_centers)
    self.conv0 = MaskedConv3D(filters, "A", name="conv0")
    self.conv1 = MaskedConv3D(filters, "B", name="conv1")
    self.conv2 = MaskedConv3D(filters, "B", name="conv2")
    self.conv3 = MaskedConv3D(num_centers, "B", name="conv3")

  def build(self, input_shape):
    del input_shape
    self.conv0.build((None, 1))
    for conv in (self.conv1, self.conv2, self.conv3):
      conv.build((None, self.filters))
    super().build(None)

  @staticmethod
  def inputs(q_hat):
    """Center values as integers on the activation grid."""
    return tf.clip_by_value(_round_ste(q_hat * A_SCALE), A_MIN, A_MAX)

  def logits(self, volume):
    """Logit accumulators [B, D, H, W, L] of an input volume [B, D, H, W, 1]."""
    a1 = _requantize(self.conv0.convolve(volume), 0.0)
    a2 = _requantize(self.conv1.convolve(a1), 0.0)
    a3 = _requantize(self.conv2.convolve(a2) + a1 * W_SCALE, A_MIN)
    return self.conv3.convolve(a3)

  def step(self, windows, read_at, write_at):
    """Logit accumulators [n, L] of n positions, and the windows with their activations.

    `windows` holds int8 activations [M, channels] of the input and of a1..a3 for the
    positions coded before these, in any row layout with a zero row for the border;
    `read_at` [n, 14] is the row of each tap of each position (mask B's order, the
    position itself last) and `write_at` [n] the rows where these positions' own
    activations go. The encoder passes windows over all positions; the decoder small ring
    buffers of the last wavefronts. Activations written here are read back by the next
    layer's taps on the position itself.
    """
    x, a1, a2, a3 = windows

    def put(window, values):
      return tf.tensor_scatter_nd_update(window, write_at[:, None], tf.cast(values, tf.int8))

    v1 = _requantize(self.conv0.at(x, read_at), 0.0)
    a1 = put(a1, v1)
    a2 = put(a2, _requantize(self.conv1.at(a1, read_at), 0.0))
    a3 = put(a3, _requantize(self.conv2.at(a2, read_at) + v1 * W_SCALE, A_MIN))
    return self.conv3.at(a3, read_at), (x, a1, a2, a3)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters,
            "num_centers": self.num_centers}


def quantized_logits(acc):
  """Logits on the 1/16-nat grid, shifted so the maximum is 0 and clipped below."""
  grid = _round_ste(acc / LOGIT_STEP)
  gap = tf.reduce_max(grid, axis=-1, keepdims=True) - grid
  return -tf.minimum(gap, MAX_LOGIT_GAP) / 16.0


class Imgcomp(tf.keras.Model):
  """imgcomp (Mentzer et al., CVPR 2018); see the module docstring.

  Args:
    num_filters: n, channels of g_a / g_s at 1/4 resolution (n / 2 at 1/2).
    num_stacks: residual stacks (the paper's B) in g_a and in g_s.
    stack_blocks: residual blocks per stack (3 in the paper).
    latent_channels: C, channels of the quantized volume.
    num_centers: L, number of learned quantization centers.
    context_filters: channels of the context model's hidden layers (24 in the paper).
    distortion: "ms_ssim" (1 - MS-SSIM) or "mse" (on 0..255 values).
    distortion_weight: weight of d in the autoencoder's loss.
    mse_weight: weight of an extra MSE term (0 in the paper). MS-SSIM barely sees colour
      and brightness, which short trainings then get wrong; a small MSE term fixes them.
    beta: weight of the rate hinge max(H_soft - H_target, 0).
    H_target: target entropy in bits per symbol (bpp is about H * C / 64).
    sigma: softness of the soft-to-hard quantizer's backward pass.
    centers_range: centers start evenly spaced inside (-centers_range, centers_range).
    centers_reg: L2 penalty on the centers.
  """

  lossless = False
  stream_names = ("symbols",)

  def __init__(self, num_filters=128, num_stacks=5, stack_blocks=3, latent_channels=32,
               num_centers=6, context_filters=24, distortion="ms_ssim",
               distortion_weight=5000.0, mse_weight=0.0, beta=500.0, H_target=1.2, sigma=1.0,
               centers_range=2.0, centers_reg=0.1, **kwargs):
    super().__init__(**kwargs)
    if distortion not in DISTORTIONS:
      raise ValueError(f"distortion must be one of {DISTORTIONS}, got {distortion!r}")
    for arg, value, low in (("num_filters", num_filters, 2), ("num_stacks", num_stacks, 0),
                            ("stack_blocks", stack_blocks, 1),
                            ("latent_channels", latent_channels, 1),
                            ("num_centers", num_centers, 2),
                            ("context_filters", context_filters, 1)):
      if value < low:
        raise ValueError(f"{arg} must be at least {low}, got {value}")
    if len(_TAPS_B) * context_filters > MAX_FAN_IN:
      raise ValueError(f"context_filters={context_filters} breaks the exact-arithmetic "
                       f"bound; at most {MAX_FAN_IN // len(_TAPS_B)}")
    if not (H_target >= 0 and beta >= 0 and distortion_weight > 0 and mse_weight >= 0 and
            sigma > 0):
      raise ValueError(f"need H_target >= 0, beta >= 0, distortion_weight > 0, "
                       f"mse_weight >= 0, sigma > 0; got {H_target}, {beta}, "
                       f"{distortion_weight}, {mse_weight}, {sigma}")
    self.num_filters = int(num_filters)
    self.num_stacks = int(num_stacks)
    self.stack_blocks = int(stack_blocks)
    self.latent_channels = int(latent_channels)
    self.num_centers = int(num_centers)
    self.context_filters = int(context_filters)
    self.distortion = distortion
    self.distortion_weight = float(distortion_weight)
    self.mse_weight = float(mse_weight)
    self.beta = float(beta)
    self.H_target = float(H_target)
    self.sigma = float(sigma)
    self.centers_range = float(centers_range)
    self.centers_reg = float(centers_reg)

    n, c = self.num_filters, self.latent_channels
    relu = tf.keras.layers.ReLU
    self.g_a = tf.keras.Sequential(
        [layers.conv(n // 2, 5, strides=2, name="conv0"), relu(),
         layers.conv(n, 5, strides=2, name="conv1"), relu()] +
        [layers.ResidualBody(n, stack_blocks, name=f"stack{i}") for i in range(num_stacks)] +
        [layers.conv(c + 1, 5, strides=2, name="conv2")], name="g_a")
    up = tf.keras.layers.Conv2DTranspose
    self.g_s = tf.keras.Sequential(
        [up(n, 3, strides=2, padding="same", name="deconv0"), relu()] +
        [layers.ResidualBody(n, stack_blocks, name=f"stack{i}") for i in range(num_stacks)] +
        [up(n // 2, 5, strides=2, padding="same", name="deconv1"), relu(),
         up(3, 5, strides=2, padding="same", name="deconv2")], name="g_s")
    self.centers = self.add_weight(
        "centers", (self.num_centers,), initializer=tf.keras.initializers.Constant(
            np.linspace(-centers_range, centers_range, self.num_centers + 2)[1:-1]))
    self.context_model = ContextModel(context_filters, num_centers, name="context_model")
    # exp(-gap / 16) for each logit gap: built once and stored with the weights, so the
    # decoder's CDFs never depend on the platform's exp.
    self.exp_table = self.add_weight(
        "exp_table", (MAX_LOGIT_GAP + 1,), trainable=False,
        initializer=tf.keras.initializers.Constant(
            np.exp(-np.arange(MAX_LOGIT_GAP + 1) / 16.0).astype(np.float32)))
    self.g_a.build((None, None, None, 3))
    self.g_s.build((None, None, None, c))
    self.context_model.build(None)
    self.built = True

  def get_config(self):
    return {"num_filters": self.num_filters, "num_stacks": self.num_stacks,
            "stack_blocks": self.stack_blocks, "latent_channels": self.latent_channels,
            "num_centers": self.num_centers, "context_filters": self.context_filters,
            "distortion": self.distortion, "distortion_weight": self.distortion_weight,
            "mse_weight": self.mse_weight,
            "beta": self.beta, "H_target": self.H_target, "sigma": self.sigma,
            "centers_range": self.centers_range, "centers_reg": self.centers_reg}

  @property
  def block_size(self):
    """Image sides are padded to multiples of this (g_a downsamples 8x)."""
    return 8

  def loss_groups(self):
    """[(scalar, variables)], one optimizer each: the autoencoder and the centers minimize
    "loss", the context model minimizes the rate "H"."""
    context = self.context_model.trainable_variables
    ids = {id(v) for v in context}
    autoencoder = [v for v in self.trainable_variables if id(v) not in ids]
    return [("loss", autoencoder), ("H", context)]

  # -- the network ---------------------------------------------------------------------------

  def _analysis(self, x):
    """(z * mask, mask, importance map y / C) of images x [B, H, W, 3] (0..255)."""
    out = self.g_a((tf.cast(x, tf.float32) - 127.5) / 64.0)
    heatmap, z = out[..., :1], out[..., 1:]
    mask = importance_mask(heatmap, self.latent_channels)
    return z * mask, mask, tf.sigmoid(heatmap)

  def quantize(self, z, training=False):
    """(q_hat, symbols): nearest centers; in training, gradients of the soft assignment."""
    distance = tf.math.squared_difference(z[..., None], self.centers)
    symbols = tf.argmin(distance, axis=-1, output_type=tf.int32)
    hard = tf.gather(self.centers, symbols)
    if not training:  # exactly the centers, as the decoder sees them
      return hard, symbols
    soft = tf.reduce_sum(tf.nn.softmax(-self.sigma * distance) * self.centers, axis=-1)
    return soft + tf.stop_gradient(hard - soft), symbols

  def _synthesis(self, q_hat):
    return self.g_s(q_hat) * 64.0 + 127.5

  @staticmethod
  def _volume(t):
    """[B, H, W, C] -> [B, C, H, W, 1]: the channels become the volume's depth."""
    return tf.transpose(t, [0, 3, 1, 2])[..., None]

  def call(self, x, training=False):
    """Rate and reconstruction of images x [B, H, W, 3] (0..255, sides multiples of 8).

    Returns {"x_hat", "bits": [B], "bpp", "H" (bits per symbol), "H_soft", "mse",
    "importance"}. H_soft is the paper's rate for the autoencoder's loss: the mean of H
    and of the bits weighted by the mask. The context model sees the symbols without
    gradient, so the autoencoder lowers its rate through the importance map.
    """
    z, mask, importance = self._analysis(x)
    q_hat, symbols = self.quantize(z, training)
    acc = self.context_model.logits(self._volume(self.context_model.inputs(
        tf.stop_gradient(q_hat))))
    log_pmf = tf.nn.log_softmax(quantized_logits(acc))
    nats = -tf.reduce_sum(log_pmf * tf.one_hot(self._volume(symbols)[..., 0],
                                              self.num_centers), axis=-1)
    bits = tf.reduce_sum(nats, axis=[1, 2, 3]) / np.log(2.0)
    x_hat = self._synthesis(q_hat)
    pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
    h_real = tf.reduce_mean(nats) / np.log(2.0)
    h_mask = tf.reduce_mean(nats * self._volume(mask)[..., 0]) / np.log(2.0)
    return {"x_hat": x_hat, "bits": bits, "bpp": tf.reduce_sum(bits) / pixels,
            "H": h_real, "H_soft": (h_real + h_mask) / 2,
            "mse": tf.reduce_mean(tf.math.squared_difference(tf.cast(x, tf.float32), x_hat)),
            "importance": importance}

  def loss_and_scalars(self, x, out, step=None):  # step: unused, a constant loss
    """The autoencoder's loss and what to log (rate, distortion, PSNR, MS-SSIM, centers)."""
    x = tf.cast(x, tf.float32)
    x_hat = tf.clip_by_value(out["x_hat"], 0.0, 255.0)
    ms_ssim = tf.reduce_mean(layers.ms_ssim(x, x_hat))
    scalars = {"bpp": out["bpp"], "H": out["H"], "H_soft": out["H_soft"], "mse": out["mse"],
               "ms_ssim": ms_ssim,
               "psnr": tf.reduce_mean(tf.image.psnr(x, x_hat, 255.0))}
    distortion = 1.0 - ms_ssim if self.distortion == "ms_ssim" else out["mse"]
    loss = (self.distortion_weight * distortion + self.mse_weight * out["mse"] +
            self.beta * tf.maximum(out["H_soft"] - self.H_target, 0.0) +
            self.centers_reg * tf.reduce_sum(tf.square(self.centers)) / 2)
    scalars["loss"] = loss
    for i in range(self.num_centers):
      scalars[f"centers/{i}"] = self.centers[i]
    return loss, scalars

  def summary_images(self, x, out):
    """Inputs, reconstructions and importance maps."""
    return {"x": tf.cast(x, tf.uint8),
            "x_hat": tf.saturate_cast(tf.round(out["x_hat"]), tf.uint8),
            "importance": out["importance"]}

  # -- real bitstreams ----------------------------------------------------------------------

  def _cdf(self, acc):
    """Integer CDF rows [n, L + 1] from logit accumulators [n, L]."""
    gap = tf.cast(-quantized_logits(acc) * 16.0, tf.int32)
    return ops.pmf_to_cdf(tf.gather(self.exp_table, gap))

  def _layout(self, depth, height, width):
    """Where everything sits in coding order, for a (depth, height, width) volume.

    Returns (positions [N, 3] in coding order, starts and ends [S] of the S wavefronts in
    it, taps [N, 14]: the coding-order rank of each tap's position, N for the border).
    """
    d, i, j = tf.meshgrid(tf.range(depth), tf.range(height), tf.range(width), indexing="ij")
    positions = tf.reshape(tf.stack([d, i, j], axis=-1), [-1, 3])
    t = tf.reduce_sum(positions * tf.constant(WAVE, tf.int32), axis=-1)
    order = tf.argsort(t, stable=True)
    counts = tf.math.bincount(t)
    counts = tf.boolean_mask(counts, counts > 0)
    ends = tf.cumsum(counts)
    positions = tf.gather(positions, order)
    count = tf.shape(positions)[0]
    # Ranks behind a border of N: one channel in front, one row and column around.
    ranks = tf.fill([depth + 1, height + 2, width + 2], count)
    ranks = tf.tensor_scatter_nd_update(ranks, positions + 1, tf.range(count))
    offsets = tf.constant(_bordered(_TAPS_B), tf.int32)
    taps = tf.gather_nd(ranks, positions[:, None, :] + offsets[None])
    return positions, ends - counts, ends, taps

  @staticmethod
  def _ring(starts, ends, taps):
    """The decoder's window layout: ring buffers of RING slots of `size` rows, wavefront s
    in slot s % RING (its taps reach at most RING - 1 wavefronts back, so nothing still
    read is overwritten), and a last row kept zero for the border.

    Returns (taps [N, 14] as ring rows, size).
    """
    count = ends[-1]
    size = tf.reduce_max(ends - starts)
    wavefront = tf.repeat(tf.range(tf.shape(starts)[0]), ends - starts)
    slot_rows = tf.concat([wavefront % RING * size + tf.range(count) -
                           tf.gather(starts, wavefront), [RING * size]], 0)
    return tf.gather(slot_rows, taps), size

  def _inputs(self, symbols):
    """The context model's int8 inputs for symbols."""
    return tf.cast(self.context_model.inputs(tf.gather(self.centers, symbols)), tf.int8)

  def _windows(self, rows, x=None):
    """Zero windows of `rows` rows for the input and a1..a3 (or the input given)."""
    hidden = tf.zeros([rows, self.context_filters], tf.int8)
    return (tf.zeros([rows, 1], tf.int8) if x is None else x), hidden, hidden, hidden

  def compress(self, x):
    """[string]: the symbols of one padded image x [1, Hp, Wp, 3] (uint8)."""
    z, _, _ = self._analysis(x)
    _, symbols = self.quantize(z)
    volume = tf.transpose(symbols[0], [2, 0, 1])  # [C, h, w]
    shape = tf.shape(volume)
    positions, _, _, taps = self._layout(shape[0], shape[1], shape[2])
    values = tf.gather_nd(volume, positions)
    count = tf.shape(values)[0]
    # The encoder knows all contexts: windows over every position in coding order (row N
    # the border), filled in chunks that keep the gathered patches small. Chunks follow
    # coding order, so each one's context is in the windows before it runs.
    windows = self._windows(count + 1, tf.pad(self._inputs(values)[:, None], [(0, 1), (0, 0)]))
    chunk = 65536
    cdfs = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False)

    def body(k, windows, cdfs):
      rows = tf.range(k * chunk, tf.minimum((k + 1) * chunk, count))
      acc, windows = self.context_model.step(windows, tf.gather(taps, rows), rows)
      return k + 1, windows, cdfs.write(k, self._cdf(acc))

    _, _, cdfs = tf.while_loop(lambda k, *_: k * chunk < count, body, (0, windows, cdfs))
    return [ops.cdf_encode(values, cdfs.concat())]

  def decompress(self, strings, height, width):
    """x_hat float [1, height, width, 3] (padded sizes; 0..255, unrounded) from
    `compress`'s strings."""
    return self.synthesis(self.decompress_latents(strings, height, width))

  def synthesis(self, q_hat):
    """x_hat float [1, H, W, 3] (0..255, unrounded) of decoded latents."""
    return self._synthesis(q_hat)

  def decompress_latents(self, strings, height, width):
    """q_hat [1, height / 8, width / 8, C] (center values) from `compress`'s strings (the
    padded size): what the context model's decoder recovers, the same on every machine."""
    (encoded,) = strings
    depth, h, w = self.latent_channels, height // 8, width // 8
    positions, starts, ends, taps = self._layout(depth, h, w)
    taps, size = self._ring(starts, ends, taps)
    windows = self._windows(RING * size + 1)

    def decode(s, windows, values, state, final):
      rows = tf.range(starts[s], ends[s])
      write_at = s % RING * size + rows - starts[s]
      acc, (x, a1, a2, a3) = self.context_model.step(windows, tf.gather(taps, rows), write_at)
      decoded, state = ops.cdf_decode_chunk(encoded, state, self._cdf(acc), final=final)
      x = tf.tensor_scatter_nd_update(x, write_at[:, None], self._inputs(decoded)[:, None])
      return (x, a1, a2, a3), values.write(s, decoded), state

    steps = tf.shape(starts)[0]
    values = tf.TensorArray(tf.int32, size=steps, infer_shape=False)
    _, windows, values, state = tf.while_loop(
        lambda s, *_: s < steps - 1,
        lambda s, windows, values, state: (s + 1,) + decode(s, windows, values, state, False),
        (0, windows, values, tf.constant(ops.CDF_DECODE_START, tf.int64)))
    _, values, _ = decode(steps - 1, windows, values, state, True)
    symbols = tf.scatter_nd(positions, values.concat(), [depth, h, w])
    return tf.gather(self.centers, tf.transpose(symbols, [1, 2, 0]))[None]

