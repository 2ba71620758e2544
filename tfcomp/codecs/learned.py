"""What every codec around a learned model shares: loading, image kinds and padding."""

import numpy as np

from tfcomp import codecs, container


def padded_size(height, width, block):
  """The smallest multiples of `block` at least `height` and `width`."""
  return -(-height // block) * block, -(-width // block) * block


def edge_padded_tf(image, shape, block):
  """[1, Hp, Wp, C]: `image` [H, W, C] of `shape` (H, W) padded to multiples of `block` by
  repeating its last row and column, in TF ops: ModelCodec.padded's padding, for the
  served models' traced functions (TensorFlow is imported here, not with this module)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  hp, wp = padded_size(shape[0], shape[1], block)
  rows = tf.minimum(tf.range(hp), shape[0] - 1)
  cols = tf.minimum(tf.range(wp), shape[1] - 1)
  return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)[None]


class ModelCodec(codecs.Codec):
  """A codec around a model stored as a models.save .npz, for 8-bit gray or RGB images.

  Attributes:
    family, model: the stored model.
    unsupported_hint: appended to the message refusing other image kinds.
  """

  unsupported_hint = ""

  def __init__(self, name, weights_path):
    from tfcomp import models  # pylint: disable=import-outside-toplevel  (TF-heavy)
    from tfcomp.models import layers  # pylint: disable=import-outside-toplevel
    self.name = name
    self.weights_path = weights_path
    with open(weights_path, "rb") as f:
      raw = f.read()
    self._hash = container.weights_hash_of(raw)
    self.family, self.model = models.from_bytes(raw)
    layers.freeze_exact_grids(self.model)

  @property
  def weights_hash(self):
    return self._hash

  def check_image(self, image):
    codecs.require_gray_or_rgb8(self.name, image, self.unsupported_hint)

  def check_geometry(self, geometry):
    """FormatError unless a file's header describes an image this codec writes."""
    if geometry.bit_depth != 8 or geometry.channels not in (1, 3):
      raise container.FormatError(f"{self.name} files hold 8-bit gray or RGB images, this "
                                  f"header says {geometry.bit_depth}-bit with "
                                  f"{geometry.channels} channels")

  def padded(self, image):
    """[1, Hp, Wp, 3]: `image` padded to multiples of the model's block_size by repeating
    its last row and column, grayscale as R = G = B."""
    h, w = image.shape[:2]
    hp, wp = padded_size(h, w, self.model.block_size)
    padded = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    if padded.shape[2] == 1:
      padded = np.repeat(padded, 3, axis=2)
    return padded[None]
