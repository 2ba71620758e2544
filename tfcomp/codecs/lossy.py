"""Learned lossy codecs (hyperprior, ...): any model of the lossy contract, one image at once.

    model.compress(x [1, Hp, Wp, 3] uint8) -> (string_y, string_z, y_shape, z_shape)
    model.decompress(string_y, string_z, y_shape, z_shape) -> x_hat float [1, Hp, Wp, 3]

Padding rules (fixed by the format): the image is padded on the bottom and right to a
multiple of the model's `block_size` by repeating its last row and column, coded, and the
reconstruction cropped back and rounded to 8 bits. Grayscale images are coded as R = G = B
and decoded as the rounded mean of the three channels. The latent shapes follow from the
padded size, so the file stores only the two strings (sections "y" and "z").
"""
import hashlib

import numpy as np
import tensorflow as tf

from tfcomp import codecs, container, models


class LossyModelCodec(codecs.Codec):
  """A zoo codec around a compressible lossy model stored as a models.save .npz."""

  lossless = False

  def __init__(self, name, weights_path):
    models.check_deterministic_backend()
    self.name = name
    with open(weights_path, "rb") as f:
      raw = f.read()
    self._hash = hashlib.sha256(raw).digest()[:16]
    self.family, self.model = models.from_bytes(raw)
    if not self.model.compression:
      raise ValueError(f"{weights_path} holds a model without frozen range-coding tables "
                       "(call make_compressible() before saving it for the zoo)")

  @property
  def weights_hash(self):
    return self._hash

  def check_image(self, image):
    codecs.require_gray_or_rgb8(self.name, image)

  def _padded(self, image):
    block = self.model.block_size
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, -h % block), (0, -w % block), (0, 0)), mode="edge")
    if padded.shape[2] == 1:
      padded = np.repeat(padded, 3, axis=2)
    return tf.constant(padded[None])

  def _shapes(self, height, width):
    block = self.model.block_size
    hp, wp = -(-height // block) * block, -(-width // block) * block
    return tf.constant([hp // 16, wp // 16], tf.int32), tf.constant([hp // 64, wp // 64],
                                                                    tf.int32)

  @staticmethod
  def _to_image(x_hat, height, width, channels):
    x_hat = np.asarray(x_hat)[0, :height, :width]
    if channels == 1:
      x_hat = x_hat.mean(axis=-1, keepdims=True)
    return np.clip(np.rint(x_hat), 0, 255).astype(np.uint8)

  def compress(self, image):
    string_y, string_z, _, _ = self.model.compress(self._padded(image))
    return {"y": string_y.numpy()[0], "z": string_z.numpy()[0]}

  def decompress(self, sections, geometry):
    if set(sections) != {"y", "z"}:
      raise container.FormatError(f"expected sections ['y', 'z'], found {sorted(sections)}")
    if geometry.bit_depth != 8 or geometry.channels not in (1, 3):
      raise container.FormatError(f"{self.name} files hold 8-bit gray or RGB images, this "
                                  f"header says {geometry.bit_depth}-bit with "
                                  f"{geometry.channels} channels")
    y_shape, z_shape = self._shapes(geometry.height, geometry.width)
    x_hat = self.model.decompress(tf.constant([sections["y"]]), tf.constant([sections["z"]]),
                                  y_shape, z_shape)
    return self._to_image(x_hat, geometry.height, geometry.width, geometry.channels)

  def estimate(self, image):
    """Estimated bits and the reconstruction, through the model's non-coding path."""
    self.check_image(image)
    out = self.model(self._padded(image))
    return {"bits": float(out["bits"][0]),
            "x_hat": self._to_image(out["x_hat"], *image.shape)}
