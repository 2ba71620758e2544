"""Learned lossy codecs (hyperprior, ...): any model of the lossy contract, one image at once.

    model.compress(x [1, Hp, Wp, 3] uint8) -> (string_y, string_z, y_shape, z_shape)
    model.decompress(string_y, string_z, y_shape, z_shape) -> x_hat float [1, Hp, Wp, 3]

Padding rules (fixed by the format): the image is padded on the bottom and right to a
multiple of the model's `block_size` by repeating its last row and column, coded, and the
reconstruction cropped back and rounded to 8 bits. Grayscale images are coded as R = G = B
and decoded as the rounded mean of the three channels. The latent shapes follow from the
padded size, so the file stores only the two strings (sections "y" and "z").
"""
import numpy as np
import tensorflow as tf

from tfcomp import container
from tfcomp.codecs import learned


class LossyModelCodec(learned.ModelCodec):
  """A zoo codec around a compressible lossy model stored as a models.save .npz."""

  lossless = False

  def __init__(self, name, weights_path):
    super().__init__(name, weights_path)
    if not self.model.compression:
      raise ValueError(f"{weights_path} holds a model without frozen range-coding tables "
                       "(call make_compressible() before saving it for the zoo)")

  def _shapes(self, height, width):
    hp, wp = learned.padded_size(height, width, self.model.block_size)
    return tf.constant([hp // 16, wp // 16], tf.int32), tf.constant([hp // 64, wp // 64],
                                                                    tf.int32)

  @staticmethod
  def _to_image(x_hat, height, width, channels):
    x_hat = np.asarray(x_hat)[0, :height, :width]
    if channels == 1:
      x_hat = x_hat.mean(axis=-1, keepdims=True)
    return np.clip(np.rint(x_hat), 0, 255).astype(np.uint8)

  def compress(self, image):
    string_y, string_z, _, _ = self.model.compress(self.padded(image))
    return {"y": string_y.numpy()[0], "z": string_z.numpy()[0]}

  def decompress(self, sections, geometry):
    if set(sections) != {"y", "z"}:
      raise container.FormatError(f"expected sections ['y', 'z'], found {sorted(sections)}")
    self.check_geometry(geometry)
    y_shape, z_shape = self._shapes(geometry.height, geometry.width)
    x_hat = self.model.decompress(tf.constant([sections["y"]]), tf.constant([sections["z"]]),
                                  y_shape, z_shape)
    return self._to_image(x_hat, geometry.height, geometry.width, geometry.channels)

  def estimate(self, image):
    """Estimated bits and the reconstruction, through the model's non-coding path."""
    self.check_image(image)
    out = self.model(self.padded(image))
    return {"bits": float(out["bits"][0]),
            "x_hat": self._to_image(out["x_hat"], *image.shape)}
