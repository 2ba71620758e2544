"""Learned lossy codecs (hyperprior, ...): any model of the lossy contract, one image at once.

    model.compress(x [1, Hp, Wp, 3] uint8) -> (string_y, string_z, y_shape, z_shape)
    model.decompress(string_y, string_z, y_shape, z_shape) -> x_hat float [1, Hp, Wp, 3]
    model.latent_shapes(Hp, Wp) -> (y_shape, z_shape)

Padding rules (fixed by the format): the image is padded on the bottom and right to a
multiple of the model's `block_size` by repeating its last row and column, coded, and the
reconstruction cropped back and rounded to 8 bits. Grayscale images are coded as R = G = B
and decoded as the rounded mean of the three decoded channels. The latent shapes follow
from the padded size, so the file stores only the two strings (sections "y" and "z").

All coding runs through the traced functions of `Serving`, the same ones `tools/export.py`
writes into a SavedModel, so files and SavedModel outputs are the same bytes.
"""
import numpy as np
import tensorflow as tf

from tfcomp import container
from tfcomp.codecs import learned


class Serving(tf.Module):
  """compress / decompress / estimate of one RGB image as traced TF functions.

      compress(image uint8 [H, W, 3]) -> {"strings": string [2] (y, z), "shape": int32 [2]}
      decompress(strings, shape) -> {"image": uint8 [H, W, 3]}
      estimate(image) -> {"bits": float32 (y and z), "image": uint8 [H, W, 3]}

  `estimate` is the model's non-coding path (cross-entropy bits); its reconstruction is
  the one `decompress` returns for `compress`'s strings.
  """

  def __init__(self, model):
    super().__init__(name="tfcomp_serving")
    self.model = model

  def _padded(self, image):
    """[1, Hp, Wp, 3]: `image` padded to multiples of block_size by repeating its edges."""
    shape = tf.shape(image)
    hp, wp = learned.padded_size(shape[0], shape[1], self.model.block_size)
    rows = tf.minimum(tf.range(hp), shape[0] - 1)
    cols = tf.minimum(tf.range(wp), shape[1] - 1)
    x = tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)
    return x[None]

  @staticmethod
  def _to_image(x_hat, shape):
    return tf.saturate_cast(tf.round(x_hat[0, :shape[0], :shape[1]]), tf.uint8)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def compress(self, image):
    x = self._padded(image)
    string_y, string_z, _, _ = self.model.compress(x)
    return {"strings": tf.stack([string_y[0], string_z[0]]),
            "shape": tf.shape(image, out_type=tf.int32)[:2]}

  @tf.function(input_signature=[tf.TensorSpec([2], tf.string, name="strings"),
                                tf.TensorSpec([2], tf.int32, name="shape")])
  def decompress(self, strings, shape):
    tf.debugging.assert_greater(shape, 0, message="image sides must be positive")
    tf.debugging.assert_less_equal(shape, container.MAX_SIDE, message="image side too large")
    y_shape, z_shape = self.model.latent_shapes(
        *learned.padded_size(shape[0], shape[1], self.model.block_size))
    x_hat = self.model.decompress(strings[:1], strings[1:], y_shape, z_shape)
    return {"image": self._to_image(x_hat, shape)}

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def estimate(self, image):
    x = self._padded(image)
    out = self.model(x, training=False)
    return {"bits": out["bits"][0], "image": self._to_image(out["x_hat"], tf.shape(image))}


class LossyModelCodec(learned.ModelCodec):
  """A zoo codec around a compressible lossy model stored as a models.save .npz."""

  lossless = False

  def __init__(self, name, weights_path):
    super().__init__(name, weights_path)
    if not self.model.compression:
      raise ValueError(f"{weights_path} holds a model without frozen range-coding tables; "
                       "write a coding-ready copy with tools/freeze.py")
    self.serving = Serving(self.model)

  @staticmethod
  def _rgb(image):
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image

  @staticmethod
  def _as_channels(rgb, channels):
    rgb = np.asarray(rgb)
    if channels == 1:
      return np.rint(rgb.mean(axis=-1, keepdims=True)).astype(np.uint8)
    return rgb

  def compress(self, image):
    strings = self.serving.compress(self._rgb(image))["strings"].numpy()
    return {"y": strings[0], "z": strings[1]}

  def decompress(self, sections, geometry):
    if set(sections) != {"y", "z"}:
      raise container.FormatError(f"expected sections ['y', 'z'], found {sorted(sections)}")
    self.check_geometry(geometry)
    rgb = self.serving.decompress(tf.constant([sections["y"], sections["z"]]),
                                  tf.constant([geometry.height, geometry.width], tf.int32))
    return self._as_channels(rgb["image"], geometry.channels)

  def estimate(self, image):
    """Estimated bits and the reconstruction, through the model's non-coding path."""
    self.check_image(image)
    out = self.serving.estimate(self._rgb(image))
    return {"bits": float(out["bits"]), "x_hat": self._as_channels(out["image"],
                                                                   image.shape[2])}
