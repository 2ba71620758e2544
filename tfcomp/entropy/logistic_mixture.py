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
import math

import tensorflow as tf

from tfcomp import ops
from tfcomp import exact

# The coder's own parameter ranges: log-scales are clamped to [-8, 8].
LOG_SCALE_MIN = -8.0
LOG_SCALE_MAX = 8.0
# An edge argument whose sigmoid is exactly 0 or 1 in float32.
_FAR = 1e4


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

  def _shifted_means(self, values, means, coeffs):
    """Means with the channel-autoregressive shift by the pixel's earlier channels."""
    channels = means.shape[-2]
    shifted = [means[..., 0, :]]
    for c in range(1, channels):
      shift = sum(coeffs[..., c * (c - 1) // 2 + j, :] * values[..., j, None] for j in range(c))
      shifted.append(means[..., c, :] + shift)
    return tf.stack(shifted, axis=-2)

  def log_prob(self, x, logit_weights, means, log_scales, coeffs):
    """Natural log of the coded probability of levels `x` [..., C]; returns [..., C]."""
    return self.log_prob_of_values(self.values(x), logit_weights, means, log_scales, coeffs)

  def log_prob_of_values(self, values, logit_weights, means, log_scales, coeffs):
    """`log_prob` of float values on the level grid, differentiable in `values` too.

    L3C trains its encoders through the bits of their quantized outputs: `values` then
    carries straight-through gradients while its forward value sits exactly on a level.
    """
    values = tf.convert_to_tensor(values, tf.float32)
    means = self._shifted_means(values, means, coeffs)
    log_scales = tf.clip_by_value(log_scales, LOG_SCALE_MIN, LOG_SCALE_MAX)
    inv_scale = tf.exp(-log_scales)
    centered = values[..., None] - means
    upper = (centered + self.bin / 2) * inv_scale
    lower = (centered - self.bin / 2) * inv_scale
    # The lowest and highest levels take the tails: their outer edge moves to infinity.
    upper = tf.where((values > self.x_max - self.bin / 2)[..., None], _FAR, upper)
    lower = tf.where((values < self.x_min + self.bin / 2)[..., None], -_FAR, lower)
    # In the probability domain, like the coder. Float32 sigmoids lose precision only far
    # below the coder's floor of 2^-16, and monotonicity keeps every difference >= 0.
    p = tf.reduce_sum(tf.nn.softmax(logit_weights, axis=-1) *
                      (tf.sigmoid(upper) - tf.sigmoid(lower)), axis=-1)
    # The coder's floor of 1/2^16 per level (see the module docstring).
    spare = 1.0 - self.num_levels / 2.0**16
    return tf.math.log(p * spare + 2.0**-16)

  def bits(self, x, logit_weights, means, log_scales, coeffs):
    """Estimated bits per subpixel, [..., C]: -log2 of `log_prob`."""
    return -self.log_prob(x, logit_weights, means, log_scales, coeffs) / tf.math.log(2.0)

  def bits_of_values(self, values, logit_weights, means, log_scales, coeffs):
    """Estimated bits per subpixel of float values on the level grid (see log_prob_of_values)."""
    return -self.log_prob_of_values(values, logit_weights, means, log_scales,
                                    coeffs) / tf.math.log(2.0)

  def sample(self, logit_weights, means, log_scales, coeffs, seed):
    """Levels [..., C] drawn from the mixtures (stateless, from the int32 pair `seed`)."""
    channels = means.shape[-2]
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed, tf.int64),
                                                   2 * channels)
    levels, values = [], []
    for c in range(channels):
      k = tf.random.stateless_categorical(
          tf.reshape(logit_weights[..., c, :], [-1, logit_weights.shape[-1]]), 1, seeds[2 * c])
      k = tf.reshape(k, tf.shape(means)[:-2])
      pick = lambda p: tf.gather(p, k, batch_dims=len(p.shape) - 1)  # noqa: E731
      mean = pick(means[..., c, :])
      for j in range(c):
        mean += pick(coeffs[..., c * (c - 1) // 2 + j, :]) * values[j]
      scale = tf.exp(tf.clip_by_value(pick(log_scales[..., c, :]), LOG_SCALE_MIN,
                                      LOG_SCALE_MAX))
      u = tf.random.stateless_uniform(tf.shape(mean), seeds[2 * c + 1], 1e-5, 1 - 1e-5)
      v = mean + scale * (tf.math.log(u) - tf.math.log1p(-u))
      level = tf.cast(tf.clip_by_value(tf.round((v - self.x_min) / self.bin), 0,
                                       self.num_levels - 1), tf.int32)
      levels.append(level)
      values.append(self.values(level))
    return tf.stack(levels, axis=-1)

  def compress(self, x, logit_weights, means, log_scales, coeffs, adaptation=0):
    """Real stream (scalar string) for levels `x` [..., C]; `adaptation`: the coder's
    online adaptation flags (tfcomp.ops.MIXTURE_ADAPT_*), rows of x's second-last axis."""
    return ops.mixture_encode(x, logit_weights, means, log_scales, coeffs,
                              num_levels=self.num_levels, x_min=self.x_min, x_max=self.x_max,
                              adaptation=adaptation)

  def decompress(self, encoded, logit_weights, means, log_scales, coeffs, adaptation=0):
    """Levels [..., C] from `compress`'s stream, the same parameters and adaptation."""
    return ops.mixture_decode(encoded, logit_weights, means, log_scales, coeffs,
                              num_levels=self.num_levels, x_min=self.x_min, x_max=self.x_max,
                              adaptation=adaptation)


def num_params(channels, components):
  """Channels a network must output to parameterize `split_params` (C*K*3 + C(C-1)/2*K)."""
  return components * (3 * channels + channels * (channels - 1) // 2)


def first_channels(params, channels):
  """Mixture params [..., C, K] (and coeffs) restricted to the first `channels` channels.

  The channel-autoregressive structure makes this exact: channel c depends only on
  channels j < c, so a grayscale image coded as R = G = B can be coded as R alone.
  """
  logit_weights, means, log_scales, coeffs = params
  return (logit_weights[..., :channels, :], means[..., :channels, :],
          log_scales[..., :channels, :], coeffs[..., :channels * (channels - 1) // 2, :])


def initial_params(channels, components, log_scale, scale_spread=1.5, coeff=0.9):
  """A raw parameter vector (see split_params) for a sensible first prediction.

  Equal weights and means 0; each channel's log-scales evenly spread over
  `log_scale` +- `scale_spread`, because identical components get identical gradients and
  would never separate; each channel's coefficient on the channel just before it `coeff`
  (colour channels of natural images move together), the others 0.
  """
  n = channels * components
  spread = [log_scale] * components if components == 1 else [
      log_scale + scale_spread * (2 * k / (components - 1) - 1) for k in range(components)]
  coeffs = []
  for c in range(1, channels):
    for j in range(c):
      coeffs += [math.atanh(coeff) if j == c - 1 else 0.0] * components
  return [0.0] * (2 * n) + [float(v) for v in spread] * channels + coeffs


def split_params(raw, channels, components, base_means=None):
  """Mixture parameters from a network output [..., num_params(C, K)].

  Returns logit_weights, means, log_scales [..., C, K] and coeffs [..., C(C-1)/2, K]; the
  coefficients pass through tanh as in PixelCNN++, so each lies in (-1, 1). The network's
  means are offsets from `base_means` [..., C] when given.

  The coefficients act on each earlier channel's deviation from its own mean,
  mean_c = m_c + sum_j coeffs_cj (x_j - m_j), rather than on x_j itself: a coefficient
  then needs no matching offset in m_c to be useful, so colour correlation is learnt (or
  set by `initial_params`) independently of the means. The returned means fold the
  -coeffs_cj m_j terms in, so coding keeps the plain channel-autoregressive form.
  """
  expected = num_params(channels, components)
  if raw.shape[-1] != expected:
    raise ValueError(f"need {expected} parameter channels for C={channels}, "
                     f"K={components}; got {raw.shape[-1]}")
  lead = tf.shape(raw)[:-1]
  n = channels * components
  def part(start, rows):
    return tf.reshape(raw[..., start:start + rows * components],
                      tf.concat([lead, [rows, components]], 0))
  num_coeffs = channels * (channels - 1) // 2
  means = part(n, channels)
  if base_means is not None:
    means += base_means[..., None]
  coeffs = exact.tanh(part(3 * n, num_coeffs))
  folded = [means[..., 0, :]]
  for c in range(1, channels):
    folded.append(means[..., c, :] - sum(coeffs[..., c * (c - 1) // 2 + j, :] * means[..., j, :]
                                         for j in range(c)))
  return part(0, channels), tf.stack(folded, axis=-2), part(2 * n, channels), coeffs
