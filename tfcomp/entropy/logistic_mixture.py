"""Discretized logistic mixtures that both train (likelihoods, bits) and code (real streams).

The model of PixelCNN++ and L3C (Mentzer et al., CVPR 2019), shared by tfcomp's lossless
families. Subpixel c of a pixel is one of `num_levels` levels, level k standing for the
value x_min + k * bin. Its distribution mixes K logistics:

    logit_weights, means, log_scales: [..., C, K]     coeffs: [..., C*(C-1)/2, K]

    mean_c = means_c + sum_{j<c} coeffs_{c,j} * x_j      (channel-autoregressive, RGB)
    P(k)   = sum_i w_i [sigmoid((x_k + bin/2 - mean_ci) / s_ci)
                        - sigmoid((x_k - bin/2 - mean_ci) / s_ci)]
             with the lowest and highest levels taking the tails,

    x, params --bits()-------------> estimated bits (differentiable, for training)
    x, params --compress()---------> stream (tfcomp.ops.mixture_encode, real bits)
    stream, params --decompress()--> x

`bits()` models the coder's quantization of the CDF: every level keeps a frequency of at
least 1 out of 2^16, so P'(k) = P(k) * (1 - L / 2^16) + 1 / 2^16. Estimated bits thus
track the real stream closely. The remaining gap comes from the coder snapping parameters
to grids.
"""
import tensorflow as tf

from tfcomp import ops

# The coder's own parameter ranges: log-scales are clamped to [-8, 8].
LOG_SCALE_MIN = -8.0
LOG_SCALE_MAX = 8.0


class DiscretizedLogisticMixture:
  """A discretized logistic mixture over `num_levels` levels in [x_min, x_max].

  Args:
    num_levels: number of levels, 2 to 4096 (256 for 8-bit subpixels).
    x_min: value of level 0.
    x_max: value of the last level.
  """

  def __init__(self, num_levels=256, x_min=-1.0, x_max=1.0):
    if not 2 <= num_levels <= 4096:
      raise ValueError(f"num_levels must be in [2, 4096], got {num_levels}")
    if not x_max > x_min:
      raise ValueError(f"need x_min < x_max, got {x_min} and {x_max}")
    self.num_levels = int(num_levels)
    self.x_min = float(x_min)
    self.x_max = float(x_max)
    self.bin = (self.x_max - self.x_min) / (self.num_levels - 1)

  def get_config(self):
    return {"num_levels": self.num_levels, "x_min": self.x_min, "x_max": self.x_max}

  def values(self, levels):
    """Value of each level (float32)."""
    return self.x_min + tf.cast(levels, tf.float32) * self.bin

  def _shifted_means(self, x, means, coeffs):
    """Means with the channel-autoregressive shift by the pixel's earlier channels."""
    channels = means.shape[-2]
    values = self.values(x)  # [..., C]
    shifted = [means[..., 0, :]]
    for c in range(1, channels):
      shift = sum(coeffs[..., c * (c - 1) // 2 + j, :] * values[..., j, None] for j in range(c))
      shifted.append(means[..., c, :] + shift)
    return tf.stack(shifted, axis=-2)

  def log_prob(self, x, logit_weights, means, log_scales, coeffs):
    """Natural log of the coded probability of levels `x` [..., C]; returns [..., C]."""
    x = tf.convert_to_tensor(x)
    means = self._shifted_means(x, means, coeffs)
    log_scales = tf.clip_by_value(log_scales, LOG_SCALE_MIN, LOG_SCALE_MAX)
    inv_scale = tf.exp(-log_scales)
    centered = self.values(x)[..., None] - means
    upper = (centered + self.bin / 2) * inv_scale
    lower = (centered - self.bin / 2) * inv_scale
    top = tf.equal(x, self.num_levels - 1)[..., None]
    bottom = tf.equal(x, 0)[..., None]
    # log(sigmoid(upper) - sigmoid(lower)), computed stably as in PixelCNN++:
    # sigmoid(u) - sigmoid(l) = sigmoid(u) * (1 - exp(l - u)) * sigmoid(-l).
    log_mid = (tf.math.log_sigmoid(upper) + tf.math.log_sigmoid(-lower) +
               _log1mexp(upper - lower))
    log_comp = tf.where(top, tf.math.log_sigmoid(-lower),
                        tf.where(bottom, tf.math.log_sigmoid(upper), log_mid))
    log_p = tf.reduce_logsumexp(tf.nn.log_softmax(logit_weights, axis=-1) + log_comp, -1)
    # The coder's floor of 1/2^16 per level (see the module docstring).
    spare = 1.0 - self.num_levels / 2.0**16
    return tf.math.log(tf.exp(log_p) * spare + 2.0**-16)

  def bits(self, x, logit_weights, means, log_scales, coeffs):
    """Estimated bits per subpixel, [..., C]: -log2 of `log_prob`."""
    return -self.log_prob(x, logit_weights, means, log_scales, coeffs) / tf.math.log(2.0)

  def compress(self, x, logit_weights, means, log_scales, coeffs):
    """Real stream (scalar string) for levels `x` [..., C]."""
    return ops.mixture_encode(x, logit_weights, means, log_scales, coeffs,
                              num_levels=self.num_levels, x_min=self.x_min, x_max=self.x_max)

  def decompress(self, encoded, logit_weights, means, log_scales, coeffs):
    """Levels [..., C] from `compress`'s stream and the same parameters."""
    return ops.mixture_decode(encoded, logit_weights, means, log_scales, coeffs,
                              num_levels=self.num_levels, x_min=self.x_min, x_max=self.x_max)


def _log1mexp(d):
  """log(1 - exp(-d)) for d >= 0, accurate for small and large d (Maechler 2012)."""
  d = tf.maximum(d, 1e-12)
  return tf.where(d < 0.6931472, tf.math.log(-tf.math.expm1(-d)), tf.math.log1p(-tf.exp(-d)))
